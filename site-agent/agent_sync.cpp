// The agent's side of hub sync: one DEALER connection (common/zmq_link.h), one
// SyncSession in the site role, the event log as the upstream stream and the inbox of
// hub commands as the downstream one. Everything here runs on the agent's loop thread.
//
// Connection life: connect -> (CURVE handshake) -> HELLO/WELCOME -> established. When a
// session ends (the hub refused it, went silent, or broke the protocol) the socket is
// closed and a new one made after a full-jitter backoff, so the hub's ZAP handler sees
// the key again: a revoked site stays cut off. Runs never wait for the hub.
#include <spdlog/spdlog.h>

#include "site-agent/agent.h"
#include "common/text.h"
#include "site-agent/commands.h"

namespace outpost {

using json = nlohmann::json;

namespace {

const char* SessionStateName(SyncSession::State s) {
  switch (s) {
    case SyncSession::State::kDisconnected: return "disconnected";
    case SyncSession::State::kHandshaking: return "handshaking";
    case SyncSession::State::kEstablished: return "established";
  }
  return "unknown";
}

}  // namespace

Status Agent::OpenSync() {
  // Every agent has its keypair from the first start, hub or not, so it can be enrolled
  // before it is pointed at a hub.
  OUTPOST_ASSIGN_OR_RETURN(keys_, LoadOrCreateKeys(config_.data_dir, "agent"));
  OUTPOST_ASSIGN_OR_RETURN(auto raw, store_->log().GetState(kInboxWatermarkKey));
  if (raw) {
    if (raw->size() != 8) return Status::Corruption("inbox watermark has " + std::to_string(raw->size()) + " bytes");
    down_applied_ = DecodeU64(*raw);
  }
  OUTPOST_ASSIGN_OR_RETURN(auto digest, store_->log().GetState(kInboxDigestKey));
  if (digest && digest->size() == 8) down_digest_ = DecodeU64(*digest);
  OUTPOST_ASSIGN_OR_RETURN(auto epoch, store_->log().GetState(kHubEpochKey));
  if (epoch) {
    if (epoch->size() != 8) return Status::Corruption("hub epoch has " + std::to_string(epoch->size()) + " bytes");
    hub_epoch_ = DecodeU64(*epoch);
  }
  // The hub's key alone (no --hub) is an air-gapped site: bundles are checked against it.
  if (!config_.hub_key.empty()) {
    auto hub_key = ReadPublicKey(config_.hub_key);
    if (!hub_key.ok()) return hub_key.status().WithContext("hub-key");
    config_.hub_key = *hub_key;
  }
  if (config_.hub_endpoint.empty()) return Status::Ok();
  hub_endpoints_.clear();
  for (size_t at = 0; at <= config_.hub_endpoint.size();) {
    size_t comma = config_.hub_endpoint.find(',', at);
    if (comma == std::string::npos) comma = config_.hub_endpoint.size();
    std::string one = config_.hub_endpoint.substr(at, comma - at);
    while (!one.empty() && one.front() == ' ') one.erase(0, 1);
    while (!one.empty() && one.back() == ' ') one.pop_back();
    if (!one.empty()) hub_endpoints_.push_back(one);
    at = comma + 1;
  }
  if (hub_endpoints_.empty()) return Status::InvalidArgument("--hub names no endpoint");
  if (config_.hub_key.empty()) {
    return Status::InvalidArgument("--hub needs --hub-key (the hub's public key or its file)");
  }
  OUTPOST_ASSIGN_OR_RETURN(zmq_, ZmqContext::Create(1, 64));
  up_stream_ = std::make_unique<EventLogStream>(&store_->log());
  inbox_ = std::make_unique<Inbox>(this);
  session_ = std::make_unique<SyncSession>(SyncSession::Role::kSite, clock_, config_.sync,
                                           up_stream_.get(), inbox_.get(), config_.site,
                                           store_->log().incarnation());
  // Several endpoints: each agent starts at its own (by its key), so a fleet spreads over
  // the hub processes.
  hub_index_ = std::hash<std::string>()(keys_.public_z85) % hub_endpoints_.size();
  Connect();
  spdlog::info("agent.sync hub={} key={} inbox_applied={}", config_.hub_endpoint, keys_.public_z85,
               down_applied_);
  return Status::Ok();
}

Status Agent::Inbox::SetHubEpoch(uint64_t epoch) {
  if (epoch == agent_->hub_epoch_) return Status::Ok();
  // Through the commit path, with whatever effects are pending.
  OUTPOST_RETURN_IF_ERROR(agent_->CommitPending({StateWrite{kHubEpochKey, EncodeU64(epoch)}}));
  spdlog::warn("agent.hub_restore_reconciled epoch={} previous={}", epoch, agent_->hub_epoch_);
  agent_->hub_epoch_ = epoch;
  return Status::Ok();
}

void Agent::Connect() {
  hub_.reset();
  reconnect_at_ = 0;
  hub_down_since_ = clock_.Now();
  Connector::Options o;
  o.endpoint = hub_endpoint();
  o.server_public_z85 = config_.hub_key;
  o.keys = keys_;
  o.heartbeat_ms = static_cast<int>(std::max<DurationMs>(1000, config_.sync.idle_ping));
  o.heartbeat_timeout_ms = static_cast<int>(std::max<DurationMs>(3000, config_.sync.dead_after));
  o.reconnect_max_ms = static_cast<int>(config_.reconnect_max);
  // A handshake that stalls (a path that went black mid-way) is abandoned as soon as a
  // silent session would be.
  o.handshake_ms = static_cast<int>(std::max<DurationMs>(3000, config_.sync.dead_after));
  auto c = Connector::Connect(*zmq_, o);
  if (!c.ok()) {
    last_hub_error_ = c.status().message();
    spdlog::error("agent.hub_connect_failed error=\"{}\"", last_hub_error_);
    reconnect_at_ = clock_.Now() + config_.reconnect_max;
    return;
  }
  hub_ = std::move(c).value();
}

void Agent::SendToHub(const SyncOutput& so) {
  if (hub_) {
    for (const auto& m : so.send) {
      Status s = hub_->Send(EncodeMessage(m));
      if (!s.ok()) {
        // Not connected or the queue is full: the session resends from the log.
        ++counters_.hub_send_failures;
        spdlog::debug("agent.hub_send_failed type={} error=\"{}\"", MsgTypeName(m.t), s.message());
      }
    }
  }
  if (so.disconnect) {
    last_hub_error_ = so.disconnect_reason;
    spdlog::warn("agent.hub_session_ended reason=\"{}\"", so.disconnect_reason);
    drop_link_ = true;
  }
}

void Agent::ServeHub() {
  if (!hub_) return;
  std::vector<Connector::Event> events;
  hub_->Drain(&events);
  for (auto& ev : events) {
    if (drop_link_) break;  // the rest belongs to a connection being closed
    SyncOutput so;
    switch (ev.kind) {
      case Connector::EventKind::kConnected:
        ++counters_.hub_sessions;
        spdlog::info("agent.hub_connected hub={}", hub_endpoint());
        session_->OnConnected(&so);
        break;
      case Connector::EventKind::kDisconnected:
        if (session_->state() != SyncSession::State::kDisconnected) {
          spdlog::warn("agent.hub_disconnected hub={}", hub_endpoint());
        }
        if (hub_down_since_ == 0) hub_down_since_ = clock_.Now();
        session_->OnDisconnected();
        break;
      case Connector::EventKind::kAuthFailed:
        ++counters_.hub_auth_failures;
        last_hub_error_ = "the hub refused this agent's key (not enrolled, or revoked)";
        spdlog::error("agent.hub_auth_failed hub={} key={} hint=\"outpostctl site add NAME --key {}\"",
                      hub_endpoint(), keys_.public_z85, keys_.public_z85);
        // A refused key may be enrolled (or accepted) any time: start again with a fresh
        // socket after the jittered backoff, so ZAP sees the key again. libzmq alone does
        // not retry a connection whose key was refused.
        drop_link_ = true;
        break;
      case Connector::EventKind::kHandshakeFailed:
        // The CURVE handshake broke before ZAP could answer: most often the pinned hub key
        // is not this hub's (its public key decrypts nothing we send), or something else
        // listens on that port.
        ++counters_.hub_handshake_failures;
        last_hub_error_ =
            "the encrypted handshake with the hub failed: check that --hub-key is the hub's "
            "public key (outpost-hub --show-key on the hub) and that --hub points at its site "
            "endpoint";
        spdlog::warn("agent.hub_handshake_failed hub={} pinned_hub_key={} hint=\"{}\"",
                     hub_endpoint(), config_.hub_key.size() == 40 ? config_.hub_key : "(file)",
                     last_hub_error_);
        drop_link_ = true;  // a fresh socket after the backoff
        break;
      case Connector::EventKind::kFrame: {
        Message m;
        Status s = DecodeMessage(ev.payload, &m);
        if (!s.ok()) {
          ++counters_.hub_frames_malformed;
          spdlog::warn("agent.hub_frame_malformed bytes={} error=\"{}\"", ev.payload.size(),
                       SafeText(s.message()));
          break;
        }
        if (m.type() == MsgType::kArtifactChunk) {
          OnArtifactChunk(m);  // artifact transfer rides beside the session (agent_bundles.cpp)
          break;
        }
        const bool was = session_->established();
        // The boundary for what the hub sends (frames, and the commands applied from
        // them): an exception that escapes is a bug — counted, the session dropped and
        // started again later; nothing was acknowledged for what did not commit.
        try {
          session_->OnMessage(m, &so);
        } catch (const std::exception& e) {
          ++counters_.hub_frame_exceptions;
          last_hub_error_ = "internal error while handling a frame from the hub";
          spdlog::error("agent.hub_frame_exception type={} error=\"{}\"", MsgTypeName(m.t),
                        SafeText(e.what()));
          drop_link_ = true;
          break;
        }
        if (!was && session_->established()) {
          reconnect_attempt_ = 0;
          hub_down_since_ = 0;
          last_hub_error_.clear();
          spdlog::info("agent.hub_session_established events_unacked={} inbox_applied={}",
                       store_->log().head() - store_->log().acked(), down_applied_);
        }
        break;
      }
    }
    SendToHub(so);
  }
}

void Agent::SyncTick() {
  const TimeMs now = clock_.Now();
  if (hub_ && hub_endpoints_.size() > 1 && hub_down_since_ > 0 &&
      now - hub_down_since_ >= config_.hub_failover) {
    // No session with this hub process for a while: the next one (they share the store).
    const std::string from = hub_endpoint();
    hub_index_ = (hub_index_ + 1) % hub_endpoints_.size();
    ++counters_.hub_failovers;
    spdlog::warn("agent.hub_failover from={} to={} down_ms={}", from, hub_endpoint(),
                 now - hub_down_since_);
    session_->OnDisconnected();
    hub_.reset();
    reconnect_attempt_ = 0;
    Connect();
    return;
  }
  if (drop_link_) {
    drop_link_ = false;
    session_->OnDisconnected();
    hub_.reset();
    ++reconnect_attempt_;
    BackoffPolicy p;
    p.initial = 500;
    p.factor = 2;
    p.max = config_.reconnect_max;
    p.full_jitter = true;
    reconnect_at_ = now + std::max<DurationMs>(100, BackoffDelay(p, reconnect_attempt_, &rng_));
    spdlog::info("agent.hub_reconnect_in_ms delay={} attempt={}", reconnect_at_ - now,
                 reconnect_attempt_);
  }
  if (!hub_ && reconnect_at_ > 0 && now >= reconnect_at_) Connect();
  if (!hub_) return;
  SyncOutput so;
  session_->Tick(&so);
  if (log_grew_) {
    log_grew_ = false;
    session_->Poke(&so);
  }
  SendToHub(so);
}

Status Agent::ApplyCommands(uint64_t first_seq, const std::vector<std::string>& entries,
                            bool may_wait) {
  std::vector<StateWrite> extra;
  uint64_t through = 0;
  uint64_t waits_at = 0;  // the command whose workflow is being validated
  const WorkflowSourceParser parse = [this, may_wait](const std::string& source,
                                                      const std::string& origin) {
    return may_wait ? parser_->Get(source, origin)
                    : std::optional<ParsedWorkflow>(parser_->GetNow(source, origin));
  };
  Status batch = ApplyCommandBatch(
      first_seq, entries, *engine_, *store_, clock_, gate_ ? &*gate_ : nullptr, &pending_,
      &extra, &through,
      [this, &waits_at](uint64_t seq, const Command* c, const CommandOutcome& o) {
        if (c && o.validating) waits_at = seq;
        if (c) return Told(*c, o);
        ++counters_.commands_rejected;
        spdlog::warn("agent.command_undecodable seq={} error=\"{}\"", seq, o.message);
      },
      &parse);
  if (waits_at >= first_seq) {
    // The rest of the batch waits for the definition; the loop goes on meanwhile.
    ++counters_.commands_waited_validation;
    waiting_commands_.first_seq = waits_at;
    waiting_commands_.entries.assign(entries.begin() + static_cast<ptrdiff_t>(waits_at - first_seq),
                                     entries.end());
  }
  if (through < first_seq) return batch;
  OUTPOST_RETURN_IF_ERROR(CommitPending(extra));
  down_applied_ = through;
  down_digest_ = CommandDigest(entries[through - first_seq]);
  // A placement or removal may add, change or end a schedule.
  bool placements = false;
  for (const auto& w : extra) placements = placements || w.key.rfind("wf/", 0) == 0;
  if (placements) SyncSchedules();
  return batch;
}

void Agent::ResumeWaitingCommands() {
  if (waiting_commands_.entries.empty()) return;
  uint64_t first = waiting_commands_.first_seq;
  std::vector<std::string> entries = std::move(waiting_commands_.entries);
  waiting_commands_ = {};
  // Applied meanwhile (the hub resent it, or a bundle carried it), or past a gap: nothing
  // to do here; the hub resends what is still missing.
  if (first > down_applied_ + 1 || first + entries.size() - 1 <= down_applied_) return;
  const size_t skip = static_cast<size_t>(down_applied_ + 1 - first);
  entries.erase(entries.begin(), entries.begin() + static_cast<ptrdiff_t>(skip));
  first += skip;
  const uint64_t before = down_applied_;
  Status s = ApplyCommands(first, entries);
  if (!s.ok()) spdlog::info("agent.commands_waiting reason=\"{}\"", s.message());
  if (down_applied_ > before && session_) {
    SyncOutput so;
    session_->AckApplied(&so);
    SendToHub(so);
  }
}

void Agent::Told(const Command& c, const CommandOutcome& o) {
  switch (o.kind) {
    case CommandOutcome::kApplied:
    case CommandOutcome::kNoop:
      ++counters_.commands_applied;
      spdlog::info("agent.command type={} run={} workflow={} request={} by={}{}",
                   CommandTypeName(c.type), c.run, c.workflow, c.request, c.author,
                   o.kind == CommandOutcome::kNoop ? " noop=\"" + o.message + "\"" : "");
      break;
    case CommandOutcome::kDuplicate:
      ++counters_.commands_duplicate;  // at most one run per request
      spdlog::info("agent.command_duplicate run={} request={}", c.run, c.request);
      break;
    case CommandOutcome::kRejected:
      ++counters_.commands_rejected;
      if (gate_) ++counters_.commands_refused_by_policy;
      spdlog::warn("agent.command_rejected type={} run={} workflow={} reason=\"{}\"",
                   CommandTypeName(c.type), c.run, c.workflow, o.message);
      break;
    case CommandOutcome::kRetry:
      if (o.validating) {
        spdlog::info("agent.command_waits type={} run={} reason=\"{}\"", CommandTypeName(c.type),
                     c.run, o.message);
        break;
      }
      // Not applied and not acknowledged: the hub sends it again.
      spdlog::warn("agent.command_deferred type={} run={} reason=\"{}\"", CommandTypeName(c.type),
                   c.run, o.message);
      break;
  }
}

json Agent::SyncJson() const {
  const auto& log = store_->log();
  json j = {{"configured", session_ != nullptr},
            {"public_key", keys_.public_z85},
            {"events_unacked", log.head() - log.acked()},
            {"commands_applied_through", down_applied_},
            // The hub epoch reconciled with: nonzero once a hub restored from a backup was
            // declared and this site caught up with it (docs/protocol.md).
            {"hub_epoch", hub_epoch_},
            // Commands arrive by bundle too: counted with or without a link.
            {"commands", {{"applied", counters_.commands_applied},
                          {"rejected", counters_.commands_rejected},
                          {"duplicate", counters_.commands_duplicate}}}};
  if (!session_) return j;
  const auto& c = session_->counters();
  j["endpoint"] = hub_endpoints_.empty() ? config_.hub_endpoint : hub_endpoint();
  j["endpoints"] = hub_endpoints_;
  j["failovers"] = counters_.hub_failovers;
  j["state"] = SessionStateName(session_->state());
  j["last_error"] = last_hub_error_;
  j["counters"] = {{"batches_sent", c.batches_sent},
                   {"entries_sent", c.entries_sent},
                   {"batches_received", c.batches_received},
                   {"entries_applied", c.entries_applied},
                   {"duplicates_dropped", c.duplicates_dropped},
                   {"gaps_refused", c.gaps_refused},
                   {"resends", c.resends},
                   {"protocol_errors", c.protocol_errors},
                   {"store_errors", c.store_errors},
                   {"applies_deferred", c.applies_deferred},
                   {"sessions", counters_.hub_sessions},
                   {"auth_failures", counters_.hub_auth_failures},
                   {"handshake_failures", counters_.hub_handshake_failures},
                   {"frame_exceptions", counters_.hub_frame_exceptions},
                   {"frames_malformed", counters_.hub_frames_malformed},
                   {"send_failures", counters_.hub_send_failures},
                   {"commands_applied", counters_.commands_applied},
                   {"commands_rejected", counters_.commands_rejected},
                   {"commands_duplicate", counters_.commands_duplicate}};
  return j;
}

}  // namespace outpost
