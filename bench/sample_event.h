// The site events the hub benchmarks send: a task's start or finish, fifty tasks to a run,
// about 100 bytes encoded (outpost-bench-hub and outpost-bench-fleet send the same bytes).
#pragma once

#include <string>

#include "common/protocol/event.h"

namespace outpost::bench {

inline std::string SampleEvent(size_t site, uint64_t i) {
  Event e;
  e.time = 1'700'000'000'000 + static_cast<TimeMs>(i);
  e.run = "site" + std::to_string(site) + "-01M87C95MV8X5HZQ572CT220" + std::to_string(i / 50);
  e.task = "task-" + std::to_string(i % 50);
  e.attempt = 1;
  e.type = static_cast<uint8_t>(i % 2 ? EventType::kAttemptStarted : EventType::kTaskFinished);
  e.state = i % 2 ? "running" : "succeeded";
  e.exit_code = 0;
  return Encode(e);
}

// A site streaming runs of `tasks` tasks each: every task's start, then (after all the
// starts) every task's finish, so a 512-event batch changes part of a large run
// (outpost-bench-hub --run-tasks).
inline std::string LargeRunEvent(size_t site, uint64_t i, uint64_t tasks) {
  Event e;
  e.time = 1'700'000'000'000 + static_cast<TimeMs>(i);
  e.run = "site" + std::to_string(site) + "-01M87C95MV8X5HZQ572CT220" + std::to_string(i / (2 * tasks));
  const uint64_t j = i % (2 * tasks);
  e.task = "task-" + std::to_string(j % tasks);
  e.attempt = 1;
  e.type = static_cast<uint8_t>(j < tasks ? EventType::kAttemptStarted : EventType::kTaskFinished);
  e.state = j < tasks ? "running" : "succeeded";
  e.exit_code = 0;
  return Encode(e);
}

}  // namespace outpost::bench
