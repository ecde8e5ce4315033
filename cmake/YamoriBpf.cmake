# The eBPF process sensor (agent/src/os/linux/bpf/): the BPF programs are
# compiled by clang for the bpf target against a vmlinux.h that bpftool
# generates from the build machine's kernel BTF (once, cached in the build
# directory), and embedded in the agent as a libbpf skeleton. CO-RE
# relocations let the object run on any kernel with BTF. Without clang,
# bpftool, libbpf or /sys/kernel/btf/vmlinux the sensor is not built and the
# agent uses the proc connector.
option(YAMORI_EBPF "Build the eBPF process sensor when the build machine can" ON)
set(YAMORI_VMLINUX_BTF "/sys/kernel/btf/vmlinux" CACHE FILEPATH
    "Kernel BTF from which vmlinux.h is generated")

set(YAMORI_HAVE_EBPF OFF)
if(YAMORI_EBPF)
  find_program(YAMORI_BPF_CLANG NAMES clang clang-14)
  find_program(YAMORI_BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin)
  pkg_check_modules(LIBBPF IMPORTED_TARGET libbpf>=0.8)
  set(_why "")
  if(NOT YAMORI_BPF_CLANG)
    string(APPEND _why " clang is missing;")
  endif()
  if(NOT YAMORI_BPFTOOL)
    string(APPEND _why " bpftool is missing;")
  endif()
  if(NOT LIBBPF_FOUND)
    string(APPEND _why " libbpf (libbpf-dev) is missing;")
  endif()
  if(NOT EXISTS "${YAMORI_VMLINUX_BTF}")
    string(APPEND _why " ${YAMORI_VMLINUX_BTF} is missing (kernel without BTF);")
  endif()
  if(_why STREQUAL "")
    set(YAMORI_HAVE_EBPF ON)
  else()
    message(WARNING "The eBPF process sensor is not built:${_why} the agent will use the proc connector")
  endif()
endif()

# yamori_bpf_skeleton(<target> <name>): builds agent/src/os/linux/bpf/<name>.bpf.c
# into <name>.skel.h in the build directory and makes <target> depend on it.
function(yamori_bpf_skeleton target name)
  set(dir "${CMAKE_BINARY_DIR}/bpf")
  set(src "${PROJECT_SOURCE_DIR}/agent/src/os/linux/bpf/${name}.bpf.c")
  set(vmlinux "${dir}/vmlinux.h")
  if(NOT TARGET yamori_vmlinux_h)
    add_custom_command(
      OUTPUT "${vmlinux}"
      COMMAND ${CMAKE_COMMAND} -E make_directory "${dir}"
      COMMAND ${YAMORI_BPFTOOL} btf dump file ${YAMORI_VMLINUX_BTF} format c > "${vmlinux}.tmp"
      COMMAND ${CMAKE_COMMAND} -E rename "${vmlinux}.tmp" "${vmlinux}"
      COMMENT "Generating vmlinux.h from ${YAMORI_VMLINUX_BTF}"
      VERBATIM)
    add_custom_target(yamori_vmlinux_h DEPENDS "${vmlinux}")
  endif()
  set(obj "${dir}/${name}.bpf.o")
  set(linked "${dir}/${name}.o")
  set(skel "${dir}/${name}.skel.h")
  add_custom_command(
    OUTPUT "${skel}"
    COMMAND ${YAMORI_BPF_CLANG} -O2 -g -target bpf -D__TARGET_ARCH_x86 -Wall -Werror
            -I "${dir}" -I "${PROJECT_SOURCE_DIR}/agent/src/os/linux/bpf" -c "${src}" -o "${obj}"
    # Linking through bpftool drops the DWARF and keeps the BTF.
    COMMAND ${YAMORI_BPFTOOL} gen object "${linked}" "${obj}"
    COMMAND ${YAMORI_BPFTOOL} gen skeleton "${linked}" name ${name}_bpf > "${skel}.tmp"
    COMMAND ${CMAKE_COMMAND} -E rename "${skel}.tmp" "${skel}"
    DEPENDS "${src}" "${PROJECT_SOURCE_DIR}/agent/src/os/linux/bpf/${name}.h" "${vmlinux}"
    COMMENT "Building the BPF program ${name} and its skeleton"
    VERBATIM)
  add_custom_target(yamori_bpf_${name} DEPENDS "${skel}")
  add_dependencies(${target} yamori_bpf_${name})
  target_include_directories(${target} SYSTEM PRIVATE "${dir}")
endfunction()
