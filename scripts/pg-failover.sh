#!/usr/bin/env bash
# The hub store on PostgreSQL, failed over under load: two PostgreSQL nodes under Patroni
# (etcd as its store of who leads, synchronous replication on), all from Debian's
# packages on local ports; an outpost-hub on them (libpq's multi-host connection string
# finds the primary), three agents, and an operator starting runs all along. The primary
# is killed (its Patroni and PostgreSQL, SIGKILL: the machine is gone); Patroni promotes
# the synchronous standby; the hub's commit fails, it reopens its store on the new
# primary, the sites resend what was not acknowledged. At the end every event each site
# saw acknowledged is in the hub's store once, and every run the hub accepted finished in
# its view: nothing acknowledged was lost.
#   scripts/pg-failover.sh [BUILD_DIR]        (docs/operations.md, "Several hubs")
# Exit 0 when nothing was lost. Leaves its directory behind on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(cd "${1:-build}" && pwd)
for b in hub/outpost-hub site-agent/outpost-agent cli/outpostctl; do
  [ -x "$build/$b" ] || { echo "pg-failover: no $build/$b (build first)" >&2; exit 2; }
done
missing=()
for p in patroni etcd-server etcd-client postgresql; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "pg-failover: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
dir=$(mktemp -d /tmp/outpost-failover.XXXXXX)
chmod 0755 "$dir"
pids=()
cleanup() {
  local rc=$?
  exec 2>/dev/null  # not the shell's notes on the jobs it kills
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  pkill -9 -f "patroni $dir/" 2>/dev/null || true
  for n in pg1 pg2; do
    [ -f "$dir/$n/data/postmaster.pid" ] && kill -9 "$(head -1 "$dir/$n/data/postmaster.pid")" 2>/dev/null || true
  done
  if [ $rc -eq 0 ]; then rm -rf "$dir"; else echo "pg-failover: logs kept in $dir"; fi
}
trap cleanup EXIT
say() { echo "$(date +%T) $*"; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# Bounded wait: wait_for SECONDS CMD...
wait_for() {
  local t=$1
  shift
  for _ in $(seq 1 $((t * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

say "etcd on 127.0.0.1:23790"
etcd --data-dir "$dir/etcd" --name e1 --listen-client-urls http://127.0.0.1:23790 \
  --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 \
  --initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster e1=http://127.0.0.1:23800 \
  >"$dir/etcd.log" 2>&1 &
pids+=($!)
wait_for 20 etcdctl --endpoints=http://127.0.0.1:23790 endpoint health

for i in 1 2; do
  n=pg$i
  mkdir -p "$dir/$n"
  cat >"$dir/$n.yml" <<EOF
scope: outpost-failover
name: $n
restapi:
  listen: 127.0.0.1:810$i
  connect_address: 127.0.0.1:810$i
etcd3:
  hosts: 127.0.0.1:23790
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 2
    retry_timeout: 4
    maximum_lag_on_failover: 0
    synchronous_mode: true
    postgresql:
      parameters:
        synchronous_commit: "on"
        fsync: "on"
        max_connections: 100
  initdb:
    - encoding: UTF8
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:544$i
  connect_address: 127.0.0.1:544$i
  data_dir: $dir/$n/data
  bin_dir: $bin
  pgpass: $dir/$n/pgpass
  authentication:
    superuser: {username: postgres, password: outpost}
    replication: {username: replicator, password: outpost}
  parameters:
    unix_socket_directories: $dir/$n
EOF
done
[ "$(id -u)" -eq 0 ] && chown -R postgres "$dir"
say "PostgreSQL pg1 (127.0.0.1:5441) and pg2 (:5442) under Patroni"
as_pg patroni "$dir/pg1.yml" >"$dir/patroni-pg1.log" 2>&1 &
pids+=($!)
wait_for 60 psql "host=127.0.0.1 port=5441 user=postgres dbname=postgres" -c "select 1"
as_pg patroni "$dir/pg2.yml" >"$dir/patroni-pg2.log" 2>&1 &
pids+=($!)
members() { patronictl -c "$dir/pg1.yml" list -f json 2>/dev/null; }
sync_ready() { members | python3 -c 'import json,sys; m=json.load(sys.stdin); sys.exit(0 if any(x["Role"]=="Sync Standby" and x["State"] in ("running","streaming") for x in m) else 1)'; }
wait_for 90 sync_ready || { echo "pg-failover: no synchronous standby came up" >&2; members >&2; exit 1; }
members | python3 -c 'import json,sys; [print("  ", x["Member"], x["Role"], x["State"]) for x in json.load(sys.stdin)]'

store="host=127.0.0.1,127.0.0.1 port=5441,5442 user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=3"
say "outpost-hub on that store"
mkdir -p "$dir/hub"
"$build/hub/outpost-hub" --data-dir "$dir/hub" --store "$store" --sites-endpoint tcp://127.0.0.1:0 \
  --operators-endpoint tcp://127.0.0.1:0 --offline-after-ms 3000 --ping-ms 500 --resend-ms 1000 \
  >"$dir/hub.log" 2>&1 &
hub=$!
pids+=($hub)
wait_for 30 test -f "$dir/hub/hub.endpoints"
ep() { python3 -c "import json; print(json.load(open('$dir/hub/hub.endpoints'))['$1'])"; }
sites_ep=$(ep sites)
hub_key=$(ep hub_key)
ctl() { "$build/cli/outpostctl" --hub-dir "$dir/hub" --timeout-ms 5000 "$@"; }
for s in north south east; do
  key=$("$build/site-agent/outpost-agent" --data-dir "$dir/$s" --show-key)
  ctl site add "$s" --key "$key" >/dev/null
  "$build/site-agent/outpost-agent" --data-dir "$dir/$s" --site "$s" --hub "$sites_ep" \
    --hub-key "$hub_key" --sync-ping-ms 500 --sync-dead-ms 3000 --sync-resend-ms 1000 \
    --reconnect-max-ms 1000 >"$dir/$s.log" 2>&1 &
  pids+=($!)
done
cat >"$dir/steps.yaml" <<'EOF'
name: steps
tasks:
  - id: one
    run: ["true"]
  - id: two
    run: ["true"]
    needs: [one]
  - id: three
    run: ["true"]
    needs: [two]
EOF
ctl workflow apply "$dir/steps.yaml" >/dev/null
online() { [ "$(ctl --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["sites"]["online"])')" = 3 ]; }
wait_for 30 online

# The operator: a run on every site every 0.2 s; the ids of the runs the hub accepted.
(
  for i in $(seq 1 150); do
    ctl run start steps --request "load-$i" >>"$dir/accepted" 2>>"$dir/refused" || true
    sleep 0.2
  done
) &
load=$!
pids+=($load)
sleep 8
leader=$(members | python3 -c 'import json,sys; print([x["Member"] for x in json.load(sys.stdin) if x["Role"]=="Leader"][0])')
say "killing the primary $leader (Patroni and PostgreSQL, SIGKILL) under load"
pkill -9 -f "patroni $dir/$leader.yml" || true
kill -9 "$(head -1 "$dir/$leader/data/postmaster.pid")"
t0=$(date +%s.%N)
promoted() { members | python3 -c "import json,sys; sys.exit(0 if any(x['Role']=='Leader' and x['Member']!='$leader' and x['State']=='running' for x in json.load(sys.stdin)) else 1)"; }
members() { command patronictl -c "$dir/pg$([ "$leader" = pg1 ] && echo 2 || echo 1).yml" list -f json 2>/dev/null; }
wait_for 60 promoted || { echo "pg-failover: the standby was not promoted" >&2; exit 1; }
t1=$(date +%s.%N)
say "standby promoted $(python3 -c "print(round($t1-$t0,1))") s after the kill"
wait_for 60 online || { echo "pg-failover: sites did not come back to the hub" >&2; exit 1; }
t2=$(date +%s.%N)
say "all sites back in session $(python3 -c "print(round($t2-$t0,1))") s after the kill"
wait "$load" || true

# Nothing acknowledged was lost: each site's log fully acknowledged and at the hub once,
# and every run the hub accepted finished in its view.
converged() {
  for s in north south east; do
    head=$("$build/cli/outpostctl" --local --data-dir "$dir/$s" --json status |
           python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["log_head"], s["log_acked"])')
    got=$(ctl --json site show "$s" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events_received"])')
    set -- $head
    [ "$1" = "$2" ] && [ "$1" = "$got" ] || return 1
  done
}
wait_for 90 converged || { echo "pg-failover: sites and hub did not converge" >&2; exit 1; }
runs=$(grep -c . "$dir/accepted" || true)
# The run view counts by state, from the store: every accepted run must be there, done.
succeeded() {
  ctl --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["runs"].get("succeeded", 0))'
}
all_done() { [ "$(succeeded)" = "$runs" ]; }
wait_for 120 all_done || true
done_runs=$(succeeded)
unfinished=$((runs - done_runs))
events=0
for s in north south east; do
  n=$(ctl --json site show "$s" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events_received"])')
  events=$((events + n))
done
restarts=$(grep -c "hub.store_reopened" "$dir/hub.log" || true)
say "runs accepted: $runs (refused while the store was away: $(grep -c . "$dir/refused" || true)); unfinished in the view: $unfinished"
say "events at the hub: $events, each site's log acknowledged in full and present once; hub store reopened $restarts time(s)"
[ "$unfinished" -eq 0 ] || { echo "pg-failover: runs the hub accepted are missing or unfinished" >&2; exit 1; }
say "nothing acknowledged was lost"
