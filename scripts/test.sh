#!/usr/bin/env bash
# Installs, builds with -Werror and runs the whole test suite (unit, executor and
# integration tests with the real binaries) in parallel.
#   scripts/test.sh              # RelWithDebInfo build in build/
#   scripts/test.sh --sanitize   # ASan + UBSan build in build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--sanitize" ]; then
  # Benchmarks are measured in the normal build; the sanitizer build skips them.
  scripts/setup.sh build-asan -DOUTPOST_WERROR=ON -DOUTPOST_SANITIZE=ON -DOUTPOST_BENCH=OFF
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  cd build-asan
else
  scripts/setup.sh build -DOUTPOST_WERROR=ON
  cd build
fi
if [ "${1:-}" = "--sanitize" ]; then
  # The simulator's sweeps (label `sweep`) measure seeds, not memory errors: the same
  # code runs here through the scenarios' single seeds.
  ctest -j"$(nproc)" --output-on-failure --timeout 300 -LE sweep
else
  ctest -j"$(nproc)" --output-on-failure --timeout 300
fi
