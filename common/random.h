// Rng: the seeded source of randomness, and the one backoff function.
//
// Every random choice in Outpost (retry jitter, run id entropy, simulator faults) comes
// from an Rng passed in by whoever owns the node; one seed replays one history. The
// generator is xoshiro256** seeded through splitmix64: fast, small, good statistics.
//
// Thread-safety: not synchronized; one Rng per owner thread.
#pragma once

#include <cstdint>

#include "common/clock.h"

namespace outpost {

class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t Next();
  // Uniform in [0, bound]; bound >= 0.
  uint64_t Uniform(uint64_t bound);

 private:
  uint64_t s_[4];
};

// A seed for the real daemons, from the OS entropy source. Only main() calls it.
uint64_t SeedFromOs();

struct BackoffPolicy {
  DurationMs initial = 1000;       // delay before the first retry
  double factor = 2.0;             // growth per further retry
  DurationMs max = 5 * 60 * 1000;  // cap on any single delay
  bool full_jitter = false;        // draw uniformly from [0, delay] instead of delay
};

// Delay before retry number `retry` (1 = first retry): min(max, initial * factor^(retry-1)),
// or a uniform draw from [0, that] with full jitter. The only retry-delay code in Outpost.
DurationMs BackoffDelay(const BackoffPolicy& policy, int retry, Rng* rng);

}  // namespace outpost
