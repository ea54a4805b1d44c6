#include "common/random.h"

#include <gtest/gtest.h>

#include "common/ulid.h"

namespace outpost {
namespace {

TEST(RngTest, SameSeedSameSequence) {
  Rng a(5), b(5), c(6);
  for (int i = 0; i < 100; ++i) {
    uint64_t x = a.Next();
    EXPECT_EQ(x, b.Next());
    (void)c;
  }
  EXPECT_NE(Rng(5).Next(), Rng(6).Next());
}

TEST(RngTest, UniformStaysInBounds) {
  Rng r(1);
  for (int i = 0; i < 10000; ++i) EXPECT_LE(r.Uniform(7), 7u);
  EXPECT_EQ(r.Uniform(0), 0u);
}

TEST(BackoffTest, ExponentialWithCap) {
  BackoffPolicy p{1000, 2.0, 5000, false};
  EXPECT_EQ(BackoffDelay(p, 1, nullptr), 1000);
  EXPECT_EQ(BackoffDelay(p, 2, nullptr), 2000);
  EXPECT_EQ(BackoffDelay(p, 3, nullptr), 4000);
  EXPECT_EQ(BackoffDelay(p, 4, nullptr), 5000);
  EXPECT_EQ(BackoffDelay(p, 1000, nullptr), 5000);  // no overflow
}

TEST(BackoffTest, FullJitterIsWithinRangeAndSeeded) {
  BackoffPolicy p{1000, 2.0, 60000, true};
  Rng a(9), b(9);
  for (int retry = 1; retry < 10; ++retry) {
    DurationMs d = BackoffDelay(p, retry, &a);
    EXPECT_GE(d, 0);
    EXPECT_LE(d, BackoffDelay(BackoffPolicy{1000, 2.0, 60000, false}, retry, nullptr));
    EXPECT_EQ(d, BackoffDelay(p, retry, &b));
  }
}

TEST(UlidTest, SortsByTimeAndIsWellFormed) {
  Rng r(3);
  std::string a = MakeUlid(1000, &r), b = MakeUlid(1001, &r);
  EXPECT_EQ(a.size(), 26u);
  EXPECT_LT(a, b);
  EXPECT_EQ(a.find_first_not_of("0123456789ABCDEFGHJKMNPQRSTVWXYZ"), std::string::npos);
}

}  // namespace
}  // namespace outpost
