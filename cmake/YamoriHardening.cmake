# Hardening for optimised builds: FORTIFY, stack protector, PIE, full RELRO.
set(CMAKE_POSITION_INDEPENDENT_CODE ON)
include(CheckPIESupported)
check_pie_supported()
add_compile_options(-fstack-protector-strong)
if(NOT YAMORI_ASAN AND NOT YAMORI_TSAN AND NOT YAMORI_FUZZ)
  add_compile_options($<$<NOT:$<CONFIG:Debug>>:-D_FORTIFY_SOURCE=2>)
endif()
add_link_options(-Wl,-z,relro,-z,now -Wl,-z,noexecstack)
