# Shared by the ARM toolchain files: Debian's cross compilers, a Debian-layout sysroot
# (multiarch directories), pkg-config and find_package confined to it, and qemu-user as
# the emulator for anything CMake runs for the target (gtest discovery, tests).
set(CMAKE_C_COMPILER ${OUTPOST_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${OUTPOST_TRIPLE}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${OUTPOST_TRIPLE})

if(NOT OUTPOST_SYSROOT)
  set(OUTPOST_SYSROOT "$ENV{OUTPOST_SYSROOT}")
endif()
if(NOT OUTPOST_SYSROOT)
  message(FATAL_ERROR "set OUTPOST_SYSROOT to the target's sysroot (cross/build.sh makes one)")
endif()
set(OUTPOST_SYSROOT "${OUTPOST_SYSROOT}" CACHE PATH "the target's sysroot")
set(CMAKE_SYSROOT "${OUTPOST_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH "${OUTPOST_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

set(ENV{PKG_CONFIG_SYSROOT_DIR} "${OUTPOST_SYSROOT}")
set(ENV{PKG_CONFIG_LIBDIR}
    "${OUTPOST_SYSROOT}/usr/lib/${OUTPOST_TRIPLE}/pkgconfig:${OUTPOST_SYSROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

# Libraries' own dependencies (librocksdb -> libsnappy, ...) resolve inside the sysroot.
set(CMAKE_EXE_LINKER_FLAGS_INIT
    "-Wl,-rpath-link,${OUTPOST_SYSROOT}/usr/lib/${OUTPOST_TRIPLE}:${OUTPOST_SYSROOT}/lib/${OUTPOST_TRIPLE}")

set(CMAKE_CROSSCOMPILING_EMULATOR ${OUTPOST_QEMU} -L ${OUTPOST_SYSROOT})
