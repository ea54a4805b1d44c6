#!/usr/bin/env bash
# What a gateway pays for the agent: stripped binary sizes per architecture, the shared
# libraries it needs, and the idle agent's RSS and CPU over a measured interval, natively
# and (for the ARM builds of cross/build.sh) under qemu-user.
#   scripts/footprint.sh [SECONDS]      # default 20 s of idle measurement per run
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
TICK=$(getconf CLK_TCK)

measure() {  # measure LABEL CMD...  -> idle RSS and CPU of the started process
  local label=$1; shift
  local dir; dir=$(mktemp -d "${TMPDIR:-/tmp}/outpost-footprint.XXXXXX")
  "$@" --data-dir "$dir" --site footprint --log-level warn >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do [ -S "$dir/agent.sock" ] && break; sleep 0.1; done
  sleep 2  # past start-up
  local t0 c0 t1 c1 rss
  read -r -a s0 < "/proc/$pid/stat"; c0=$(( ${s0[13]} + ${s0[14]} )); t0=$(date +%s.%N)
  sleep "$SECS"
  read -r -a s1 < "/proc/$pid/stat"; c1=$(( ${s1[13]} + ${s1[14]} )); t1=$(date +%s.%N)
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  anon=$(awk '/RssAnon/ {print $2}' "/proc/$pid/status")
  # PSS shares each page among the processes mapping it: what this agent adds to a gateway
  # that already runs other programs using the same libraries.
  pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  awk -v l="$label" -v r="$rss" -v p="$pss" -v an="$anon" -v c=$((c1 - c0)) -v tk="$TICK" -v a="$t0" -v b="$t1" \
    'BEGIN { printf "| %s | %.1f MB | %.1f MB | %.1f MB | %.3f%% (%d ticks in %.0f s) |\n", l, r/1024, p/1024, an/1024, 100*c/tk/(b-a), c, b-a }'
}

echo "## Binary sizes (stripped) and libraries"
echo
echo "| build | outpost-agent | outpostctl | NEEDED |"
echo "|---|---|---|---|"
mkdir -p build/dist
strip -o build/dist/outpost-agent build/site-agent/outpost-agent
strip -o build/dist/outpostctl build/cli/outpostctl
for d in build/dist build-cross/aarch64/dist build-cross/armhf/dist; do
  [ -f "$d/outpost-agent" ] || continue
  needed=$(readelf -d "$d/outpost-agent" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')
  arch=$(readelf -h "$d/outpost-agent" | awk -F: '/Machine/ {gsub(/^ +/, "", $2); print $2}')
  printf "| %s (%s) | %s KB | %s KB | %s|\n" "$d" "$arch" \
    $(( $(stat -c %s "$d/outpost-agent") / 1024 )) $(( $(stat -c %s "$d/outpostctl") / 1024 )) "$needed"
done
echo
echo "## Idle agent (no hub, no runs), measured over ${SECS} s"
echo
echo "| run | RSS | PSS | of which anonymous | CPU |"
echo "|---|---|---|---|---|"
measure "native x86-64" build/site-agent/outpost-agent
for arch in aarch64 armhf; do
  bin=build-cross/$arch/site-agent/outpost-agent
  [ -f "$bin" ] || continue
  deb=$([ $arch = aarch64 ] && echo arm64 || echo armhf)
  qemu=$([ $arch = aarch64 ] && echo qemu-aarch64 || echo qemu-arm)
  # (armhf: qemu-arm needs tmpfs for RocksDB's readdir, see cross/build.sh)
  TMPDIR=$([ $arch = armhf ] && echo /dev/shm || echo "${TMPDIR:-/tmp}") \
  QEMU_LD_PREFIX=$PWD/build-cross/$deb-sysroot measure "$arch under $qemu (RSS includes the emulator)" "$qemu" "$bin"
done
