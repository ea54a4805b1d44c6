#include "common/wire.h"

namespace outpost {

const char* MsgTypeName(uint8_t t) {
  switch (static_cast<MsgType>(t)) {
    case MsgType::kHello: return "HELLO";
    case MsgType::kWelcome: return "WELCOME";
    case MsgType::kBatch: return "BATCH";
    case MsgType::kAck: return "ACK";
    case MsgType::kPing: return "PING";
    case MsgType::kPong: return "PONG";
    case MsgType::kError: return "ERROR";
  }
  return "UNKNOWN";
}

std::string EncodeMessage(const Message& m) { return Encode(m); }

Status DecodeMessage(std::string_view frame, Message* out) {
  DecodeLimits limits;
  limits.max_bytes = kMaxFrameBytes;
  limits.max_array = 100000;
  limits.max_map = 64;
  limits.max_str = 4 << 20;
  limits.max_bin = 4 << 20;
  limits.max_depth = 4;
  *out = Message();
  OUTPOST_RETURN_IF_ERROR(Decode(frame, out, limits));
  if (out->v != kProtocolVersion) {
    return Status::InvalidArgument("protocol version " + std::to_string(out->v) +
                                   " is not supported (this build speaks " +
                                   std::to_string(kProtocolVersion) + ")");
  }
  if (out->t < static_cast<uint8_t>(MsgType::kHello) || out->t > static_cast<uint8_t>(MsgType::kError)) {
    return Status::InvalidArgument("unknown message type " + std::to_string(out->t));
  }
  if (out->type() == MsgType::kBatch && out->first_seq == 0) {
    return Status::InvalidArgument("BATCH with first_seq 0");
  }
  return Status::Ok();
}

}  // namespace outpost
