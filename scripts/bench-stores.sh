#!/usr/bin/env bash
# Hub ingest through each store, in one run on this machine: outpost-bench-fleet against
# one hub on RocksDB, one hub on PostgreSQL and two hub processes sharing that PostgreSQL
# (a scratch server from Debian's packages, fsync and synchronous_commit on, as shipped).
#   scripts/bench-stores.sh [BUILD_DIR] [SITES] [EVENTS]      (defaults: build 1000 200)
# Prints each run's ingest, CPU and query lines, then a summary (docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
sites=${2:-1000}
events=${3:-200}
bench="$build/bench/outpost-bench-fleet"
[ -x "$bench" ] || { echo "bench-stores: no $bench (build it first)" >&2; exit 2; }
pgdir=$(mktemp -d /tmp/outpost-bench-pg.XXXXXX)
trap 'scripts/pg-scratch.sh stop "$pgdir"; rm -rf "$pgdir"' EXIT
conninfo=$(scripts/pg-scratch.sh start "$pgdir")
declare -A line
run() {
  local name=$1
  shift
  echo "== $name"
  out=$("$bench" --bin-dir "$build" --sites "$sites" --stream-sites "$sites" --events "$events" \
          --workers 4 "$@" | grep -E "^(ingest|operator|handshake)")
  echo "$out"
  line[$name]=$(echo "$out" | grep '^ingest' | sed -E 's/.* ([0-9]+) events\/s end to end; hub CPU ([0-9.]+) us per event/\1 events\/s, hub CPU \2 us\/event/')
}
run "RocksDB, 1 hub"
run "PostgreSQL, 1 hub" --store "$conninfo"
run "PostgreSQL, 2 hubs" --store "$conninfo" --hubs 2
echo
echo "summary ($sites sites x $events events, same machine, same run):"
for k in "RocksDB, 1 hub" "PostgreSQL, 1 hub" "PostgreSQL, 2 hubs"; do
  printf '  %-20s %s\n' "$k" "${line[$k]}"
done
