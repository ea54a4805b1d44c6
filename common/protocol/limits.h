// The protocol's limits: one table, in the code, that docs/protocol.md repeats ("Limits")
// and a test compares with the document (tests/common/protocol/limits_test.cpp).
//
// A receiver enforces these itself, whatever the sender's own settings: a frame, batch or
// value past a limit is refused with an ERROR naming the limit, and counted.
//
// Thread-safety: constants.
#pragma once

#include <cstddef>
#include <cstdint>

namespace outpost {

// A site frame (ZeroMQ message) on the sites endpoint, and an operator request frame.
inline constexpr size_t kMaxFrameBytes = 8 << 20;
inline constexpr size_t kMaxOperatorFrameBytes = 8 << 20;
// One BATCH: entries and the sum of their sizes.
inline constexpr size_t kMaxBatchEntries = 4096;
inline constexpr size_t kMaxBatchBytes = 4 << 20;
// Decoding a frame: the longest string or binary value, the longest array, the most map
// keys, and the deepest nesting.
inline constexpr size_t kMaxWireString = 4 << 20;
inline constexpr size_t kMaxWireArray = 100000;
inline constexpr size_t kMaxWireMap = 64;
inline constexpr size_t kMaxWireDepth = 4;
// Sequence numbers, heads and watermarks: a value above this is impossible (2^48 events is
// 8.9 years at a million events a second) and refused.
inline constexpr uint64_t kMaxSeq = uint64_t{1} << 48;
// A line on the agent's local control socket.
inline constexpr size_t kMaxControlLine = 4 << 20;

}  // namespace outpost
