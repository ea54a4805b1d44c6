#include "common/random.h"

#include <sys/random.h>
#include <unistd.h>
#include <ctime>

#include <cmath>
#include <cstring>

namespace outpost {
namespace {

uint64_t SplitMix64(uint64_t* x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

Rng::Rng(uint64_t seed) {
  for (auto& s : s_) s = SplitMix64(&seed);
}

uint64_t Rng::Next() {
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

uint64_t Rng::Uniform(uint64_t bound) {
  if (bound == UINT64_MAX) return Next();
  const uint64_t range = bound + 1;
  // Rejection sampling to avoid modulo bias.
  const uint64_t limit = UINT64_MAX - (UINT64_MAX % range);
  uint64_t x;
  do {
    x = Next();
  } while (x >= limit);
  return x % range;
}

uint64_t SeedFromOs() {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) != sizeof seed) {
    seed = static_cast<uint64_t>(time(nullptr)) ^ static_cast<uint64_t>(getpid()) << 32;
  }
  return seed;
}

DurationMs BackoffDelay(const BackoffPolicy& policy, int retry, Rng* rng) {
  if (retry < 1) retry = 1;
  double delay = static_cast<double>(policy.initial) * std::pow(policy.factor, retry - 1);
  const double cap = static_cast<double>(policy.max);
  if (!(delay < cap)) delay = cap;  // also catches inf / nan
  if (delay < 0) delay = 0;
  auto d = static_cast<DurationMs>(delay);
  if (policy.full_jitter && rng != nullptr) {
    d = static_cast<DurationMs>(rng->Uniform(static_cast<uint64_t>(d)));
  }
  return d;
}

}  // namespace outpost
