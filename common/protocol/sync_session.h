// SyncSession: one end of the reconciliation between a site and the hub, as a sans-I/O
// state machine. Both ends run the same class; the role decides who says HELLO.
//
// Each direction is one ordered, gapless log with a single writer:
//   upstream    site -> hub   the site's event log
//   downstream  hub -> site   the hub's command log for that site
// A session sends its own stream (OutgoingStream) and receives the peer's
// (IncomingStream).
//
// Inputs: OnConnected, OnDisconnected, OnMessage, Tick, Poke (the outgoing log grew).
// Outputs (SyncOutput): messages to send, and whether the link should be dropped.
// Storage is reached through the two stream interfaces, which are synchronous and
// durable (RocksDB on an injected Env); time through the injected Clock.
//
// Guarantees (tested with drops, duplicates, reorders and disconnects at every point):
//  - the receiver applies entry n only after n-1, persisting entries and its watermark
//    together (IncomingStream::Apply), and acknowledges only what Apply made durable;
//  - duplicates (<= watermark) are dropped, batches beyond a gap are not applied;
//  - the sender keeps everything unacknowledged and, after any (re)connect, resends from
//    the receiver's watermark exchanged in HELLO / WELCOME; a batch that is not
//    acknowledged within `resend_after` is sent again from the watermark (go-back-N);
//  - at most `window` batches (and never more than the receiver's last credit) are in
//    flight, each at most `batch_count` entries and `batch_bytes` bytes.
//
// States: disconnected -> (site: HELLO sent) handshaking -> established; any message
// after silence resets the liveness timer; `idle_ping` of silence sends PING and
// `dead_after` of silence drops the link. A site still handshaking after `resend_after`
// sends HELLO again: a lost WELCOME must not leave a live link idle forever (PINGs keep
// it from ever looking dead).
//
// Thread-safety: none; one driver thread.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/protocol/event_log.h"
#include "common/status.h"
#include "common/faults.h"
#include "common/protocol/wire.h"

namespace outpost {

class OutgoingStream {
 public:
  virtual ~OutgoingStream() = default;
  virtual uint64_t head() const = 0;
  virtual uint64_t acked() const = 0;
  virtual Result<std::vector<LogRecord>> Read(uint64_t after, size_t max_count,
                                              size_t max_bytes) const = 0;
  // The peer has durably applied everything up to `seq` (> acked()).
  virtual Status Acknowledge(uint64_t seq) = 0;
};

class IncomingStream {
 public:
  virtual ~IncomingStream() = default;
  virtual uint64_t applied() const = 0;
  // Durably applies entries applied()+1 .. applied()+n and the new watermark in one write.
  virtual Status Apply(uint64_t first_seq, const std::vector<std::string>& entries) = 0;

  // A hub restored from a backup (docs/protocol.md, "A hub restored from a backup").
  // Site side: the hub epoch this site last reconciled with (0: none), and recording a
  // newer one once the site's stream is whole again at that hub.
  virtual uint64_t hub_epoch() const { return 0; }
  // Site side: CommandDigest of the last entry applied (0: none or unknown).
  virtual uint64_t applied_digest() const { return 0; }
  virtual Status SetHubEpoch(uint64_t /*epoch*/) { return Status::Ok(); }
  // Hub side: entries applied()+1 .. through are gone for good (the site trimmed them
  // after the hub's older self acknowledged them): record the loss, move the watermark.
  virtual Status SkipTrimmed(uint64_t through) {
    return Status::FailedPrecondition("this stream cannot skip entries (to " +
                                      std::to_string(through) + ")");
  }
};

struct SyncOptions {
  size_t batch_count = 512;
  size_t batch_bytes = 256 * 1024;
  uint32_t window = 4;             // batches in flight
  uint32_t receive_credit = 8;     // batches we let the peer have in flight
  DurationMs resend_after = 10'000;
  DurationMs idle_ping = 5'000;
  DurationMs dead_after = 30'000;
};

struct SyncCounters {
  uint64_t batches_sent = 0;
  uint64_t entries_sent = 0;
  uint64_t batches_received = 0;
  uint64_t entries_applied = 0;
  uint64_t duplicates_dropped = 0;  // entries at or below the watermark
  uint64_t gaps_refused = 0;        // batches that started past watermark+1
  uint64_t resends = 0;
  uint64_t trimmed_skipped = 0;     // hub: entries a site had trimmed before a hub restore
  uint64_t protocol_errors = 0;
  uint64_t store_errors = 0;
  // Incoming batches the receiver put aside unapplied (Unavailable): a command waiting for
  // its workflow to be validated, or a store read that failed; acknowledged when applied.
  uint64_t applies_deferred = 0;
};

struct SyncOutput {
  std::vector<Message> send;
  bool disconnect = false;
  std::string disconnect_reason;
  bool tell_peer = true;  // false when the peer ended the session itself (its ERROR)
};

class SyncSession {
 public:
  enum class Role { kSite, kHub };
  enum class State { kDisconnected, kHandshaking, kEstablished };

