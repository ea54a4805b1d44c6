#include "common/protocol/command.h"

#include <sodium.h>

#include <cstring>

namespace outpost {

const char* CommandTypeName(uint8_t t) {
  switch (static_cast<CommandType>(t)) {
    case CommandType::kStartRun: return "run.start";
    case CommandType::kCancelRun: return "run.cancel";
    case CommandType::kPlaceWorkflow: return "workflow.place";
    case CommandType::kRemoveWorkflow: return "workflow.remove";
    case CommandType::kApprove: return "run.approve";
    case CommandType::kSetPolicy: return "policy.set";
  }
  return "unknown";
}

std::string EncodeCommand(const Command& c) { return Encode(c); }

Status DecodeCommand(std::string_view bytes, Command* out) {
  DecodeLimits limits;
  limits.max_bytes = 2 << 20;
  limits.max_array = 1024;
  limits.max_map = 4096;
  limits.max_depth = 4;
  OUTPOST_RETURN_IF_ERROR(Decode(bytes, out, limits));
  if (out->type < 1 || out->type > 6) {
    return Status::Corruption("unknown command type " + std::to_string(out->type));
  }
  return Status::Ok();
}

uint64_t CommandDigest(std::string_view entry) {
  unsigned char out[crypto_generichash_BYTES_MIN];
  crypto_generichash(out, sizeof out, reinterpret_cast<const unsigned char*>(entry.data()),
                     entry.size(), nullptr, 0);
  uint64_t d = 0;
  memcpy(&d, out, sizeof d);
  return d | 1;
}

}  // namespace outpost
