#!/usr/bin/env bash
# Fuzzes every input boundary for a bounded time under ASan + UBSan, each with a fresh seed
# (printed; replay with the command it prints):
#   - the wire, command and event decoders (outpost-fuzz-wire)
#   - the hub's operator API and the agent's control socket (outpost-fuzz-requests)
#   scripts/fuzz.sh [SECONDS]     # default 60 for the decoders; the request fuzzer runs
#                                 # SECONDS*300 hub requests and SECONDS*30 agent requests
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build-asan -DOUTPOST_WERROR=ON -DOUTPOST_SANITIZE=ON >/dev/null
ninja -C build-asan outpost-fuzz-wire outpost-fuzz-requests outpost-agent >/dev/null
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
S=${1:-60}
build-asan/tests/outpost-fuzz-wire --seconds "$S"
build-asan/tests/outpost-fuzz-requests --iterations $((S * 300)) \
  --agent-bin build-asan/site-agent/outpost-agent --agent-iterations $((S * 30))
