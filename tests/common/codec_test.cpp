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

// msgpack-c's own map decoding, as the reference for Event's one-pass decoder.
struct ReferenceEvent {
  TimeMs time = 0;
  uint8_t type = 0;
  std::string run, task;
  int32_t attempt = 0;
  std::string state;
  int32_t exit_code = -1, signal = 0;
  std::string message, output, workflow;
  std::map<std::string, std::string> params;
  std::vector<std::string> tasks;
  std::string request;
  MSGPACK_DEFINE_MAP(time, type, run, task, attempt, state, exit_code, signal, message, output,
                     workflow, params, tasks, request);
};

// Decodes `bytes` both ways: the direct decoder must accept exactly what msgpack-c's map
// decoding accepts and read the same event. Counts which outcome it was.
void ExpectSameAsMsgpack(const std::string& bytes, const DecodeLimits& limits, int* agreed_ok,
                         int* agreed_error) {
  Event got;
  ReferenceEvent want;
  const bool ok = Decode(bytes, &got, limits).ok();
  ASSERT_EQ(ok, Decode(bytes, &want, limits).ok());
  if (!ok) {
    ++*agreed_error;
    return;
  }
  ++*agreed_ok;
  ASSERT_EQ(Encode(got), Encode(Event{want.time, want.type, want.run, want.task, want.attempt,
                                      want.state, want.exit_code, want.signal, want.message,
                                      want.output, want.workflow, want.params, want.tasks,
                                      want.request}));
}

// Random maps of Event's keys (and unknown and non-string keys), values of every type,
// keys given twice: the one-pass decoder accepts exactly what msgpack-c's map decoding
// accepts and reads the same values.
TEST(CodecTest, EventDecoderAgreesWithMsgpackMapDecoding) {
  const uint64_t seed = 20261201;
  Rng rng(seed);
  const char* keys[] = {"time",   "type",     "run",    "task",  "attempt", "state",
                        "exit_code", "signal", "message", "output", "workflow", "params",
                        "tasks",  "request",  "extra",  "Time",  ""};
  int agreed_ok = 0, agreed_error = 0;
  for (int i = 0; i < 20000; ++i) {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    const uint32_t n = static_cast<uint32_t>(rng.Uniform(8));
    pk.pack_map(n);
    for (uint32_t k = 0; k < n; ++k) {
      if (rng.Uniform(40) == 0) pk.pack(7);  // a key that is not a string
      else pk.pack(std::string(keys[rng.Uniform(std::size(keys) - 1)]));
      switch (rng.Uniform(16)) {
        case 0: pk.pack(static_cast<int64_t>(rng.Uniform(600)) - 300); break;
        case 1: pk.pack(std::string("v") + std::to_string(rng.Uniform(9))); break;
        case 2: pk.pack(std::map<std::string, std::string>{{"a", "b"}}); break;
        case 3: pk.pack(std::vector<std::string>{"x", "y"}); break;
        case 4: pk.pack(rng.Uniform(1) == 0); break;
        case 5: pk.pack(static_cast<uint64_t>(rng.Next())); break;
        case 6: pk.pack(1.5); break;
        case 7: pk.pack(std::vector<int>{1, 2}); break;
        case 8: pk.pack(std::map<std::string, int>{{"a", 1}}); break;
        case 9: pk.pack(std::map<std::string, std::string>{{"a", "b"}, {"c", "d"}}); break;
        case 10: {  // params with a key given twice: msgpack-c keeps the last
          pk.pack_map(2);
          pk.pack(std::string("k"));
          pk.pack(std::string("first"));
          pk.pack(std::string("k"));
          pk.pack(std::string("last"));
          break;
        }
        case 11: pk.pack_ext(2, 7); pk.pack_ext_body("ab", 2); break;
        case 12: pk.pack_bin(3); pk.pack_bin_body("a\0b", 3); break;
        case 13: pk.pack(static_cast<int64_t>(INT32_MIN) - static_cast<int64_t>(rng.Uniform(3))); break;
        case 14: pk.pack(std::vector<std::vector<std::string>>{{"deep"}}); break;
        default: pk.pack_nil(); break;
      }
    }
    const std::string bytes(buf.data(), buf.size());
    ASSERT_NO_FATAL_FAILURE(ExpectSameAsMsgpack(bytes, DecodeLimits{}, &agreed_ok, &agreed_error))
        << "seed " << seed << " case " << i;
  }
  // Both outcomes were exercised.
  EXPECT_GT(agreed_ok, 1000) << "seed " << seed;
  EXPECT_GT(agreed_error, 1000) << "seed " << seed;
}

// Damaged bytes (flipped, cut short, grown) of real events, under tight limits: the
// direct decoder (MsgReader) accepts exactly what msgpack-c's parser and converter
// accept, and reads the same event.
TEST(CodecTest, EventDecoderAgreesWithMsgpackOnDamagedBytes) {
  const uint64_t seed = 20261202;
  Rng rng(seed);
  Event e;
  e.time = 1'700'000'000'000;
  e.type = 1;
  e.run = "site-01ABC";
  e.task = "t";
  e.state = "running";
  e.output = std::string("\0\xff out", 6);
  e.params = {{"a", "1"}, {"bb", "22"}};
  e.tasks = {"x", "y", "z"};
  const std::string good = Encode(e);
  int agreed_ok = 0, agreed_error = 0;
  for (int i = 0; i < 50000; ++i) {
    std::string m = good;
    const int flips = static_cast<int>(rng.Uniform(4));
    for (int f = 0; f < flips; ++f) m[rng.Uniform(m.size() - 1)] = static_cast<char>(rng.Next());
    if (rng.Uniform(4) == 0) m.resize(rng.Uniform(m.size()));
    if (rng.Uniform(8) == 0) m.push_back(static_cast<char>(rng.Next()));
    DecodeLimits limits;
    limits.max_depth = 1 + rng.Uniform(3);
    limits.max_str = 4 + rng.Uniform(12);
    limits.max_array = 1 + rng.Uniform(4);
    limits.max_map = 2 + rng.Uniform(16);
    limits.max_ext = 1 + rng.Uniform(8);
    limits.max_bin = 4 + rng.Uniform(12);
    ASSERT_NO_FATAL_FAILURE(ExpectSameAsMsgpack(m, limits, &agreed_ok, &agreed_error))
        << "seed " << seed << " case " << i;
  }
  EXPECT_GT(agreed_ok, 1000) << "seed " << seed;
  EXPECT_GT(agreed_error, 1000) << "seed " << seed;
}

}  // namespace
}  // namespace outpost
