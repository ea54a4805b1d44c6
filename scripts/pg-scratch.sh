#!/usr/bin/env bash
# A throwaway PostgreSQL server from Debian's packages, for tests and benchmarks: its own
# data directory under DIR, a Unix socket in DIR, and TCP on 127.0.0.1 only if a port is
# given. Runs as the postgres user when started by root (PostgreSQL refuses root).
#   scripts/pg-scratch.sh start DIR [TCP_PORT]   prints a libpq connection string
#   scripts/pg-scratch.sh stop DIR
# Synced as in production: fsync and synchronous_commit stay on.
set -euo pipefail
cmd=${1:?start or stop}
dir=${2:?directory}
port=${3:-}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/pg_ctl" ] || { echo "pg-scratch: PostgreSQL server not installed (apt-get install postgresql)" >&2; exit 1; }
case $dir in /*) ;; *) dir=$PWD/$dir ;; esac
cd /  # the postgres user may not enter the caller's directory
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case $cmd in
start)
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
  chmod 0755 "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >/dev/null
  fi
  # A server left running by an earlier, interrupted run is stopped first.
  as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  listen="''"
  [ -n "$port" ] && listen=127.0.0.1
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-k $dir -c listen_addresses=$listen -p ${port:-5432} -c max_connections=200 -c shared_buffers=64MB" \
    start >/dev/null
  echo "host=$dir port=${port:-5432} user=postgres dbname=postgres"
  ;;
stop)
  [ -f "$dir/data/PG_VERSION" ] && as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  ;;
*) echo "pg-scratch: start or stop" >&2; exit 2 ;;
esac
