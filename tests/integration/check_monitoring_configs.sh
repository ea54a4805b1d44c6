#!/usr/bin/env bash
# The shipped monitoring files (config/monitoring/) held to Prometheus's own tools: the
# example configuration and the alert rules load, and every query of the Grafana
# dashboard parses as PromQL (each is checked as a recording rule, with the dashboard's
# variables filled in).
set -euo pipefail
dir="$1/config/monitoring"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
promtool check rules "$dir/outpost-alerts.yml"
promtool check config "$dir/prometheus.yml"
python3 - "$dir/grafana-dashboard.json" "$tmp/dashboard-rules.yml" <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
assert exprs, "the dashboard has no queries"
with open(sys.argv[2], "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, e in enumerate(exprs):
        e = e.replace("$__rate_interval", "5m").replace("$site", ".*")
        f.write(f"      - record: dashboard:q{i}\n        expr: {json.dumps(e)}\n")
print(f"{len(exprs)} dashboard queries")
PY
promtool check rules "$tmp/dashboard-rules.yml"
