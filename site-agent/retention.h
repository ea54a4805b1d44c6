// Retention: which finished runs lose their stored output, by age and by a byte budget
// for the whole store. A pure function; the agent scans the store, asks, and deletes the
// output keys (never the run and task state or the event log) in one batch with an
// output.trimmed event.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/clock.h"

namespace outpost {

struct StoredOutput {
  std::string run;
  TimeMs finished = 0;  // when the run finished
  uint64_t bytes = 0;   // its stored output (keys and values)
};

struct TrimPlan {
  struct Item {
    std::string run;
    std::string reason;  // "older than the retention age" | "over the output budget"
    uint64_t bytes = 0;
  };
  std::vector<Item> trim;  // oldest first
  uint64_t bytes = 0;      // removed
  uint64_t kept = 0;       // output bytes left
};

// Runs whose output is older than `retain` (0: no age limit) go; then the oldest go until
// what is left fits `budget` (0: no budget). Runs with no stored output are passed over.
TrimPlan PlanTrim(std::vector<StoredOutput> runs, TimeMs now, DurationMs retain, uint64_t budget);

}  // namespace outpost
