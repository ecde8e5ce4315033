# Finds libyara (Debian: libyara-dev) and defines the imported target Yara::yara.
find_path(YARA_INCLUDE_DIR NAMES yara.h)
find_library(YARA_LIBRARY NAMES yara)
if(YARA_INCLUDE_DIR AND EXISTS "${YARA_INCLUDE_DIR}/yara/libyara.h")
  file(STRINGS "${YARA_INCLUDE_DIR}/yara/libyara.h" _yv REGEX "#define YR_(MAJOR|MINOR|MICRO)_VERSION")
  string(REGEX REPLACE ".*MAJOR_VERSION +([0-9]+).*" "\\1" _maj "${_yv}")
  string(REGEX REPLACE ".*MINOR_VERSION +([0-9]+).*" "\\1" _min "${_yv}")
  string(REGEX REPLACE ".*MICRO_VERSION +([0-9]+).*" "\\1" _mic "${_yv}")
  set(YARA_VERSION "${_maj}.${_min}.${_mic}")
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Yara REQUIRED_VARS YARA_LIBRARY YARA_INCLUDE_DIR
                                  VERSION_VAR YARA_VERSION)
if(Yara_FOUND AND NOT TARGET Yara::yara)
  add_library(Yara::yara UNKNOWN IMPORTED)
  set_target_properties(Yara::yara PROPERTIES IMPORTED_LOCATION "${YARA_LIBRARY}"
                        INTERFACE_INCLUDE_DIRECTORIES "${YARA_INCLUDE_DIR}")
endif()
mark_as_advanced(YARA_INCLUDE_DIR YARA_LIBRARY)
