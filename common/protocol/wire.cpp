#include "common/protocol/wire.h"

namespace outpost {

namespace {

// Field names on the wire (docs/protocol.md, "Frames").
constexpr char kV[] = "v", kT[] = "t", kSite[] = "site", kInc[] = "incarnation",
               kUpHead[] = "up_head", kDownApplied[] = "down_applied", kUpAcked[] = "up_acked",
               kDownHead[] = "down_head", kFirstSeq[] = "first_seq", kEntries[] = "entries",
               kSeq[] = "seq", kCredit[] = "credit", kMessage[] = "message",
               kDigest[] = "digest", kSize[] = "size", kData[] = "data",
               kHubEpoch[] = "hub_epoch", kTrimmed[] = "trimmed",
               kDownDigest[] = "down_digest";

using Packer = msgpack::packer<msgpack::sbuffer>;

void PackStr(Packer& p, std::string_view s) {
  p.pack_str(static_cast<uint32_t>(s.size()));
  p.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

void PackKey(Packer& p, const char* k) { PackStr(p, k); }

Status WrongType(std::string_view key, const char* want) {
  return Status::InvalidArgument("field '" + std::string(key) + "' must be " + want);
}

Status ReadUint(const msgpack::object& o, std::string_view key, uint64_t max, uint64_t* out) {
  if (o.type != msgpack::type::POSITIVE_INTEGER) return WrongType(key, "an unsigned integer");
  if (o.via.u64 > max) {
    return Status::InvalidArgument("field '" + std::string(key) + "' is " +
                                   std::to_string(o.via.u64) + ", above the limit " +
                                   std::to_string(max));
  }
  *out = o.via.u64;
  return Status::Ok();
}

Status ReadStr(const msgpack::object& o, std::string_view key, std::string* out) {
  if (o.type != msgpack::type::STR) return WrongType(key, "a string");
  out->assign(o.via.str.ptr, o.via.str.size);
  return Status::Ok();
}

Status ReadEntries(const msgpack::object& o, std::vector<std::string>* out) {
  if (o.type != msgpack::type::ARRAY) return WrongType(kEntries, "an array of bin");
  if (o.via.array.size > kMaxBatchEntries) {
    return Status::InvalidArgument("a batch of " + std::to_string(o.via.array.size) +
                                   " entries exceeds the limit of " +
                                   std::to_string(kMaxBatchEntries));
  }
  size_t bytes = 0;
  out->reserve(o.via.array.size);
  for (uint32_t i = 0; i < o.via.array.size; ++i) {
    const msgpack::object& e = o.via.array.ptr[i];
    if (e.type == msgpack::type::BIN) {
      out->emplace_back(e.via.bin.ptr, e.via.bin.size);
    } else if (e.type == msgpack::type::STR) {
      out->emplace_back(e.via.str.ptr, e.via.str.size);
    } else {
      return WrongType(kEntries, "an array of bin");
    }
    bytes += out->back().size();
    if (bytes > kMaxBatchBytes) {
      return Status::InvalidArgument("a batch of more than " + std::to_string(kMaxBatchBytes) +
                                     " bytes of entries exceeds the limit");
    }
  }
  return Status::Ok();
}

Status ReadField(std::string_view k, const msgpack::object& v, Message* m) {
  uint64_t u = 0;
  if (k == kV) {
    OUTPOST_RETURN_IF_ERROR(ReadUint(v, k, UINT32_MAX, &u));
    m->v = static_cast<uint32_t>(u);
  } else if (k == kT) {
    OUTPOST_RETURN_IF_ERROR(ReadUint(v, k, UINT8_MAX, &u));
    m->t = static_cast<uint8_t>(u);
  } else if (k == kSite) {
    return ReadStr(v, k, &m->site);
  } else if (k == kInc) {
    return ReadUint(v, k, UINT64_MAX, &m->incarnation);
  } else if (k == kUpHead) {
    return ReadUint(v, k, kMaxSeq, &m->up_head);
  } else if (k == kDownApplied) {
    return ReadUint(v, k, kMaxSeq, &m->down_applied);
  } else if (k == kUpAcked) {
    return ReadUint(v, k, kMaxSeq, &m->up_acked);
  } else if (k == kDownHead) {
    return ReadUint(v, k, kMaxSeq, &m->down_head);
  } else if (k == kHubEpoch) {
    return ReadUint(v, k, UINT64_MAX, &m->hub_epoch);
  } else if (k == kDownDigest) {
    return ReadUint(v, k, UINT64_MAX, &m->down_digest);
  } else if (k == kTrimmed) {
    if (v.type != msgpack::type::BOOLEAN) return WrongType(k, "a bool");
    m->trimmed = v.via.boolean;
  } else if (k == kFirstSeq) {
    return ReadUint(v, k, kMaxSeq, &m->first_seq);
  } else if (k == kEntries) {
    return ReadEntries(v, &m->entries);
  } else if (k == kSeq) {
    return ReadUint(v, k, kMaxSeq, &m->seq);
  } else if (k == kCredit) {
    OUTPOST_RETURN_IF_ERROR(ReadUint(v, k, UINT32_MAX, &u));
    m->credit = static_cast<uint32_t>(u);
  } else if (k == kMessage) {
    return ReadStr(v, k, &m->message);
  } else if (k == kDigest) {
    OUTPOST_RETURN_IF_ERROR(ReadStr(v, k, &m->digest));
    if (m->digest.size() > 64) return Status::InvalidArgument("field 'digest' is longer than 64");
  } else if (k == kSize) {
    return ReadUint(v, k, uint64_t{1} << 48, &m->size);
  } else if (k == kData) {
    if (v.type != msgpack::type::BIN) return WrongType(k, "bin");
    m->data.assign(v.via.bin.ptr, v.via.bin.size);
  }
  return Status::Ok();  // unknown keys are ignored (a newer peer may send more)
}

}  // namespace

const char* MsgTypeName(uint8_t t) {
  switch (static_cast<MsgType>(t)) {
    case MsgType::kHello: return "HELLO";
    case MsgType::kWelcome: return "WELCOME";
    case MsgType::kBatch: return "BATCH";
    case MsgType::kAck: return "ACK";
    case MsgType::kPing: return "PING";
    case MsgType::kPong: return "PONG";
    case MsgType::kError: return "ERROR";
    case MsgType::kArtifactGet: return "ARTIFACT_GET";
    case MsgType::kArtifactChunk: return "ARTIFACT_CHUNK";
  }
  return "UNKNOWN";
}

std::string EncodeMessage(const Message& m) {
  msgpack::sbuffer buf;
  Packer p(buf);
  const auto type = m.type();
  size_t n = 2;
  if (type == MsgType::kHello) n += 4 + (m.hub_epoch != 0) + (m.down_digest != 0);
  if (type == MsgType::kWelcome) n += 2 + (m.hub_epoch != 0);
  if (type == MsgType::kBatch) n += 3 + m.trimmed;
  if (type == MsgType::kAck) n += 2;
  if (type == MsgType::kError) n += 1;
  if (type == MsgType::kArtifactGet) n += 2;
  if (type == MsgType::kArtifactChunk) n += 5;
  p.pack_map(static_cast<uint32_t>(n));
  PackKey(p, kV);
  p.pack_uint32(m.v);
  PackKey(p, kT);
  p.pack_uint8(m.t);
  switch (type) {
    case MsgType::kHello:
      PackKey(p, kSite);
      PackStr(p, m.site);
      PackKey(p, kInc);
      p.pack_uint64(m.incarnation);
      PackKey(p, kUpHead);
      p.pack_uint64(m.up_head);
      PackKey(p, kDownApplied);
      p.pack_uint64(m.down_applied);
      if (m.hub_epoch != 0) {
        PackKey(p, kHubEpoch);
        p.pack_uint64(m.hub_epoch);
      }
      if (m.down_digest != 0) {
        PackKey(p, kDownDigest);
        p.pack_uint64(m.down_digest);
      }
      break;
    case MsgType::kWelcome:
      PackKey(p, kUpAcked);
      p.pack_uint64(m.up_acked);
      PackKey(p, kDownHead);
      p.pack_uint64(m.down_head);
      if (m.hub_epoch != 0) {
        PackKey(p, kHubEpoch);
        p.pack_uint64(m.hub_epoch);
      }
      break;
    case MsgType::kBatch:
      PackKey(p, kFirstSeq);
      p.pack_uint64(m.first_seq);
      PackKey(p, kUpHead);
      p.pack_uint64(m.up_head);
      PackKey(p, kEntries);
      p.pack_array(static_cast<uint32_t>(m.entries.size()));
      for (const auto& e : m.entries) {
        p.pack_bin(static_cast<uint32_t>(e.size()));
        p.pack_bin_body(e.data(), static_cast<uint32_t>(e.size()));
      }
      if (m.trimmed) {
        PackKey(p, kTrimmed);
        p.pack_true();
      }
      break;
    case MsgType::kAck:
      PackKey(p, kSeq);
      p.pack_uint64(m.seq);
      PackKey(p, kCredit);
      p.pack_uint32(m.credit);
      break;
    case MsgType::kError:
      PackKey(p, kMessage);
      PackStr(p, m.message);
      break;
    case MsgType::kArtifactGet:
    case MsgType::kArtifactChunk:
      PackKey(p, kDigest);
      PackStr(p, m.digest);
      PackKey(p, kSeq);
      p.pack_uint64(m.seq);
      if (type == MsgType::kArtifactGet) break;
      PackKey(p, kSize);
      p.pack_uint64(m.size);
      PackKey(p, kData);
      p.pack_bin(static_cast<uint32_t>(m.data.size()));
      p.pack_bin_body(m.data.data(), static_cast<uint32_t>(m.data.size()));
      PackKey(p, kMessage);
      PackStr(p, m.message);
      break;
    default:
      break;
  }
  return std::string(buf.data(), buf.size());
}

Status DecodeMessage(std::string_view frame, Message* out) {
  DecodeLimits limits;
  limits.max_bytes = kMaxFrameBytes;
  limits.max_array = kMaxWireArray;
  limits.max_map = kMaxWireMap;
  limits.max_str = kMaxWireString;
  limits.max_bin = kMaxWireString;
  limits.max_depth = kMaxWireDepth;
  *out = Message();
  Unpacked parsed;
  OUTPOST_RETURN_IF_ERROR(parsed.Parse(frame, limits));
  const msgpack::object& root = parsed.root();
  if (root.type != msgpack::type::MAP) {
    return Status::InvalidArgument("a frame must be a msgpack map");
  }
  bool has_v = false, has_t = false;
  for (uint32_t i = 0; i < root.via.map.size; ++i) {
    const msgpack::object_kv& kv = root.via.map.ptr[i];
    if (kv.key.type != msgpack::type::STR) {
      return Status::InvalidArgument("a frame's keys must be strings");
    }
    const std::string_view k(kv.key.via.str.ptr, kv.key.via.str.size);
    has_v = has_v || k == kV;
    has_t = has_t || k == kT;
    OUTPOST_RETURN_IF_ERROR(ReadField(k, kv.val, out));
  }
  if (!has_v || !has_t) return Status::InvalidArgument("a frame needs 'v' and 't'");
  if (out->v != kProtocolVersion) {
    return Status::InvalidArgument("protocol version " + std::to_string(out->v) +
                                   " is not supported (this build speaks " +
                                   std::to_string(kProtocolVersion) + ")");
  }
  if (out->t < static_cast<uint8_t>(MsgType::kHello) ||
      out->t > static_cast<uint8_t>(MsgType::kArtifactChunk)) {
    return Status::InvalidArgument("unknown message type " + std::to_string(out->t));
  }
  if (out->type() == MsgType::kBatch && out->first_seq == 0) {
    return Status::InvalidArgument("BATCH with first_seq 0");
  }
  if (out->type() == MsgType::kBatch && out->first_seq + out->entries.size() - 1 > kMaxSeq) {
    return Status::InvalidArgument("BATCH runs past the highest sequence number");
  }
  return Status::Ok();
}

}  // namespace outpost
