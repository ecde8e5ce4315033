# Warning flags shared by every target of the project (see docs/development.md).
add_library(yamori_warnings INTERFACE)
target_compile_options(yamori_warnings INTERFACE
  -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes
  -Wconversion -Wno-sign-conversion -Wpointer-arith -Wvla -Wundef)
if(YAMORI_WERROR)
  target_compile_options(yamori_warnings INTERFACE -Werror)
endif()
