#!/usr/bin/env bash
# Installs what Outpost needs from Debian's packages (only what is missing) and builds.
#   scripts/setup.sh [BUILD_DIR] [extra cmake args...]
#   OUTPOST_TARGETS="outpost-hub outpost-agent" scripts/setup.sh build   # build only these
# Idempotent: a second run installs nothing and rebuilds only what changed (ninja, ccache).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake ninja-build ccache pkg-config git
  libzmq3-dev cppzmq-dev libmsgpack-cxx-dev librocksdb-dev libsodium-dev libspdlog-dev
  libboost-program-options-dev libgtest-dev libyaml-cpp-dev nlohmann-json3-dev tzdata
  libcpp-httplib-dev python3-zmq python3-msgpack python3-nacl
  # the hub's allocator (optional: without it the hub links glibc's)
  libjemalloc-dev
  # the monitoring tests: promtool and a real Prometheus, node_exporter's textfile collector
  prometheus prometheus-node-exporter
  # the dashboard's test: a real headless browser
  chromium chromium-driver python3-selenium
  # outpost-bench-fleet and its peers (Mosquitto, NATS JetStream)
  libmosquitto-dev libnats-dev mosquitto nats-server
  # the hub store on PostgreSQL (libpq) and a real server for its tests
  libpq-dev postgresql)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

BUILD_DIR=${1:-build}
shift || true
echo "setup: configuring $BUILD_DIR"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
echo "setup: building ${OUTPOST_TARGETS:-everything} in $BUILD_DIR (ninja; ccache makes later builds fast)"
# shellcheck disable=SC2086  # the targets are words
ninja -C "$BUILD_DIR" ${OUTPOST_TARGETS:-}
