# Fails when the committed compiled behaviour rules (COMMITTED) differ from
# what the build compiled from the YAML (BUILT). Run with cmake -P.
if(NOT EXISTS "${BUILT}")
  message(FATAL_ERROR "${BUILT} was not built (target sigma_rules)")
endif()
if(NOT EXISTS "${COMMITTED}")
  message(FATAL_ERROR "${COMMITTED} is missing")
endif()
file(SHA256 "${BUILT}" built_hash)
file(SHA256 "${COMMITTED}" committed_hash)
if(NOT built_hash STREQUAL committed_hash)
  message(FATAL_ERROR
    "rules/sigma/linux.json is not what rules/sigma/linux/*.yml compile to.\n"
    "Regenerate it from the source directory with:\n"
    "  build/console/yamori-console rules compile-sigma --strict rules/sigma/linux -o rules/sigma/linux.json")
endif()
message(STATUS "rules/sigma/linux.json matches the YAML")
