#!/usr/bin/env bash
# The fleet demo: installs, builds, starts a hub and three site agents on loopback in a
# temporary directory, enrolls the agents' keys with labels, applies the example
# workflow config/workflows/hello.yaml to the sites labelled role=gateway, runs it
# there, and shows the fleet status, the runs and one task's output.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "demo: building only what the demo runs (hub, agent, outpostctl); scripts/test.sh builds the rest"
OUTPOST_TARGETS="outpost-hub outpost-agent outpostctl" scripts/setup.sh build
BIN=$PWD/build
DEMO=$(mktemp -d /tmp/outpost-demo.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DEMO"
}
trap cleanup EXIT

"$BIN/hub/outpost-hub" --data-dir "$DEMO/hub" --sites-endpoint tcp://127.0.0.1:0 \
  --operators-endpoint tcp://127.0.0.1:0 --log-level warn &
PIDS+=($!)
for _ in $(seq 200); do [ -f "$DEMO/hub/hub.endpoints" ] && break; sleep 0.05; done
CTL=("$BIN/cli/outpostctl" --hub-dir "$DEMO/hub")
SITES_EP=$(sed -n 's/.*"sites":"\([^"]*\)".*/\1/p' "$DEMO/hub/hub.endpoints")

echo "== a hub on loopback; three agents enroll with their own CURVE keys"
for spec in plant-north:gateway plant-south:gateway lab:test-bench; do
  site=${spec%%:*} role=${spec#*:}
  key=$("$BIN/site-agent/outpost-agent" --data-dir "$DEMO/$site" --show-key)
  "${CTL[@]}" site add "$site" --key "$key" --label role="$role" --label region=demo >/dev/null
  "$BIN/site-agent/outpost-agent" --data-dir "$DEMO/$site" --site "$site" \
    --hub "$SITES_EP" --hub-key "$DEMO/hub/keys/hub.pub" --log-level warn &
  PIDS+=($!)
done
for _ in $(seq 200); do
  "${CTL[@]}" status --json | grep -q '"online": 3' && break
  sleep 0.05
done
"${CTL[@]}" site list
echo
echo "== apply config/workflows/hello.yaml to role=gateway"
"${CTL[@]}" workflow apply config/workflows/hello.yaml --target role=gateway
echo
echo "== run it on every site that has it, and wait for the results"
status=0
"${CTL[@]}" run start hello --param greeting="hello from the fleet demo" --wait 2>/dev/null || status=$?
echo "== fleet status"
"${CTL[@]}" status
echo
echo "== runs known to the hub"
"${CTL[@]}" run list
RUN=$("${CTL[@]}" run list --site plant-north --json | sed -n 's/.*"id": "\(plant-north-[^"]*\)".*/\1/p' | head -n 1)
echo
echo "== output of task 'report' on plant-north, as the hub received it"
"${CTL[@]}" run logs "$RUN" report
exit $status
