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
  // Errors are said for operators (what is wrong with the bytes), never as library text.
  try {
    *handle = msgpack::unpack(bytes.data(), bytes.size(), offset, nullptr, nullptr, limit);
  } catch (const msgpack::insufficient_bytes&) {
    return Status::Corruption("truncated msgpack (the message ends inside a value)");
  } catch (const msgpack::depth_size_overflow&) {
    return Status::Corruption("msgpack nesting deeper than " + std::to_string(limits.max_depth));
  } catch (const msgpack::size_overflow&) {
    return Status::Corruption(
        "msgpack value exceeds a decode limit (string, binary, array or map length)");
  } catch (const std::bad_alloc&) {
    return Status::Corruption("msgpack value too large to hold");
  } catch (const std::exception&) {
    return Status::Corruption("not valid msgpack");
  }
  if (offset != bytes.size()) {
    return Status::Corruption("msgpack: " + std::to_string(bytes.size() - offset) +
                              " trailing bytes");
  }
  return Status::Ok();
}

}  // namespace outpost
