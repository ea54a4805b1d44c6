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
  msgpack::object_handle handle;
  OUTPOST_RETURN_IF_ERROR(UnpackBounded(bytes, limits, &handle));
  try {
    handle.get().convert(*out);
  } catch (const std::exception&) {
    return Status::Corruption(
        "a field has the wrong msgpack type (see docs/protocol.md for each field's type)");
  }
  return Status::Ok();
}

}  // namespace outpost
