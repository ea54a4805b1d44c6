#include "common/protocol/sync_session.h"

#include "common/protocol/limits.h"
#include "common/text.h"

#include <algorithm>

namespace outpost {

SyncSession::SyncSession(Role role, const Clock& clock, SyncOptions options, OutgoingStream* out,
                         IncomingStream* in, std::string site, uint64_t incarnation,
                         const Faults& faults)
    : role_(role),
      clock_(clock),
      options_(options),
      faults_(faults),
      out_(out),
      in_(in),
      site_(std::move(site)),
      incarnation_(incarnation) {
  if (options_.window < 1) options_.window = 1;
  if (options_.receive_credit < 1) options_.receive_credit = 1;
  // Never send what a receiver must refuse (common/protocol/limits.h).
  options_.batch_count = std::clamp<size_t>(options_.batch_count, 1, kMaxBatchEntries);
  options_.batch_bytes = std::clamp<size_t>(options_.batch_bytes, 1, kMaxBatchBytes);
}

namespace {

void Send(SyncOutput* o, Message m, TimeMs now, TimeMs* last_sent) {
  o->send.push_back(std::move(m));
  *last_sent = now;
}

}  // namespace

void SyncSession::OnConnected(SyncOutput* o) {
  const TimeMs now = clock_.Now();
  state_ = State::kHandshaking;
  inflight_.clear();
  last_heard_ = now;
  last_sent_ = now;
  if (role_ == Role::kSite) SendHello(o);
}

void SyncSession::SendHello(SyncOutput* o) {
  const TimeMs now = clock_.Now();
  hello_sent_ = now;
  Message hello;
  hello.t = static_cast<uint8_t>(MsgType::kHello);
  hello.site = site_;
  hello.incarnation = incarnation_;
  hello.up_head = out_->head();
  hello.down_applied = in_->applied();
  hello.hub_epoch = in_->hub_epoch();
  hello.down_digest = in_->applied_digest();
  Send(o, std::move(hello), now, &last_sent_);
}

void SyncSession::OnDisconnected() {
  state_ = State::kDisconnected;
  inflight_.clear();
}

void SyncSession::Fail(const std::string& why, SyncOutput* o) {
  ++counters_.protocol_errors;
  o->disconnect = true;
  o->disconnect_reason = why;
  OnDisconnected();
}

void SyncSession::OnMessage(const Message& m, SyncOutput* o) {
  if (state_ == State::kDisconnected) return;  // a late frame from a dropped link
  const TimeMs now = clock_.Now();
  last_heard_ = now;
  switch (m.type()) {
    case MsgType::kHello: {
      if (role_ != Role::kHub) return Fail("HELLO sent to a site", o);
      peer_hello_ = m;
      if (m.up_head < in_->applied()) {
        return Fail("site log head " + std::to_string(m.up_head) + " is behind the hub's copy (" +
                        std::to_string(in_->applied()) + ") for the same incarnation",
                    o);
      }
      // Refused before any WELCOME: a HELLO that must be refused gets only the ERROR.
      if (Status s = CheckPeerApplied(m.down_applied); !s.ok()) return Fail(s.message(), o);
      Message w;
      w.t = static_cast<uint8_t>(MsgType::kWelcome);
      w.up_acked = in_->applied();
      w.down_head = out_->head();
      w.hub_epoch = hub_epoch_;
      Send(o, std::move(w), now, &last_sent_);
      Established(m.down_applied, o);
      return;
    }
    case MsgType::kWelcome:
      if (role_ != Role::kSite) return Fail("WELCOME sent to the hub", o);
      // Two HELLOs queued across a reconnect get two WELCOMEs; the first one counts.
      if (state_ == State::kEstablished) return;
      if (m.hub_epoch < in_->hub_epoch()) {
        return Fail("the hub is at epoch " + std::to_string(m.hub_epoch) +
                        ", older than epoch " + std::to_string(in_->hub_epoch()) +
                        " this site reconciled with: it runs on an old copy of its store "
                        "(restored without outpost-hub --declare-restored?)",
                    o);
      }
      // A newer epoch: the hub was restored from a backup and may be behind what it
      // acknowledged before; this site resends what it still has (docs/protocol.md).
      restoring_ = m.hub_epoch > in_->hub_epoch();
      hub_epoch_ = m.hub_epoch;
      if (m.down_head < in_->applied()) {
        return Fail("hub command log head " + std::to_string(m.down_head) +
                        " is behind what this site applied (" + std::to_string(in_->applied()) + ")",
                    o);
      }
      Established(m.up_acked, o);
      return;
    case MsgType::kBatch:
      if (state_ != State::kEstablished) {
        ++counters_.protocol_errors;  // before the handshake: ignore, the sender resends
        return;
      }
      HandleBatch(m, o);
      return;
    case MsgType::kAck:
      if (state_ != State::kEstablished) return;
      HandleAck(m, o);
      return;
    case MsgType::kArtifactGet:
    case MsgType::kArtifactChunk:
      return;  // artifact transfer is the drivers' (hub/bundles.cpp, site-agent/agent_artifacts.cpp)
    case MsgType::kPing: {
      Message pong;
      pong.t = static_cast<uint8_t>(MsgType::kPong);
      Send(o, std::move(pong), now, &last_sent_);
      return;
    }
    case MsgType::kPong:
      return;
    case MsgType::kError:
      o->disconnect = true;
      o->disconnect_reason = "refused by peer: " + SafeText(m.message);
      o->tell_peer = false;
      OnDisconnected();
      return;
  }
  Fail("unknown message type " + std::to_string(m.t), o);
}

Status SyncSession::CheckPeerApplied(uint64_t peer_applied) const {
  const bool hub = role_ == Role::kHub;
  if (peer_applied > out_->head()) {
    if (hub) {
      return Status::InvalidArgument(
          "the site applied commands through " + std::to_string(peer_applied) +
          " but this hub's command log for it ends at " + std::to_string(out_->head()) +
          ": the hub's store is older than what the site has seen (restored from a backup? "
          "stop the hub and run outpost-hub --declare-restored)");
    }
    return Status::InvalidArgument("the hub says it has events through " +
                                   std::to_string(peer_applied) + " but this site's log ends at " +
                                   std::to_string(out_->head()));
  }
  if (peer_applied < out_->acked()) {
    if (hub) {
      return Status::InvalidArgument("the site applied commands only through " +
                                     std::to_string(peer_applied) + " but acknowledged " +
                                     std::to_string(out_->acked()) +
                                     " before: it lost acknowledged commands");
    }
    return Status::InvalidArgument(
        "the hub has events only through " + std::to_string(peer_applied) +
        " but acknowledged " + std::to_string(out_->acked()) +
        " before: it lost acknowledged events (restored from a backup without outpost-hub "
        "--declare-restored?)");
  }
  return Status::Ok();
}

void SyncSession::Established(uint64_t peer_applied, SyncOutput* o) {
  if (restoring_ && peer_applied < out_->acked()) {
    // The restored hub lacks entries it acknowledged before: resend from its watermark;
    // Pump skips (and says so) what this site already trimmed.
    if (peer_applied > out_->head()) return Fail("hub watermark past the log head", o);
    restore_until_ = out_->acked();
  } else {
    if (Status s = CheckPeerApplied(peer_applied); !s.ok()) return Fail(s.message(), o);
    if (peer_applied > out_->acked()) AcknowledgeOrOwe(peer_applied);
    if (restoring_) FinishRestore();
  }
  state_ = State::kEstablished;
  peer_applied_ = peer_applied;
  next_send_ = peer_applied + 1;
  inflight_.clear();
  peer_credit_ = options_.window;
  last_progress_ = clock_.Now();
  Pump(o);
}

void SyncSession::Poke(SyncOutput* o) { Pump(o); }

void SyncSession::Pump(SyncOutput* o) {
  if (state_ != State::kEstablished) return;
  const size_t limit = std::min<size_t>(options_.window, peer_credit_);
  while (inflight_.size() < limit && next_send_ <= out_->head()) {
    auto recs = out_->Read(next_send_ - 1, options_.batch_count, options_.batch_bytes);
    if (!recs.ok()) {
      ++counters_.store_errors;
      return;
    }
    bool trimmed = false;
    if (restoring_ && next_send_ <= restore_until_ &&
        (recs->empty() || recs->front().seq > next_send_)) {
      // Entries the restored hub lacks that this site trimmed after the hub's older self
      // acknowledged them: the batch says they are gone (an empty one if all of them are).
      trimmed = true;
      next_send_ = recs->empty() ? restore_until_ + 1
                                 : std::min(recs->front().seq, restore_until_ + 1);
    }
    const bool nothing_left = trimmed && recs->empty() && next_send_ == out_->head() + 1;
    if (!nothing_left && (recs->empty() || recs->front().seq != next_send_)) {
      return Fail("outgoing log cannot supply entry " + std::to_string(next_send_), o);
    }
    Message b;
    b.t = static_cast<uint8_t>(MsgType::kBatch);
    b.first_seq = next_send_;
    b.trimmed = trimmed;
    b.up_head = out_->head();  // lets the receiver report how far behind it is
    b.entries.reserve(recs->size());
    for (auto& r : *recs) b.entries.push_back(std::move(r.payload));
    const uint64_t last = next_send_ + b.entries.size() - 1;  // next_send_ - 1 if empty
    if (inflight_.empty()) last_progress_ = clock_.Now();
    inflight_.push_back(last);
    ++counters_.batches_sent;
    counters_.entries_sent += b.entries.size();
    next_send_ = last + 1;
    Send(o, std::move(b), clock_.Now(), &last_sent_);
  }
}

void SyncSession::HandleBatch(const Message& m, SyncOutput* o) {
  ++counters_.batches_received;
  if (m.trimmed && accept_trimmed_ && role_ == Role::kHub && m.first_seq > in_->applied() + 1) {
    // A site resuming after this hub was restored from a backup: what it trimmed after
    // the hub's older self acknowledged it is gone for good (docs/protocol.md).
    if (m.up_head + 1 < m.first_seq) {
      return Fail("a trimmed batch starts at " + std::to_string(m.first_seq) +
                      " past the sender's head " + std::to_string(m.up_head),
                  o);
    }
    const uint64_t before = in_->applied();
    if (!in_->SkipTrimmed(m.first_seq - 1).ok()) {
      ++counters_.store_errors;  // not acknowledged: the site resends
      return;
    }
    counters_.trimmed_skipped += m.first_seq - 1 - before;
  }
  const uint64_t applied = in_->applied();
  const uint64_t n = m.entries.size();
  if (n == 0) return SendAck(o);
  const uint64_t last = m.first_seq + n - 1;
  if (n > kMaxBatchEntries) {
    return Fail("a batch of " + std::to_string(n) + " entries exceeds the limit of " +
                    std::to_string(kMaxBatchEntries),
                o);
  }
  if (m.up_head != 0 && m.up_head < last) {
    return Fail("batch ends at " + std::to_string(last) + " past the sender's own head " +
                    std::to_string(m.up_head),
                o);
  }
  if (m.first_seq > applied + 1) {
    if (faults_.apply_gaps) {
      // The mutation the simulator must catch: the gap is papered over.
      if (in_->Apply(applied + 1, m.entries).ok()) counters_.entries_applied += n;
      return SendAck(o);
    }
    ++counters_.gaps_refused;  // an earlier batch was lost; the ack tells the sender
    return SendAck(o);
  }
  if (last <= applied) {
    counters_.duplicates_dropped += n;
    return SendAck(o);
  }
  const size_t skip = static_cast<size_t>(applied + 1 - m.first_seq);
  counters_.duplicates_dropped += skip;
  std::vector<std::string> fresh(m.entries.begin() + static_cast<ptrdiff_t>(skip), m.entries.end());
  Status s = in_->Apply(applied + 1, fresh);
  if (!s.ok() && faults_.ack_failed_apply) {
    // The planted bug (common/faults.h): what failed to apply is acknowledged anyway.
    Message a;
    a.t = static_cast<uint8_t>(MsgType::kAck);
    a.seq = last;
    a.credit = options_.receive_credit;
    return Send(o, std::move(a), clock_.Now(), &last_sent_);
  }
  if (!s.ok()) {
    // Not acknowledged: the sender will resend (or the receiver applies it later and
    // calls AckApplied).
    if (s.code() == Code::kUnavailable) {
      ++counters_.applies_deferred;
    } else {
      ++counters_.store_errors;
    }
    return;
  }
  counters_.entries_applied += fresh.size();
  SendAck(o);
}

void SyncSession::AckApplied(SyncOutput* o) {
  if (established()) SendAck(o);
}

void SyncSession::SendAck(SyncOutput* o) {
  Message a;
  a.t = static_cast<uint8_t>(MsgType::kAck);
  a.seq = in_->applied();
  a.credit = options_.receive_credit;
  Send(o, std::move(a), clock_.Now(), &last_sent_);
}

void SyncSession::HandleAck(const Message& m, SyncOutput* o) {
  if (m.seq > out_->head()) {
    return Fail("ACK " + std::to_string(m.seq) + " beyond the log head " +
                    std::to_string(out_->head()),
                o);
  }
  peer_credit_ = std::max<uint32_t>(1, m.credit);
  if (m.seq > peer_applied_) last_progress_ = clock_.Now();
  peer_applied_ = std::max(peer_applied_, m.seq);
  if (m.seq > out_->acked()) AcknowledgeOrOwe(m.seq);
  if (restoring_ && m.seq >= restore_until_) FinishRestore();
  while (!inflight_.empty() && inflight_.front() <= m.seq) inflight_.pop_front();
  if (m.seq >= next_send_) next_send_ = m.seq + 1;
  Pump(o);
}

// The peer acknowledged through `seq`; if recording that fails (a write error), it is
// owed and retried from Tick, so an idle stream still gets trimmed (the simulator found a
// site whose last acknowledgement failed to write stay untrimmed for good).
void SyncSession::AcknowledgeOrOwe(uint64_t seq) {
  if (out_->Acknowledge(seq).ok()) {
    if (seq >= ack_owed_) ack_owed_ = 0;
    return;
  }
  ++counters_.store_errors;
  ack_owed_ = std::max(ack_owed_, seq);
  ack_retry_at_ = clock_.Now() + options_.resend_after;
}

// Site side: the restored hub has everything this site acknowledged before (or learned
// it is gone); from now on it is the epoch this site reconciles with. Recorded only now,
// so a site cut off mid-way resumes the same way at its next HELLO. A failed write is
// retried at the next acknowledgement.
void SyncSession::FinishRestore() {
  if (in_->SetHubEpoch(hub_epoch_).ok()) {
    restoring_ = false;
  } else {
    ++counters_.store_errors;
  }
}

void SyncSession::Tick(SyncOutput* o) {
  if (state_ == State::kDisconnected) return;
  const TimeMs now = clock_.Now();
  if (ack_owed_ > out_->acked() && now >= ack_retry_at_) AcknowledgeOrOwe(ack_owed_);
  if (now - last_heard_ >= options_.dead_after) {
    return Fail("no message from the peer for " + std::to_string(now - last_heard_) + " ms", o);
  }
  if (role_ == Role::kSite && state_ == State::kHandshaking &&
      now - hello_sent_ >= options_.resend_after) {
    ++counters_.resends;  // the HELLO or its WELCOME was lost
    SendHello(o);
  }
  if (now - last_heard_ >= options_.idle_ping && now - last_sent_ >= options_.idle_ping) {
    Message ping;
    ping.t = static_cast<uint8_t>(MsgType::kPing);
    Send(o, std::move(ping), now, &last_sent_);
  }
  if (state_ == State::kEstablished && !inflight_.empty() &&
      now - last_progress_ >= options_.resend_after) {
    ++counters_.resends;  // go back to the watermark and send again
    inflight_.clear();
    next_send_ = peer_applied_ + 1;
    last_progress_ = now;
    Pump(o);
  }
}

TimeMs SyncSession::NextDeadline() const {
  if (state_ == State::kDisconnected) return 0;
  TimeMs next = last_heard_ + options_.dead_after;
  next = std::min(next, std::max(last_heard_, last_sent_) + options_.idle_ping);
  if (state_ == State::kEstablished && !inflight_.empty()) {
    next = std::min(next, last_progress_ + options_.resend_after);
  }
  if (role_ == Role::kSite && state_ == State::kHandshaking) {
    next = std::min(next, hello_sent_ + options_.resend_after);
  }
  if (ack_owed_ > out_->acked()) next = std::min(next, ack_retry_at_);
  return next;
}

}  // namespace outpost
