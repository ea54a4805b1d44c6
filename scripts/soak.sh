#!/usr/bin/env bash
# The simulator soak: 1,000 sites for 24 simulated hours with partitions, a hub outage,
# hub and agent crashes, flapping and lossy links (simulator/scenarios/soak-1000.yaml).
# Prints the report, including wall time and the simulated-to-real ratio.
#   scripts/soak.sh [--seed N]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build >/dev/null
exec build/simulator/outpost-sim simulator/scenarios/soak-1000.yaml "$@"
