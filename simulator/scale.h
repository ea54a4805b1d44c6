// outpost-sim scale: one HubCore carrying many light sites under virtual time
// (simulator/scale.cpp, docs/simulator.md "Scale").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/clock.h"

namespace outpost::sim {

struct ScaleOptions {
  size_t sites = 100'000;
  int hours = 24;
  DurationMs run_every_ms = 4 * 3'600'000;  // each site starts a run about this often
  uint64_t seed = 1;
  std::string mutation = "none";  // a planted hub bug (common/faults.h) the check must catch
};

// Runs it and prints the report; 0 when the invariants held.
int RunScale(const ScaleOptions& o);

}  // namespace outpost::sim
