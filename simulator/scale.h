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
  // Hub processes sharing the store (simulator/shared_store.h); with more than one, a site
  // moves to another at about one run in `move_every`, and the batch it was sending when
  // its link broke reaches the old hub late, after the new one applied it.
  int hubs = 1;
  int move_every = 5;
};

// Runs it and prints the report; 0 when the invariants held.
int RunScale(const ScaleOptions& o);

}  // namespace outpost::sim
