#!/usr/bin/env bash
# The long simulator sweep: the storm scenario over 10,000 seeds (docs/simulator.md,
# "The sweep"). About 100 minutes on two cores.
#   scripts/sim-sweep.sh                 # storm, seeds 1-10000, one process per core
#   scripts/sim-sweep.sh swarm 1-5000    # another scenario and range
set -euo pipefail
cd "$(dirname "$0")/.."
scenario="${1:-storm}"
seeds="${2:-1-10000}"
[ -x build/simulator/outpost-sim ] || scripts/setup.sh build
exec build/simulator/outpost-sim sweep "simulator/scenarios/${scenario}.yaml" --seeds "$seeds" -j "$(nproc)"
