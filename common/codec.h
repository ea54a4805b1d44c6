// Bounded msgpack encoding and decoding: the one adapter around msgpack-c.
//
// msgpack-c's default unpack limits are unlimited (a few hostile bytes can ask for
// gigabytes), and conversion throws on a type mismatch. Decode() always passes limits,
// rejects trailing bytes, and turns every exception into a Status. Nothing msgpack
// throws escapes this file.
//
// Thread-safety: stateless functions.
#pragma once

#include <msgpack.hpp>

#include <string>
#include <string_view>

#include "common/status.h"

namespace outpost {

struct DecodeLimits {
  size_t max_bytes = 4 << 20;  // whole message
  size_t max_array = 65536;
  size_t max_map = 65536;
  size_t max_str = 1 << 20;
  size_t max_bin = 1 << 20;
  size_t max_ext = 1024;
  size_t max_depth = 16;
};

template <typename T>
std::string Encode(const T& value) {
  msgpack::sbuffer buf;
  msgpack::pack(buf, value);
  return std::string(buf.data(), buf.size());
}

// Parses `bytes` into a msgpack object held by `handle`, within `limits`.
Status UnpackBounded(std::string_view bytes, const DecodeLimits& limits,
                     msgpack::object_handle* handle);

// A parse of `bytes` whose strings and binaries point into `bytes` (nothing is copied) and
// whose objects live in a zone this thread reuses: decoding an event or a frame costs no
// allocation of its own. Valid while this and `bytes` live; within the same limits and
// with the same errors as UnpackBounded. Parses may nest (a converter that parses again
// gets a zone of its own).
class Unpacked {
 public:
  Unpacked();
  ~Unpacked();
  Unpacked(const Unpacked&) = delete;
  Unpacked& operator=(const Unpacked&) = delete;

  Status Parse(std::string_view bytes, const DecodeLimits& limits);
  const msgpack::object& root() const { return root_; }

 private:
  msgpack::zone* zone_;  // owned; this thread's spare when there was one
  msgpack::object root_;
};

// Reads msgpack straight from bytes, for the hot decoders (Event) that must not build
// msgpack-c's object tree: accepts exactly what msgpack-c's parser accepts within the same
// DecodeLimits (nesting counted as msgpack-c counts it: the outermost container is level
// 1), and every failure is said in UnpackBounded's words. Nothing throws.
class MsgReader {
 public:
  enum class Type { kNil, kBool, kPositive, kNegative, kFloat, kStr, kBin, kExt, kArray, kMap };
  struct Value {
    Type type = Type::kNil;
    uint64_t u = 0;        // kPositive; kBool: 0 or 1
    int64_t i = 0;         // kNegative
    std::string_view raw;  // kStr, kBin, kExt (its data)
    uint32_t count = 0;    // kArray: elements, kMap: pairs (they follow)
  };

  MsgReader(std::string_view bytes, const DecodeLimits& limits);

  // The next value at nesting `level` (a container's own level: the top value is 0, so a
  // top-level map is level 1). Containers give their count; their elements follow.
  bool Read(Value* v, size_t level);
  // Reads one whole value at `level`, elements included.
  bool Skip(size_t level);
  // Reads the elements of `v` (read at `level`) when it is a container; nothing otherwise.
  bool SkipElements(const Value& v, size_t level);
  bool AtEnd() const { return p_ == end_; }
  size_t left() const { return static_cast<size_t>(end_ - p_); }
  // Why the last Read or Skip failed.
  const std::string& error() const { return error_; }
  bool Fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
    return false;
  }

 private:
  bool Take(size_t n, const char** at);
  bool TakeUint(size_t n, uint64_t* out);

  const char* p_;
  const char* end_;
  DecodeLimits limits_;
  std::string error_;
};

// One pass over a msgpack map for a hand-written converter: calls field(i, value) for
// each key that is keys[i], the first time it appears; unknown keys are skipped; a map
// that is not one, or a key that is not a string, throws msgpack::type_error (as
// MSGPACK_DEFINE_MAP does, without copying every key into a std::map first).
template <size_t N, typename F>
void ForEachMapField(const msgpack::object& o, const std::string_view (&keys)[N], F&& field) {
  static_assert(N <= 32, "one bit of `seen` per key");
  if (o.type != msgpack::type::MAP) throw msgpack::type_error();
  uint32_t seen = 0;
  for (uint32_t i = 0; i < o.via.map.size; ++i) {
    const msgpack::object_kv& kv = o.via.map.ptr[i];
    if (kv.key.type != msgpack::type::STR) throw msgpack::type_error();
    const std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
    size_t k = 0;
    while (k < N && keys[k] != key) ++k;
    if (k == N || (seen & (1u << k))) continue;
    seen |= 1u << k;
    field(k, kv.val);
  }
}

template <typename T>
Status Decode(std::string_view bytes, T* out, const DecodeLimits& limits = {}) {
  Unpacked parsed;
  OUTPOST_RETURN_IF_ERROR(parsed.Parse(bytes, limits));
  try {
    parsed.root().convert(*out);
  } catch (const std::exception&) {
    return Status::Corruption(
        "a field has the wrong msgpack type (see docs/protocol.md for each field's type)");
  }
  return Status::Ok();
}

}  // namespace outpost
