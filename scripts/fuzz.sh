#!/usr/bin/env bash
# Fuzzes the wire, command and event decoders for a bounded time under ASan + UBSan,
# with a fresh seed (printed; replay with build-asan/tests/outpost-fuzz-wire --seed S).
#   scripts/fuzz.sh [SECONDS]     # default 60
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build-asan -DOUTPOST_WERROR=ON -DOUTPOST_SANITIZE=ON >/dev/null
ninja -C build-asan outpost-fuzz-wire >/dev/null
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
build-asan/tests/outpost-fuzz-wire --seconds "${1:-60}"
