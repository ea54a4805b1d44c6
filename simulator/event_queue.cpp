#include "simulator/event_queue.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace outpost::sim {

DurationMs Exp(Rng* rng, DurationMs mean) {
  const double u = (static_cast<double>(rng->Uniform(1'000'000)) + 1) / 1'000'002.0;
  return std::max<DurationMs>(1, static_cast<DurationMs>(-std::log(u) * static_cast<double>(mean)));
}

void EventQueue::At(TimeMs t, std::function<void()> fn) {
  queue_.push(Item{std::max(t, clock_.Now()), order_++, std::move(fn)});
}

void EventQueue::Recurring(TimeMs first, std::function<std::optional<TimeMs>()> step) {
  Repeat(first, std::make_shared<std::function<std::optional<TimeMs>()>>(std::move(step)));
}

void EventQueue::Repeat(TimeMs at, StepFn step) {
  At(at, [this, step] {
    if (const std::optional<TimeMs> next = (*step)()) Repeat(*next, step);
  });
}

bool EventQueue::RunNext(TimeMs deadline) {
  if (queue_.empty()) return false;
  Item it = queue_.top();
  queue_.pop();
  if (it.at > deadline) return false;
  clock_.Set(it.at);
  it.fn();
  if (after_each_) after_each_();
  return true;
}

void EventQueue::Trace(const std::string& what) {
  static const char* debug = getenv("OUTPOST_SIM_DEBUG");  // a site name: print its trace
  if (debug && what.find(debug) != std::string::npos) {
    fprintf(stderr, "%10lld %s\n", static_cast<long long>(SinceStart()), what.c_str());
  }
  // FNV-1a over the time and what happened.
  auto mix = [this](const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) hash_ = (hash_ ^ b[i]) * 1099511628211ULL;
  };
  const TimeMs t = clock_.Now();
  mix(&t, sizeof t);
  mix(what.data(), what.size());
}

}  // namespace outpost::sim
