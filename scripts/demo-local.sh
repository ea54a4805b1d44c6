#!/usr/bin/env bash
# The single-agent demo (no hub). Installs, builds, starts a site agent in a temporary data directory, runs the example
# workflow config/workflows/hello.yaml on it and shows the result.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
BIN=build
DATA=$(mktemp -d /tmp/outpost-demo.XXXXXX)
"$BIN/site-agent/outpost-agent" --data-dir "$DATA" --site demo-gateway --log-level warn &
AGENT=$!
trap 'kill $AGENT 2>/dev/null; wait $AGENT 2>/dev/null; rm -rf "$DATA"' EXIT
CTL=("$BIN/cli/outpostctl" --local --data-dir "$DATA")
for _ in $(seq 100); do "${CTL[@]}" status >/dev/null 2>&1 && break; sleep 0.05; done

echo "== validating config/workflows/hello.yaml"
"${CTL[@]}" workflow validate config/workflows/hello.yaml
echo
echo "== running it on the local agent (site demo-gateway)"
status=0
"${CTL[@]}" run start config/workflows/hello.yaml --param greeting="hello from the demo" --wait 2>/dev/null || status=$?
ID=$("${CTL[@]}" run list --json | sed -n 's/.*"id": "\(.*\)".*/\1/p' | tail -n 1)
echo
echo "== output of task 'report'"
"${CTL[@]}" run logs "$ID" report
echo "== output of task 'flaky', attempt 1 (it was retried)"
"${CTL[@]}" run logs "$ID" flaky --attempt 1
exit $status
