# Cross toolchain for 32-bit ARM gateways (Debian armhf: ARMv7, hard float), used by
# cross/build.sh. See toolchain-aarch64.cmake.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(OUTPOST_TRIPLE arm-linux-gnueabihf)
set(OUTPOST_QEMU qemu-arm)
include(${CMAKE_CURRENT_LIST_DIR}/toolchain-common.cmake)
