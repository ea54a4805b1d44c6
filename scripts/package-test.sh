#!/usr/bin/env bash
# Builds the native Debian packages, installs outpost-agent and outpost-cli on this
# machine, runs the agent from the package with the packaged configuration as the
# packaged user, checks that an edited conffile survives a reinstall, that removing keeps
# the agent's state and that purging deletes it. Changes the system: run it as root on a
# machine (or CI runner) where that is fine. CI runs it after the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "package-test: must run as root" >&2; exit 2; }
scripts/setup.sh build >/dev/null
(cd build && rm -f ./*.deb && cpack >/dev/null)
AGENT=$(ls build/outpost-agent_*.deb) CLI=$(ls build/outpost-cli_*.deb)
fail() { echo "package-test: FAIL: $*" >&2; exit 1; }
step() { echo "package-test: $*"; }

cleanup() {
  [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null || true
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq outpost-agent outpost-cli >/dev/null 2>&1 || true
}
trap cleanup EXIT

for tool in lintian:lintian systemd-analyze:systemd; do
  command -v "${tool%%:*}" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${tool#*:}" >/dev/null
done
step "lintian: no errors in any package"
for deb in build/outpost-*.deb; do
  lintian --fail-on error --tag-display-limit 0 "$deb" 2>&1 | grep -v 'root privileges' || true
  lintian --fail-on error "$deb" >/dev/null 2>&1 || fail "lintian errors in $deb"
done
step "systemd units: exposure (systemd-analyze security --offline)"
exposure() { systemd-analyze security --offline=yes "$1" 2>/dev/null | sed -n 's/.*exposure level for .*: \([0-9.]*\).*/\1/p'; }
HUB_X=$(exposure config/systemd/outpost-hub.service) AGENT_X=$(exposure config/systemd/outpost-agent.service)
echo "package-test: hub $HUB_X, agent $AGENT_X"
awk -v h="$HUB_X" -v a="$AGENT_X" 'BEGIN { exit !(h != "" && a != "" && h <= 2.5 && a <= 3.5) }' \
  || fail "unit exposure above budget (hub <= 2.5, agent <= 3.5)"

step "installing $AGENT and $CLI"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "./$AGENT" "./$CLI" >/dev/null
[ -x /usr/bin/outpost-agent ] && [ -x /usr/bin/outpostctl ] || fail "binaries not installed"
[ -f /etc/outpost/agent.conf ] || fail "config not installed"
[ -f /usr/lib/systemd/system/outpost-agent.service ] || fail "unit not installed"
getent passwd outpost-task >/dev/null || fail "no outpost-task user"
[ "$(stat -c '%U %a' /var/lib/outpost-agent)" = "root 711" ] || fail "state dir owner/mode"
/usr/bin/outpost-agent --config /etc/outpost/agent.conf --check-config >/dev/null || fail "packaged config invalid"

step "running the packaged agent as the unit does (root, tasks as outpost-task)"
/usr/bin/outpost-agent --config /etc/outpost/agent.conf --log-level warn &
PID=$!
for _ in $(seq 100); do [ -S /var/lib/outpost-agent/agent.sock ] && break; sleep 0.1; done
OUT=$(outpostctl --local --data-dir /var/lib/outpost-agent --json \
  run start /usr/share/outpost/workflows/hello.yaml --wait) || fail "run did not succeed: $OUT"
echo "$OUT" | grep -q '"state": "succeeded"' || fail "run state: $OUT"
ID=$(echo "$OUT" | sed -n 's/.*"id": "\([^"]*\)".*/\1/p' | head -n 1)
outpostctl --local --data-dir /var/lib/outpost-agent run logs "$ID" uptime >/dev/null || fail "no logs"
step "a task ran as outpost-task and its run's work directory is gone"
[ -z "$(ls /var/lib/outpost-agent/work)" ] || fail "work directory left: $(ls /var/lib/outpost-agent/work)"
step "the control socket refuses the task user"
if runuser -u outpost-task -- outpostctl --local --data-dir /var/lib/outpost-agent status >/dev/null 2>&1; then
  fail "outpost-task used the control socket"
fi
[ -f /var/lib/outpost-agent/agent.key ] && [ "$(stat -c %a /var/lib/outpost-agent/agent.key)" = 600 ] \
  || fail "agent key missing or not 0600"
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=

step "an edited conffile survives a reinstall"
echo "# edited by the operator" >> /etc/outpost/agent.conf
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall -o Dpkg::Options::=--force-confold "./$AGENT" >/dev/null
grep -q "edited by the operator" /etc/outpost/agent.conf || fail "conffile overwritten"

step "remove keeps the state, purge deletes it"
DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq outpost-agent >/dev/null
[ ! -e /usr/bin/outpost-agent ] || fail "binary left after remove"
[ -d /var/lib/outpost-agent/db ] || fail "state lost on remove"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq outpost-agent >/dev/null
[ ! -e /var/lib/outpost-agent ] || fail "state left after purge"
step "ok"
