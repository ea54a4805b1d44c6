# Cross toolchain for 64-bit ARM gateways (Debian arm64), used by cross/build.sh.
# No host-specific paths: the compilers come from Debian's crossbuild-essential-arm64 on
# PATH, the target's libraries from a sysroot given as OUTPOST_SYSROOT (cache variable or
# environment), and tests run under qemu-user.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(OUTPOST_TRIPLE aarch64-linux-gnu)
set(OUTPOST_QEMU qemu-aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/toolchain-common.cmake)
