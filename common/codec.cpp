#include "common/codec.h"

namespace outpost {

Status UnpackBounded(std::string_view bytes, const DecodeLimits& limits,
                     msgpack::object_handle* handle) {
  if (bytes.size() > limits.max_bytes) {
    return Status::ResourceExhausted("message of " + std::to_string(bytes.size()) +
                                     " bytes exceeds the limit of " +
                                     std::to_string(limits.max_bytes));
  }
  if (bytes.empty()) return Status::Corruption("empty message");
  msgpack::unpack_limit limit(limits.max_array, limits.max_map, limits.max_str, limits.max_bin,
                              limits.max_ext, limits.max_depth);
  size_t offset = 0;
  try {
    *handle = msgpack::unpack(bytes.data(), bytes.size(), offset, nullptr, nullptr, limit);
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("msgpack: ") + e.what());
  }
  if (offset != bytes.size()) {
    return Status::Corruption("msgpack: " + std::to_string(bytes.size() - offset) +
                              " trailing bytes");
  }
  return Status::Ok();
}

}  // namespace outpost
