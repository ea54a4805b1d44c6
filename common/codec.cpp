#include "common/codec.h"

#include <memory>

namespace outpost {

namespace {

Status CheckSize(std::string_view bytes, const DecodeLimits& limits) {
  if (bytes.size() > limits.max_bytes) {
    return Status::ResourceExhausted("message of " + std::to_string(bytes.size()) +
                                     " bytes exceeds the limit of " +
                                     std::to_string(limits.max_bytes));
  }
  if (bytes.empty()) return Status::Corruption("empty message");
  return Status::Ok();
}

msgpack::unpack_limit Limit(const DecodeLimits& limits) {
  return msgpack::unpack_limit(limits.max_array, limits.max_map, limits.max_str, limits.max_bin,
                               limits.max_ext, limits.max_depth);
}

// Runs one msgpack-c parse and says what went wrong with the bytes, for operators (never
// as library text).
template <typename F>
Status RunParse(std::string_view bytes, const DecodeLimits& limits, F&& parse) {
  size_t offset = 0;
  try {
    parse(&offset);
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

bool ReferenceBytes(msgpack::type::object_type, size_t, void*) { return true; }

// This thread's spare zone: taken by an Unpacked, given back (cleared) when it ends.
// msgpack::zone::clear keeps its first chunk, so the spare holds at most that (8 KiB)
// between parses, however large the last one was.
thread_local std::unique_ptr<msgpack::zone> spare_zone;

}  // namespace

Status UnpackBounded(std::string_view bytes, const DecodeLimits& limits,
                     msgpack::object_handle* handle) {
  OUTPOST_RETURN_IF_ERROR(CheckSize(bytes, limits));
  const msgpack::unpack_limit limit = Limit(limits);
  return RunParse(bytes, limits, [&](size_t* offset) {
    *handle = msgpack::unpack(bytes.data(), bytes.size(), *offset, nullptr, nullptr, limit);
  });
}

Unpacked::Unpacked() : zone_(spare_zone.release()) {
  if (!zone_) zone_ = new msgpack::zone();
}

Unpacked::~Unpacked() {
  zone_->clear();
  if (!spare_zone) {
    spare_zone.reset(zone_);  // this thread's spare again (or, nested, the next one)
  } else {
    delete zone_;
  }
}

Status Unpacked::Parse(std::string_view bytes, const DecodeLimits& limits) {
  root_ = msgpack::object();
  zone_->clear();
  OUTPOST_RETURN_IF_ERROR(CheckSize(bytes, limits));
  const msgpack::unpack_limit limit = Limit(limits);
  return RunParse(bytes, limits, [&](size_t* offset) {
    root_ = msgpack::unpack(*zone_, bytes.data(), bytes.size(), *offset, ReferenceBytes, nullptr,
                            limit);
  });
}

MsgReader::MsgReader(std::string_view bytes, const DecodeLimits& limits)
    : p_(bytes.data()), end_(bytes.data() + bytes.size()), limits_(limits) {}

bool MsgReader::Take(size_t n, const char** at) {
  if (left() < n) return Fail("truncated msgpack (the message ends inside a value)");
  *at = p_;
  p_ += n;
  return true;
}

bool MsgReader::TakeUint(size_t n, uint64_t* out) {
  const char* at;
  if (!Take(n, &at)) return false;
  uint64_t v = 0;
  for (size_t k = 0; k < n; ++k) v = (v << 8) | static_cast<uint8_t>(at[k]);
  *out = v;
  return true;
}

bool MsgReader::Read(Value* v, size_t level) {
  static const std::string kLimit =
      "msgpack value exceeds a decode limit (string, binary, array or map length)";
  const char* at;
  if (!Take(1, &at)) return false;
  const uint8_t b = static_cast<uint8_t>(*at);
  uint64_t n = 0;
  *v = Value();
  auto container = [&](Type t, uint64_t count) {
    if (count > (t == Type::kArray ? limits_.max_array : limits_.max_map)) return Fail(kLimit);
    if (level + 1 > limits_.max_depth) {
      return Fail("msgpack nesting deeper than " + std::to_string(limits_.max_depth));
    }
    v->type = t;
    v->count = static_cast<uint32_t>(count);
    return true;
  };
  auto bytes = [&](Type t, uint64_t len, size_t max) {
    if (!Take(len, &at)) return false;
    if (len > max) return Fail(kLimit);
    v->type = t;
    v->raw = std::string_view(at, len);
    return true;
  };
  auto ext = [&](uint64_t len) {  // len: the data's; its type byte comes first
    if (!Take(len + 1, &at)) return false;
    if (len + 1 > limits_.max_ext) return Fail(kLimit);
    v->type = Type::kExt;
    v->raw = std::string_view(at + 1, len);
    return true;
  };
  auto integer = [&](int64_t i) {
    if (i < 0) {
      v->type = Type::kNegative;
      v->i = i;
    } else {
      v->type = Type::kPositive;
      v->u = static_cast<uint64_t>(i);
    }
    return true;
  };
  if (b <= 0x7f) {
    v->type = Type::kPositive;
    v->u = b;
    return true;
  }
  if (b >= 0xe0) return integer(static_cast<int8_t>(b));
  if ((b & 0xf0) == 0x80) return container(Type::kMap, b & 0x0f);
  if ((b & 0xf0) == 0x90) return container(Type::kArray, b & 0x0f);
  if ((b & 0xe0) == 0xa0) return bytes(Type::kStr, b & 0x1f, limits_.max_str);
  switch (b) {
    case 0xc0: v->type = Type::kNil; return true;
    case 0xc2: case 0xc3: v->type = Type::kBool; v->u = b & 1; return true;
    case 0xc4: return TakeUint(1, &n) && bytes(Type::kBin, n, limits_.max_bin);
    case 0xc5: return TakeUint(2, &n) && bytes(Type::kBin, n, limits_.max_bin);
    case 0xc6: return TakeUint(4, &n) && bytes(Type::kBin, n, limits_.max_bin);
    case 0xc7: return TakeUint(1, &n) && ext(n);
    case 0xc8: return TakeUint(2, &n) && ext(n);
    case 0xc9: return TakeUint(4, &n) && ext(n);
    case 0xca: v->type = Type::kFloat; return TakeUint(4, &n);
    case 0xcb: v->type = Type::kFloat; return TakeUint(8, &n);
    case 0xcc: v->type = Type::kPositive; return TakeUint(1, &v->u);
    case 0xcd: v->type = Type::kPositive; return TakeUint(2, &v->u);
    case 0xce: v->type = Type::kPositive; return TakeUint(4, &v->u);
    case 0xcf: v->type = Type::kPositive; return TakeUint(8, &v->u);
    case 0xd0: return TakeUint(1, &n) && integer(static_cast<int8_t>(n));
    case 0xd1: return TakeUint(2, &n) && integer(static_cast<int16_t>(n));
    case 0xd2: return TakeUint(4, &n) && integer(static_cast<int32_t>(n));
    case 0xd3: return TakeUint(8, &n) && integer(static_cast<int64_t>(n));
    case 0xd4: return ext(1);
    case 0xd5: return ext(2);
    case 0xd6: return ext(4);
    case 0xd7: return ext(8);
    case 0xd8: return ext(16);
    case 0xd9: return TakeUint(1, &n) && bytes(Type::kStr, n, limits_.max_str);
    case 0xda: return TakeUint(2, &n) && bytes(Type::kStr, n, limits_.max_str);
    case 0xdb: return TakeUint(4, &n) && bytes(Type::kStr, n, limits_.max_str);
    case 0xdc: return TakeUint(2, &n) && container(Type::kArray, n);
    case 0xdd: return TakeUint(4, &n) && container(Type::kArray, n);
    case 0xde: return TakeUint(2, &n) && container(Type::kMap, n);
    case 0xdf: return TakeUint(4, &n) && container(Type::kMap, n);
    default: return Fail("not valid msgpack");  // 0xc1, never used
  }
}

bool MsgReader::Skip(size_t level) {
  Value v;
  return Read(&v, level) && SkipElements(v, level);
}

bool MsgReader::SkipElements(const Value& v, size_t level) {
  if (v.type != Type::kArray && v.type != Type::kMap) return true;
  const uint64_t items = v.type == Type::kMap ? 2 * uint64_t{v.count} : v.count;
  for (uint64_t k = 0; k < items; ++k) {
    if (!Skip(level + 1)) return false;
  }
  return true;
}

}  // namespace outpost
