#include "common/codec.h"

#include <gtest/gtest.h>

#include "common/protocol/event.h"
#include "common/random.h"

namespace outpost {
namespace {

TEST(CodecTest, EventRoundTrips) {
  Event e;
  e.time = 123;
  e.type = static_cast<uint8_t>(EventType::kAttemptFinished);
  e.run = "site-01";
  e.task = "t";
  e.attempt = 2;
  e.exit_code = 3;
  e.output = std::string("\0\xff binary", 9);
  Event back;
  ASSERT_TRUE(Decode(Encode(e), &back).ok());
  EXPECT_EQ(back.run, "site-01");
  EXPECT_EQ(back.attempt, 2);
  EXPECT_EQ(back.exit_code, 3);
  EXPECT_EQ(back.output, e.output);
}

TEST(CodecTest, TrailingBytesAreRejected) {
  std::string bytes = Encode(Event{}) + "x";
  Event back;
  Status s = Decode(bytes, &back);
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_NE(s.message().find("trailing"), std::string::npos);
}

TEST(CodecTest, HugeDeclaredLengthsAreRefusedWithoutAllocating) {
  // array32 claiming 4 billion elements, map32 likewise, str32 of 4 GiB.
  for (std::string bomb : {std::string("\xdd\xff\xff\xff\xff", 5), std::string("\xdf\xff\xff\xff\xff", 5),
                           std::string("\xdb\xff\xff\xff\xff", 5)}) {
    Event back;
    EXPECT_FALSE(Decode(bomb, &back).ok());
  }
}

TEST(CodecTest, DeepNestingIsRefused) {
  std::string deep(100, '\x91');  // 100 nested one-element arrays
  deep += '\x01';
  msgpack::object_handle h;
  EXPECT_FALSE(UnpackBounded(deep, DecodeLimits{}, &h).ok());
}

TEST(CodecTest, WrongShapeIsCorruptionNotACrash) {
  Event back;
  EXPECT_EQ(Decode(Encode(std::string("not a map")), &back).code(), Code::kCorruption);
  EXPECT_EQ(Decode("", &back).code(), Code::kCorruption);
  DecodeLimits small;
  small.max_bytes = 4;
  EXPECT_EQ(Decode(Encode(Event{}), &back, small).code(), Code::kResourceExhausted);
}

TEST(CodecTest, RandomMutationsNeverCrash) {
  const uint64_t seed = 20261124;
  Rng rng(seed);
  Event e;
  e.run = "run";
  e.output = "some output";
  const std::string good = Encode(e);
  for (int i = 0; i < 20000; ++i) {
    std::string m = good;
    int flips = 1 + static_cast<int>(rng.Uniform(4));
    for (int f = 0; f < flips; ++f) m[rng.Uniform(m.size() - 1)] = static_cast<char>(rng.Next());
    if (rng.Uniform(3) == 0) m.resize(rng.Uniform(m.size()));
    Event back;
    Decode(m, &back).IgnoreError();  // must return, whatever it says
  }
  SUCCEED() << "seed " << seed;
}

}  // namespace
}  // namespace outpost
