// Wire messages between a site agent and the hub, and their msgpack codec.
//
// Every message is one msgpack map (a ZeroMQ frame) with a protocol version `v` and a
// type `t`; the other fields depend on the type (docs/protocol.md). Decoding is bounded
// (frame size, lengths, depth), rejects trailing bytes and unknown types, and never
// throws: DecodeMessage returns a Status.
//
// Identity is never taken from a message: the hub learns which site is talking from the
// CURVE key that ZAP authenticated. `site` in HELLO is informational only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/codec.h"
#include "common/protocol/limits.h"
#include "common/status.h"

namespace outpost {

constexpr uint32_t kProtocolVersion = 1;

enum class MsgType : uint8_t {
  kHello = 1,    // site -> hub: who I am and where my streams stand
  kWelcome = 2,  // hub -> site: where the hub's copies stand
  kBatch = 3,    // either way: entries first_seq .. first_seq+n-1 of the sender's stream
  kAck = 4,      // either way: everything up to `seq` is durably applied; `credit` batches
  kPing = 5,     // either way: liveness when idle
  kPong = 6,
  kError = 7,    // hub -> site: the session is refused (`message` says why)
  kArtifactGet = 8,    // site -> hub: chunk `seq` (0-based) of artifact `digest`, please
  kArtifactChunk = 9,  // hub -> site: that chunk (`data`, the file's `size`), or `message`
};

const char* MsgTypeName(uint8_t t);

struct Message {
  uint32_t v = kProtocolVersion;
  uint8_t t = 0;
  // HELLO
  std::string site;
  uint64_t incarnation = 0;
  uint64_t up_head = 0;       // site's event log head
  uint64_t down_applied = 0;  // site's applied watermark of the hub's commands
  // HELLO: the hub epoch the site last reconciled with; WELCOME: the hub's epoch. Nonzero
  // only after a hub was restored from a backup (docs/protocol.md); sent only when nonzero.
  uint64_t hub_epoch = 0;
  // HELLO: CommandDigest of the site's last applied command (0: none); sent when nonzero.
  uint64_t down_digest = 0;
  // WELCOME
  uint64_t up_acked = 0;   // hub's applied watermark of the site's events
  uint64_t down_head = 0;  // hub's head of the site's command log
  // BATCH
  uint64_t first_seq = 0;
  std::vector<std::string> entries;
  // The entries between the receiver's watermark and first_seq are gone for good: the
  // site trimmed them after an earlier hub epoch acknowledged them. Sent only when true.
  bool trimmed = false;
  // ACK
  uint64_t seq = 0;
  uint32_t credit = 0;
  // ERROR (and ARTIFACT_CHUNK when the hub cannot serve it)
  std::string message;
  // ARTIFACT_GET / ARTIFACT_CHUNK (chunk index in `seq`)
  std::string digest;
  uint64_t size = 0;
  std::string data;

  MsgType type() const { return static_cast<MsgType>(t); }
};

// A msgpack map with the fields the type uses (entries as bin), docs/protocol.md.
std::string EncodeMessage(const Message& m);
// Decodes one frame within the limits of common/protocol/limits.h; refuses oversized
// frames, bombs, trailing bytes, fields of the wrong type (the error names the field),
// unknown types, protocol versions other than kProtocolVersion, sequence numbers above
// kMaxSeq and batches past kMaxBatchEntries / kMaxBatchBytes. Unknown keys are ignored;
// `entries` may be bin (as sent) or str (as sent by builds before 0.2).
Status DecodeMessage(std::string_view frame, Message* out);

}  // namespace outpost