  // `site` and `incarnation` are what a site announces in HELLO (unused by the hub).
  // `faults`: planted bugs for the simulator's mutation check (common/faults.h).
  SyncSession(Role role, const Clock& clock, SyncOptions options, OutgoingStream* out,
              IncomingStream* in, std::string site = "", uint64_t incarnation = 0,
              const Faults& faults = Faults::None());

  void OnConnected(SyncOutput* o);
  void OnDisconnected();
  void OnMessage(const Message& m, SyncOutput* o);
  void Tick(SyncOutput* o);
  // The outgoing log grew: send what the window allows.
  void Poke(SyncOutput* o);
  // The incoming stream advanced outside a BATCH (the receiver applied entries it had put
  // aside): acknowledge its watermark now.
  void AckApplied(SyncOutput* o);

  TimeMs NextDeadline() const;
  State state() const { return state_; }
  bool established() const { return state_ == State::kEstablished; }
  const SyncCounters& counters() const { return counters_; }
  // Hub side: what the site said in its last HELLO.
  const Message& peer_hello() const { return peer_hello_; }
  // Hub side, before the HELLO is handled: this hub's epoch (0 unless it was restored from
  // a backup), and whether the site may resume past entries it trimmed after an older
  // epoch acknowledged them (it has not reconciled with this epoch yet).
  void set_hub_epoch(uint64_t epoch, bool accept_trimmed) {
    hub_epoch_ = epoch;
    accept_trimmed_ = accept_trimmed;
  }

 private:
  // Whether the peer's applied watermark of our stream is possible (not past our head, not
  // behind what it acknowledged before).
  Status CheckPeerApplied(uint64_t peer_applied) const;
  void AcknowledgeOrOwe(uint64_t seq);
  void Established(uint64_t peer_applied, SyncOutput* o);
  void FinishRestore();
  void SendHello(SyncOutput* o);
  void Pump(SyncOutput* o);
  void HandleBatch(const Message& m, SyncOutput* o);
  void HandleAck(const Message& m, SyncOutput* o);
  void SendAck(SyncOutput* o);
  void Fail(const std::string& why, SyncOutput* o);

  Role role_;
  const Clock& clock_;
  SyncOptions options_;
  Faults faults_;
  OutgoingStream* out_;
  IncomingStream* in_;
  std::string site_;
  uint64_t incarnation_;

  State state_ = State::kDisconnected;
  uint64_t next_send_ = 1;           // first seq not yet sent on this connection
  uint64_t peer_applied_ = 0;        // the peer's watermark of our stream, as last heard
  uint64_t hub_epoch_ = 0;           // hub: its epoch; site: the epoch being reconciled with
  bool accept_trimmed_ = false;      // hub: a BATCH may skip what the site trimmed
  bool restoring_ = false;           // site: the hub is a restored copy behind our acks
  uint64_t restore_until_ = 0;       // site: our acked watermark when that was found
  std::deque<uint64_t> inflight_;    // last seq of each unacknowledged batch
  uint32_t peer_credit_ = 1;
  TimeMs last_progress_ = 0;         // last time an ack moved or a batch went out idle
  uint64_t ack_owed_ = 0;            // an acknowledgement whose write failed, retried
  TimeMs ack_retry_at_ = 0;
  TimeMs last_heard_ = 0;
  TimeMs last_sent_ = 0;
  TimeMs hello_sent_ = 0;            // site: when the last HELLO went out
  Message peer_hello_;
  SyncCounters counters_;
};

}  // namespace outpost
