// Command: one entry of a site's downstream log — the hub's intent for that site.
//
// The hub is the only writer of a site's command log; the agent applies entry n only
// after n-1, together with its inbox watermark, in one WriteBatch (docs/protocol.md).
// Encoded as a msgpack map with short stable keys, like Event.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/codec.h"
#include "common/status.h"

namespace outpost {

enum class CommandType : uint8_t {
  kStartRun = 1,        // run `run` of `source` with `params`, for request `request`
  kCancelRun = 2,       // cancel run `run` (no-op if it already finished)
  kPlaceWorkflow = 3,   // keep definition `source` as workflow `workflow` on the site
  kRemoveWorkflow = 4,  // drop placed workflow `workflow` (runs in flight finish)
  kApprove = 5,         // decide approval gate `task` of run `run`: `reason` approve|reject
  kSetPolicy = 6,       // adopt the fleet policy in `grant`/`signer`/`sig` (root-signed)
};

const char* CommandTypeName(uint8_t t);

struct Command {
  uint8_t type = 0;
  TimeMs time = 0;  // hub time when the command was made
  std::string request;
  std::string run;
  std::string workflow;
  std::string source;  // YAML definition (start, place)
  std::string hash;
  std::map<std::string, std::string> params;
  std::string reason;  // cancel
  std::string author;  // operator identity that asked for it
  std::string task;    // approve
  bool has_priority = false;  // start: the operator gave a run priority
  int32_t priority = 0;
  // The operator's (or, for kSetPolicy, the fleet root's) signed statement this command
  // carries out, verbatim (common/trust.h); empty when the operator did not sign.
  std::string grant;
  std::string signer;
  std::string sig;
  // start: secret params, each sealed to this site's key (base64 crypto_box_seal).
  std::map<std::string, std::string> secrets;
  MSGPACK_DEFINE_MAP(type, time, request, run, workflow, source, hash, params, reason, author, task,
                     has_priority, priority, grant, signer, sig, secrets);

  CommandType command_type() const { return static_cast<CommandType>(type); }
};

std::string EncodeCommand(const Command& c);
// A short fingerprint of one encoded command log entry (BLAKE2b, 64 bits, never 0). A site
// sends the one of the last command it applied in HELLO, so a hub whose log holds another
// command under that number (a restored copy) can tell (docs/protocol.md).
uint64_t CommandDigest(std::string_view entry);
Status DecodeCommand(std::string_view bytes, Command* out);

}  // namespace outpost
