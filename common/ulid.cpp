#include "common/ulid.h"

namespace outpost {

std::string MakeUlid(TimeMs now, Rng* rng) {
  static const char* kAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  std::string out(26, '0');
  auto t = static_cast<uint64_t>(now) & ((1ULL << 48) - 1);
  for (int i = 9; i >= 0; --i) {  // 10 chars x 5 bits = 50 bits, top 2 bits zero
    out[i] = kAlphabet[t & 31];
    t >>= 5;
  }
  uint64_t hi = rng->Next(), lo = rng->Next();
  for (int i = 0; i < 16; ++i) {  // 16 chars x 5 bits = 80 bits
    uint64_t& src = i < 8 ? hi : lo;
    out[10 + i] = kAlphabet[src & 31];
    src >>= 5;
  }
  return out;
}

}  // namespace outpost
