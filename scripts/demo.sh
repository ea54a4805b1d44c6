#!/usr/bin/env bash
# The fleet demo: installs, builds, starts a hub and three site agents on loopback in a
# temporary directory, makes a fleet root and an operator signing key, signs a policy,
# enrolls the agents' keys with labels (each agent trusts only the root), applies the
# example workflow config/workflows/hello.yaml, signed, to the sites labelled
# role=gateway, runs it there, signed, and shows the fleet status, the runs and one
# task's output (docs/security.md).
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

echo "== a fleet root (offline in real life) signs a policy naming the operator's key"
"$BIN/cli/outpostctl" trust keygen "$DEMO/root.key" >/dev/null 2>&1
"$BIN/cli/outpostctl" trust keygen "$DEMO/operator.key" >/dev/null 2>&1
cat > "$DEMO/policy.json" <<EOF
{"fleet": "demo", "version": 1,
 "operators": [{"name": "demo-operator", "key": "$(cat "$DEMO/operator.key.pub")",
                "may": ["apply", "start", "cancel", "approve"], "workflows": ["hello"], "sites": {}}]}
EOF
"$BIN/cli/outpostctl" trust sign-policy "$DEMO/policy.json" --root-key "$DEMO/root.key" \
  --out "$DEMO/policy.signed"
"${CTL[@]}" policy push "$DEMO/policy.signed"
export OUTPOST_SIGNING_KEY="$DEMO/operator.key"   # outpostctl signs what it asks sites to do
echo
echo "== a hub on loopback; three agents enroll with their own CURVE keys"
for spec in plant-north:gateway plant-south:gateway lab:test-bench; do
  site=${spec%%:*} role=${spec#*:}
  key=$("$BIN/site-agent/outpost-agent" --data-dir "$DEMO/$site" --show-key)
  "${CTL[@]}" site add "$site" --key "$key" --label role="$role" --label region=demo >/dev/null
  "$BIN/site-agent/outpost-agent" --data-dir "$DEMO/$site" --site "$site" \
    --hub "$SITES_EP" --hub-key "$DEMO/hub/keys/hub.pub" --trust-root "$DEMO/root.key.pub" \
    --log-level warn &
  PIDS+=($!)
done
for _ in $(seq 200); do
  "${CTL[@]}" status --json | grep -q '"online": 3' && break
  sleep 0.05
done
"${CTL[@]}" site list
echo
echo "== apply config/workflows/hello.yaml to role=gateway (signed)"
"${CTL[@]}" workflow apply config/workflows/hello.yaml --target role=gateway
echo
echo "== run it on every site that has it (signed), and wait for the results"
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
