// Virtual time for the simulation: one ManualClock and one queue of events ordered by
// (time, insertion order), and the trace hash, an FNV-1a over the time and a line for every
// delivery, connection, crash and run start. Whatever runs on the queue draws from seeded
// Rngs only, so a scenario and a seed replay the same events and the same hash.
//
// Not thread-safe: a simulation runs on one thread; each event runs to completion, and the
// events it adds run after it (none earlier than the current time).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/random.h"

namespace outpost::sim {

// Where virtual time starts.
inline constexpr TimeMs kSimStart = 1'800'000'000'000;

// Exponential draw with the given mean, at least 1 ms: the time to the next crash or reset.
DurationMs Exp(Rng* rng, DurationMs mean);

class EventQueue {
 public:
  EventQueue() : clock_(kSimStart) {}
  EventQueue(const EventQueue&) = delete;
  EventQueue& operator=(const EventQueue&) = delete;

  const ManualClock& clock() const { return clock_; }
  TimeMs Now() const { return clock_.Now(); }
  TimeMs SinceStart() const { return clock_.Now() - kSimStart; }

  // Runs fn at t, or now if t is past; events due at one time run in the order they were added.
  void At(TimeMs t, std::function<void()> fn);
  // Runs step at `first`, then again at every time it returns, until it returns nullopt.
  void Recurring(TimeMs first, std::function<std::optional<TimeMs>()> step);
  // Sets the clock to the earliest event's time and runs it. False, with the clock unchanged,
  // if the queue is empty or that event is past the deadline (it is dropped).
  bool RunNext(TimeMs deadline);
  // Called after every event (the world's crash points are acted on there).
  void set_after_each(std::function<void()> fn) { after_each_ = std::move(fn); }

  // Adds `what`, at the current time, to the trace hash. OUTPOST_SIM_DEBUG=TEXT prints every
  // trace line containing TEXT (a site name: that site's history) to stderr.
  void Trace(const std::string& what);
  uint64_t trace_hash() const { return hash_; }

 private:
  using StepFn = std::shared_ptr<std::function<std::optional<TimeMs>()>>;
  struct Item {
    TimeMs at;
    uint64_t order;
    std::function<void()> fn;
    bool operator>(const Item& o) const { return at != o.at ? at > o.at : order > o.order; }
  };

  void Repeat(TimeMs at, StepFn step);

  ManualClock clock_;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> queue_;
  uint64_t order_ = 0;
  uint64_t hash_ = 1469598103934665603ULL;
  std::function<void()> after_each_;
};

}  // namespace outpost::sim
