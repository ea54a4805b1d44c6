// Clock: the only way Outpost code learns the time.
//
// Time is milliseconds since the Unix epoch in an int64 (`TimeMs`), durations are int64
// milliseconds (`DurationMs`). Cores (engine, sync session) take a Clock& and never read
// the system clock themselves, so tests and the simulator drive them with ManualClock.
//
// Thread-safety: SystemClock is safe from any thread; ManualClock is not synchronized
// and belongs to the one thread that drives the core under test.
#pragma once

#include <cstdint>
#include <string>

namespace outpost {

using TimeMs = int64_t;
using DurationMs = int64_t;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimeMs Now() const = 0;
};

// Wall-clock time from the operating system.
class SystemClock final : public Clock {
 public:
  TimeMs Now() const override;
};

// Time that moves only when told to.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(TimeMs start = 1'700'000'000'000) : now_(start) {}
  TimeMs Now() const override { return now_; }
  void Advance(DurationMs d) { now_ += d; }
  void Set(TimeMs t) { now_ = t; }

 private:
  TimeMs now_;
};

// "2026-11-24T11:21:14.123Z"
std::string FormatTime(TimeMs t);

}  // namespace outpost
