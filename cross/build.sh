#!/usr/bin/env bash
# Builds outpost-agent and outpostctl for an ARM gateway and runs the agent's unit tests
# under qemu-user:
#   cross/build.sh aarch64|armhf [--no-tests]
# Installs what is missing (Debian's cross compiler and qemu-user), then fetches the
# target's -dev packages from Debian and unpacks them into a sysroot under
# build-cross/ARCH-sysroot instead of installing them multiarch: librocksdb-dev,
# libyaml-cpp-dev and libgflags-dev cannot be installed for two architectures at once,
# and installing the arm64 ones would remove the host's (docs/operations.md).
# Output: build-cross/ARCH/site-agent/outpost-agent, build-cross/ARCH/cli/outpostctl,
# stripped copies in build-cross/ARCH/dist/, and the packages
# build-cross/ARCH/outpost-{agent,cli}_VERSION_{arm64,armhf}.deb.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${1:-}
case "$ARCH" in
  aarch64) DEB=arm64; TRIPLE=aarch64-linux-gnu; QEMU=qemu-aarch64 ;;
  armhf) DEB=armhf; TRIPLE=arm-linux-gnueabihf; QEMU=qemu-arm ;;
  *) echo "usage: cross/build.sh aarch64|armhf [--no-tests]" >&2; exit 2 ;;
esac
RUN_TESTS=1
[ "${2:-}" = "--no-tests" ] && RUN_TESTS=0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# 1. Host tools.
HOST_PKGS=(crossbuild-essential-$DEB qemu-user cmake ninja-build pkg-config ccache)
missing=()
for p in "${HOST_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ! dpkg --print-foreign-architectures | grep -qx "$DEB"; then
  $SUDO dpkg --add-architecture "$DEB"
  # A mirror mid-sync can fail one index (security, say); what it lists is retried below.
  $SUDO apt-get update -qq || echo "cross: apt-get update reported errors; continuing with what it fetched"
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "cross: installing ${missing[*]}"
  $SUDO apt-get update -qq || echo "cross: apt-get update reported errors; continuing with what it fetched"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The target's libraries, unpacked into a sysroot (once; delete it to refresh).
ROOT=$PWD/build-cross
SYSROOT=$ROOT/$DEB-sysroot
TARGET_PKGS=(libc6-dev libstdc++-12-dev libzmq3-dev librocksdb-dev libsodium-dev libspdlog-dev
  libboost-program-options-dev libgtest-dev libyaml-cpp-dev libmsgpack-cxx-dev libcpp-httplib-dev
  libpq-dev)
if [ ! -f "$SYSROOT/.complete" ]; then
  echo "cross: fetching the $DEB libraries into $SYSROOT"
  rm -rf "$SYSROOT" "$ROOT/$DEB-debs"
  mkdir -p "$SYSROOT" "$ROOT/$DEB-debs"
  args=()
  for p in "${TARGET_PKGS[@]}"; do args+=("$p:$DEB"); done
  apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
      --no-replaces --no-enhances "${args[@]}" 2>/dev/null |
    grep -v '^ ' | grep ":$DEB\$" | sort -u > "$ROOT/$DEB-debs/list"
  echo nlohmann-json3-dev >> "$ROOT/$DEB-debs/list"  # header-only, Architecture: all
  (cd "$ROOT/$DEB-debs" && xargs -a list apt-get download -qq 2>/dev/null || \
     xargs -a list -n1 apt-get download -qq 2>/dev/null || true)
  for deb in "$ROOT/$DEB-debs"/*.deb; do dpkg-deb -x "$deb" "$SYSROOT"; done
  # Absolute symlinks inside the sysroot must point into it, not at the host.
  find "$SYSROOT" -type l | while read -r link; do
    target=$(readlink "$link")
    case "$target" in /*) ln -sfn "$SYSROOT$target" "$link" ;; esac
  done
  touch "$SYSROOT/.complete"
fi

# 3. Build the agent, the CLI and the agent's tests for the target.
BUILD=$ROOT/$ARCH
export OUTPOST_SYSROOT=$SYSROOT
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=MinSizeRel -DOUTPOST_WERROR=ON \
  -DCMAKE_TOOLCHAIN_FILE="$PWD/cross/toolchain-$ARCH.cmake" -DOUTPOST_SYSROOT="$SYSROOT" \
  -DOUTPOST_AGENT_ONLY=ON >/dev/null
ninja -C "$BUILD" outpost-agent outpostctl outpost_agent_unit_tests outpost_executor_tests
mkdir -p "$BUILD/dist"
$TRIPLE-strip -o "$BUILD/dist/outpost-agent" "$BUILD/site-agent/outpost-agent"
$TRIPLE-strip -o "$BUILD/dist/outpostctl" "$BUILD/cli/outpostctl"
file "$BUILD/dist/outpost-agent" | sed 's/,.*BuildID.*//'
ls -l "$BUILD/dist"
(cd "$BUILD" && rm -f ./*.deb && cpack >/dev/null && ls -l ./*.deb)  # outpost-agent and outpost-cli

# 4. The agent's unit tests under qemu-user. (The executor's tests, which check process
# groups and spawn errors of real child processes, are built but need a real ARM kernel:
# qemu-user emulates posix_spawn's vfork as a plain fork, so neither setpgid in the child
# nor exec errors reach the parent as they do on the device.)
if [ $RUN_TESTS -eq 1 ]; then
  echo "cross: running the agent's unit tests under $QEMU"
  export QEMU_LD_PREFIX=$SYSROOT
  # 32-bit guests: qemu-arm passes the host filesystem's 64-bit directory offsets through
  # readdir and RocksDB's opendir fails with EOVERFLOW on ext4/overlayfs; tmpfs offsets fit.
  [ "$ARCH" = armhf ] && export TMPDIR=/dev/shm
  $QEMU "$BUILD/tests/outpost_agent_unit_tests" --gtest_brief=1
fi
