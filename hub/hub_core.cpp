#include "hub/hub_core.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>

#include "common/ulid.h"
#include "common/workflow.h"
#include "common/zmq_link.h"

namespace outpost {

using json = nlohmann::json;

namespace {

json Error(const std::string& message, const char* code = "invalid") {
  return {{"ok", false}, {"error", message}, {"code", code}};
}
json Error(const Status& s) {
  const char* code = "invalid";
  if (s.code() == Code::kNotFound) code = "not_found";
  if (s.code() == Code::kAlreadyExists) code = "conflict";
  if (s.code() == Code::kFailedPrecondition) code = "conflict";
  if (s.code() == Code::kIoError || s.code() == Code::kResourceExhausted ||
      s.code() == Code::kCorruption || s.code() == Code::kInternal) {
    code = "internal";
  }
  return Error(s.message(), code);
}

std::string Str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

json TimeJson(TimeMs t) { return t > 0 ? json(FormatTime(t)) : json(nullptr); }

bool FinalRunState(const std::string& s) {
  return s == "succeeded" || s == "failed" || s == "cancelled" || s == "compensated" ||
         s == "compensation_failed";
}

// Reads {"k": "v", ...} into a map; false if any value is not a string.
bool StringMap(const json& j, const char* key, std::map<std::string, std::string>* out,
               std::string* bad) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return true;
  if (!it->is_object()) {
    *bad = std::string("'") + key + "' must be an object of strings";
    return false;
  }
  for (const auto& [k, v] : it->items()) {
    if (!v.is_string()) {
      *bad = std::string("'") + key + "." + k + "' must be a string";
      return false;
    }
    (*out)[k] = v.get<std::string>();
  }
  return true;
}

bool ValidLabel(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '/';
  });
}

}  // namespace

bool ValidSiteName(const std::string& n) {
  if (n.empty() || n.size() > 63 || n.front() == '-' || n.back() == '-') return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

bool SelectorMatches(const std::map<std::string, std::string>& selector,
                     const std::map<std::string, std::string>& labels) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

Result<std::map<std::string, std::string>> ParseSelector(const std::string& text) {
  std::map<std::string, std::string> out;
  size_t pos = 0;
  while (pos <= text.size() && !text.empty()) {
    size_t comma = text.find(',', pos);
    std::string part = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    size_t eq = part.find('=');
    if (eq == std::string::npos || !ValidLabel(part.substr(0, eq)) ||
        !ValidLabel(part.substr(eq + 1))) {
      return Status::InvalidArgument("selector part '" + part +
                                     "' is not key=value (letters, digits, - _ . /)");
    }
    out[part.substr(0, eq)] = part.substr(eq + 1);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// The two streams of one site, backed by the hub store.

class HubCore::Upstream : public IncomingStream {
 public:
  Upstream(HubCore* hub, std::string site) : hub_(hub), site_(std::move(site)) {}
  uint64_t applied() const override { return hub_->sites_.at(site_).up_applied; }
  Status Apply(uint64_t first_seq, const std::vector<std::string>& entries) override {
    if (hub_->options_.fault_ack_before_durable) {
      // The mutation the simulator must catch: the watermark moves (and the ACK goes
      // out) before anything is on disk.
      hub_->sites_[site_].up_applied = first_seq + entries.size() - 1;
      if (hub_->deferred_.empty()) hub_->deferred_since_ = hub_->clock_.Now();
      hub_->deferred_.push_back({site_, {first_seq, entries}});
      return Status::Ok();
    }
    return ApplyDurably(first_seq, entries);
  }
  Status ApplyDurably(uint64_t first_seq, const std::vector<std::string>& entries) {
    SiteRecord copy = hub_->sites_.at(site_);
    HubStore::Txn txn;
    std::map<std::string, HubRun> runs;
    DecodeLimits limits;
    limits.max_depth = 4;
    for (size_t i = 0; i < entries.size(); ++i) {
      const uint64_t seq = first_seq + i;
      txn.PutUp(site_, copy.incarnation, seq, entries[i]);
      Event e;
      Status s = Decode(entries[i], &e, limits);
      if (!s.ok()) {
        // Kept raw in the copy of the log (nothing is lost), left out of the view.
        ++hub_->counters_.events_undecodable;
        spdlog::warn("hub.event_undecodable site={} seq={} error=\"{}\"", site_, seq, s.message());
        continue;
      }
      hub_->MaterializeEvent(site_, seq, e, &runs, &txn);
    }
    for (const auto& [id, r] : runs) txn.PutRun(r);
    copy.up_applied = first_seq + entries.size() - 1;
    copy.up_head = std::max(copy.up_head, copy.up_applied);
    copy.events_total += entries.size();
    copy.last_seen = hub_->clock_.Now();
    txn.PutSite(copy);
    Status s = hub_->store_->Commit(txn);
    if (!s.ok()) {
      ++hub_->counters_.store_errors;
      spdlog::error("hub.apply_failed site={} first_seq={} error=\"{}\"", site_, first_seq,
                    s.ToString());
      return s;
    }
    hub_->sites_[site_] = std::move(copy);
    hub_->counters_.events_applied += entries.size();
    return Status::Ok();
  }

 private:
  HubCore* hub_;
  std::string site_;
};

class HubCore::Downstream : public OutgoingStream {
 public:
  Downstream(HubCore* hub, std::string site) : hub_(hub), site_(std::move(site)) {}
  uint64_t head() const override { return hub_->sites_.at(site_).down_head; }
  uint64_t acked() const override { return hub_->sites_.at(site_).down_acked; }
  Result<std::vector<LogRecord>> Read(uint64_t after, size_t max_count,
                                      size_t max_bytes) const override {
    const SiteRecord& s = hub_->sites_.at(site_);
    return hub_->store_->ReadDown(site_, s.down_epoch, std::max(after, s.down_acked), max_count,
                                  max_bytes);
  }
  Status Acknowledge(uint64_t seq) override {
    SiteRecord copy = hub_->sites_.at(site_);
    if (seq <= copy.down_acked) return Status::Ok();
    copy.down_acked = seq;
    HubStore::Txn txn;
    txn.PutSite(copy);
    txn.TrimDown(site_, copy.down_epoch, seq);
    OUTPOST_RETURN_IF_ERROR(hub_->store_->Commit(txn));
    hub_->sites_[site_] = std::move(copy);
    return Status::Ok();
  }

 private:
  HubCore* hub_;
  std::string site_;
};

struct HubCore::Conn {
  std::string peer;
  std::unique_ptr<Upstream> up;
  std::unique_ptr<Downstream> down;
  std::unique_ptr<SyncSession> session;
};

// ---------------------------------------------------------------------------------------

HubCore::HubCore(HubStore* store, const Clock& clock, Rng* rng, HubOptions options)
    : store_(store), clock_(clock), rng_(rng), options_(options) {}

HubCore::~HubCore() = default;

Result<std::unique_ptr<HubCore>> HubCore::Open(HubStore* store, const Clock& clock, Rng* rng,
                                               HubOptions options) {
  std::unique_ptr<HubCore> h(new HubCore(store, clock, rng, options));
  std::vector<SiteRecord> sites;
  OUTPOST_RETURN_IF_ERROR(store->LoadSites(&sites));
  for (auto& s : sites) {
    if (options.fault_forget_watermark) s.up_applied = 0;  // mutation check only
    h->by_key_[s.key] = s.name;
    h->sites_[s.name] = std::move(s);
  }
  std::vector<WorkflowRecord> defs;
  OUTPOST_RETURN_IF_ERROR(store->LoadDefs(&defs));
  for (auto& d : defs) h->defs_[d.name] = std::move(d);
  h->audit_next_ = store->audit_head() + 1;
  return h;
}

SiteRecord* HubCore::FindSite(const std::string& name) {
  auto it = sites_.find(name);
  return it == sites_.end() ? nullptr : &it->second;
}

HubCore::Conn* HubCore::ConnFor(const std::string& site) {
  auto it = conns_.find(site);
  return it == conns_.end() ? nullptr : it->second.get();
}

bool HubCore::online(const std::string& site) const {
  auto it = conns_.find(site);
  return it != conns_.end() && it->second->session->established();
}

void HubCore::Audit(HubStore::Txn* txn, json event) {
  event["seq"] = audit_next_;
  event["time"] = FormatTime(clock_.Now());
  txn->Audit(audit_next_++, event.dump());
}

std::optional<std::string> HubCore::AuthorizeSite(const std::string& key) {
  auto it = by_key_.find(key);
  if (it != by_key_.end()) {
    const SiteRecord& s = sites_.at(it->second);
    if (s.site_state() == SiteState::kEnrolled) return s.name;
    ++counters_.keys_refused;
    spdlog::warn("hub.key_refused site={} state={}", s.name, SiteStateName(s.site_state()));
    return std::nullopt;
  }
  ++counters_.keys_refused;
  if (!options_.accept_unknown) {
    spdlog::warn("hub.key_refused reason=unknown_key key={}", key);
    return std::nullopt;
  }
  SiteRecord s;
  s.name = "pending-" + HexHash(key).substr(0, 10);
  s.key = key;
  s.state = static_cast<uint8_t>(SiteState::kPending);
  s.created = clock_.Now();
  HubStore::Txn txn;
  txn.PutSite(s);
  Audit(&txn, {{"event", "site.pending"}, {"site", s.name}, {"key", key}});
  if (Status st = store_->Commit(txn); !st.ok()) {
    ++counters_.store_errors;
    spdlog::error("hub.pending_record_failed error=\"{}\"", st.ToString());
    return std::nullopt;
  }
  spdlog::info("hub.site_pending site={} key={} (accept with: outpostctl site accept {})", s.name,
               key, s.name);
  by_key_[key] = s.name;
  sites_[s.name] = std::move(s);
  return std::nullopt;
}

void HubCore::Drop(const std::string& site, const std::string& why) {
  auto it = conns_.find(site);
  if (it == conns_.end()) return;
  const bool was_online = it->second->session->established();
  conns_.erase(it);
  if (SiteRecord* s = FindSite(site)) {
    HubStore::Txn txn;
    txn.PutSite(*s);  // persists last_seen
    Audit(&txn, {{"event", "site.offline"}, {"site", site}, {"reason", why}});
    if (Status st = store_->Commit(txn); !st.ok()) ++counters_.store_errors;
  }
  if (was_online) spdlog::info("hub.site_offline site={} reason=\"{}\"", site, why);
}

void HubCore::Emit(const std::string& site, const SyncOutput& so, HubOutput* out) {
  Conn* c = ConnFor(site);
  if (!c) return;
  for (const auto& m : so.send) out->send.push_back({c->peer, m});
  if (so.disconnect) {
    if (!so.disconnect_reason.empty()) {
      Message err;
      err.t = static_cast<uint8_t>(MsgType::kError);
      err.message = so.disconnect_reason;
      out->send.push_back({c->peer, err});
    }
    Drop(site, so.disconnect_reason);
  }
}

void HubCore::OnSiteFrame(const std::string& identity, const std::string& peer,
                          std::string_view payload, HubOutput* out) {
  ++counters_.frames_received;
  auto refuse = [&](const std::string& why) {
    Message err;
    err.t = static_cast<uint8_t>(MsgType::kError);
    err.message = why;
    out->send.push_back({peer, err});
  };
  SiteRecord* site = FindSite(identity);
  if (!site || site->site_state() != SiteState::kEnrolled) {
    // ZAP admitted this connection earlier; the registry has changed since.
    ++counters_.frames_refused;
    spdlog::warn("hub.frame_refused identity={} reason=not_enrolled", identity);
    if (Conn* c = ConnFor(identity); c && c->peer == peer) Drop(identity, "not enrolled");
    refuse("site '" + identity + "' is not enrolled at this hub");
    return;
  }
  Message m;
  Status s = DecodeMessage(payload, &m);
  if (!s.ok()) {
    ++counters_.frames_malformed;
    spdlog::warn("hub.frame_malformed site={} bytes={} error=\"{}\"", identity, payload.size(),
                 s.message());
    if (Conn* c = ConnFor(identity); c && c->peer == peer) Drop(identity, "malformed frame");
    refuse("malformed frame: " + s.message());
    return;
  }
  site->last_seen = clock_.Now();
  Handle(identity, peer, m, out);
}

Status HubCore::NewIncarnation(SiteRecord& site, uint64_t incarnation) {
  SiteRecord copy = site;
  HubStore::Txn txn;
  std::vector<Command> carry;
  if (copy.down_head > copy.down_acked) {
    OUTPOST_ASSIGN_OR_RETURN(auto old, store_->ReadDown(copy.name, copy.down_epoch, copy.down_acked,
                                                        SIZE_MAX, SIZE_MAX));
    for (const auto& r : old) {
      Command c;
      if (!DecodeCommand(r.payload, &c).ok()) continue;
      if (c.command_type() == CommandType::kStartRun ||
          c.command_type() == CommandType::kCancelRun) {
        carry.push_back(std::move(c));
      }
    }
  }
  txn.TrimDown(copy.name, copy.down_epoch, copy.down_head);
  Audit(&txn, {{"event", "site.new_incarnation"},
               {"site", copy.name},
               {"old_incarnation", copy.incarnation},
               {"new_incarnation", incarnation},
               {"old_events_kept", copy.up_applied},
               {"commands_redelivered", carry.size()}});
  spdlog::warn("hub.site_new_incarnation site={} old={:016x} new={:016x} commands_redelivered={}",
               copy.name, copy.incarnation, incarnation, carry.size());
  copy.incarnation = incarnation;
  copy.up_applied = 0;
  copy.up_head = 0;
  copy.down_epoch = incarnation;
  copy.down_head = 0;
  copy.down_acked = 0;
  copy.placed.clear();  // the new database has none of them
  Reconcile(copy, &txn);
  for (const auto& c : carry) Enqueue(copy, c, &txn);
  txn.PutSite(copy);
  OUTPOST_RETURN_IF_ERROR(store_->Commit(txn));
  site = std::move(copy);
  return Status::Ok();
}

void HubCore::Handle(const std::string& site_name, const std::string& peer, const Message& m,
                     HubOutput* out) {
  SiteRecord& site = sites_.at(site_name);
  if (m.type() == MsgType::kHello) {
    // A HELLO opens a new session, whatever state the old one was in.
    if (site.incarnation == 0) {
      SiteRecord copy = site;
      copy.incarnation = m.incarnation;
      HubStore::Txn txn;
      txn.PutSite(copy);
      if (Status s = store_->Commit(txn); !s.ok()) {
        ++counters_.store_errors;
        return;  // no WELCOME: the site says HELLO again later
      }
      site = std::move(copy);
    } else if (site.incarnation != m.incarnation) {
      if (Status s = NewIncarnation(site, m.incarnation); !s.ok()) {
        ++counters_.store_errors;
        spdlog::error("hub.new_incarnation_failed site={} error=\"{}\"", site_name, s.ToString());
        return;
      }
    }
    site.up_head = std::max(site.up_head, m.up_head);
    const bool was_online = online(site_name);
    auto c = std::make_unique<Conn>();
    c->peer = peer;
    c->up = std::make_unique<Upstream>(this, site_name);
    c->down = std::make_unique<Downstream>(this, site_name);
    c->session = std::make_unique<SyncSession>(SyncSession::Role::kHub, clock_, options_.sync,
                                               c->down.get(), c->up.get());
    conns_[site_name] = std::move(c);
    Conn* conn = conns_[site_name].get();
    SyncOutput so;
    conn->session->OnConnected(&so);
    conn->session->OnMessage(m, &so);
    if (!was_online && conn->session->established()) {
      HubStore::Txn txn;
      txn.PutSite(site);
      Audit(&txn, {{"event", "site.online"},
                   {"site", site_name},
                   {"events_behind", site.up_head - site.up_applied},
                   {"commands_behind", site.down_head - m.down_applied}});
      if (Status s = store_->Commit(txn); !s.ok()) ++counters_.store_errors;
      spdlog::info("hub.site_online site={} incarnation={:016x} events_behind={} commands_behind={}",
                   site_name, site.incarnation, site.up_head - site.up_applied,
                   site.down_head - m.down_applied);
    }
    Emit(site_name, so, out);
    return;
  }
  Conn* conn = ConnFor(site_name);
  if (!conn || conn->peer != peer) {
    // A frame from before the hub restarted, or from a connection since replaced: the
    // site must open a session first.
    ++counters_.frames_stale;
    Message err;
    err.t = static_cast<uint8_t>(MsgType::kError);
    err.message = "no session on this connection: send HELLO";
    out->send.push_back({peer, err});
    return;
  }
  if (m.type() == MsgType::kBatch) site.up_head = std::max(site.up_head, m.up_head);
  SyncOutput so;
  conn->session->OnMessage(m, &so);
  Emit(site_name, so, out);
}

void HubCore::OnSiteDisconnected(const std::string& peer) {
  for (auto& [site, c] : conns_) {
    if (c->peer == peer) {
      Drop(site, "connection closed");
      return;
    }
  }
}

void HubCore::Tick(HubOutput* out) {
  if (!deferred_.empty() && clock_.Now() - deferred_since_ >= 1000) {
    // fault_ack_before_durable: a lazy group commit, a second after the ACKs went out.
    auto deferred = std::move(deferred_);
    deferred_.clear();
    for (auto& [site, batch] : deferred) {
      Upstream(this, site).ApplyDurably(batch.first, batch.second).IgnoreError();
    }
  }
  // Only sessions with a timer due are ticked (a hub holds thousands of idle sessions).
  const TimeMs now = clock_.Now();
  std::vector<std::string> names;
  for (const auto& [site, c] : conns_) {
    const TimeMs d = c->session->NextDeadline();
    if (d > 0 && d <= now) names.push_back(site);
  }
  for (const auto& site : names) {
    Conn* c = ConnFor(site);
    if (!c) continue;
    SyncOutput so;
    c->session->Tick(&so);
    Emit(site, so, out);
  }
}

TimeMs HubCore::NextDeadline() const {
  TimeMs best = deferred_.empty() ? 0 : deferred_since_ + 1000;
  for (const auto& [site, c] : conns_) {
    TimeMs d = c->session->NextDeadline();
    if (d > 0 && (best == 0 || d < best)) best = d;
  }
  return best;
}

void HubCore::Enqueue(SiteRecord& site, const Command& c, HubStore::Txn* txn) {
  const uint64_t seq = site.down_head + 1;
  txn->PutDown(site.name, site.down_epoch, seq, EncodeCommand(c));
  site.down_head = seq;
  ++counters_.commands_enqueued;
}

void HubCore::Reconcile(SiteRecord& site, HubStore::Txn* txn) {
  if (site.site_state() != SiteState::kEnrolled) return;
  for (const auto& [name, d] : defs_) {
    const bool match = SelectorMatches(d.target, site.labels);
    auto placed = site.placed.find(name);
    if (match && (placed == site.placed.end() || placed->second != d.hash)) {
      Command c;
      c.type = static_cast<uint8_t>(CommandType::kPlaceWorkflow);
      c.time = clock_.Now();
      c.workflow = name;
      c.source = d.source;
      c.hash = d.hash;
      c.author = d.author;
      Enqueue(site, c, txn);
      site.placed[name] = d.hash;
    }
  }
  for (auto it = site.placed.begin(); it != site.placed.end();) {
    auto d = defs_.find(it->first);
    if (d != defs_.end() && SelectorMatches(d->second.target, site.labels)) {
      ++it;
      continue;
    }
    Command c;
    c.type = static_cast<uint8_t>(CommandType::kRemoveWorkflow);
    c.time = clock_.Now();
    c.workflow = it->first;
    Enqueue(site, c, txn);
    it = site.placed.erase(it);
  }
}

Status HubCore::CommitSites(HubStore::Txn& txn, std::map<std::string, SiteRecord>& changed) {
  for (const auto& [name, s] : changed) txn.PutSite(s);
  Status s = store_->Commit(txn);
  if (!s.ok()) {
    ++counters_.store_errors;
    return s;
  }
  for (auto& [name, rec] : changed) {
    by_key_[rec.key] = name;
    sites_[name] = std::move(rec);
  }
  return Status::Ok();
}

void HubCore::PokeSites(const std::vector<std::string>& sites, HubOutput* out) {
  for (const auto& site : sites) {
    Conn* c = ConnFor(site);
    if (!c) continue;
    SyncOutput so;
    c->session->Poke(&so);
    Emit(site, so, out);
  }
}

void HubCore::MaterializeEvent(const std::string& site, uint64_t seq, const Event& e,
                               std::map<std::string, HubRun>* runs, HubStore::Txn* txn) {
  if (e.run.empty()) return;
  auto it = runs->find(e.run);
  if (it == runs->end()) {
    HubRun r;
    auto got = store_->GetRun(e.run);
    if (got.ok() && *got) {
      r = std::move(**got);
    } else {
      r.id = e.run;
      r.site = site;
      r.created = e.time;
    }
    it = runs->emplace(e.run, std::move(r)).first;
  }
  HubRun& r = it->second;
  if (r.site != site) {
    ++counters_.events_undecodable;
    spdlog::warn("hub.event_foreign_run site={} seq={} run={} owner={}", site, seq, e.run, r.site);
    return;
  }
  r.updated = e.time;
  auto task = [&r](const std::string& id) -> HubTask& {
    for (auto& t : r.tasks) {
      if (t.id == id) return t;
    }
    r.tasks.push_back(HubTask{});
    r.tasks.back().id = id;
    return r.tasks.back();
  };
  switch (static_cast<EventType>(e.type)) {
    case EventType::kRunCreated:
      r.delivered = true;
      r.workflow = e.workflow;
      r.hash = e.message;
      r.params = e.params;
      if (!e.request.empty()) r.request = e.request;
      if (r.created == 0) r.created = e.time;
      for (const auto& id : e.tasks) task(id);
      break;
    case EventType::kRunStarted:
      if (!FinalRunState(r.state)) r.state = "running";
      break;
    case EventType::kAttemptStarted: {
      HubTask& t = task(e.task);
      t.state = e.state;
      t.attempts = e.attempt;
      t.started = e.time;
      break;
    }
    case EventType::kAttemptFinished:
    case EventType::kAttemptSpawnFailed: {
      HubTask& t = task(e.task);
      t.attempts = e.attempt;
      t.exit_code = e.exit_code;
      t.signal = e.signal;
      if (!e.message.empty()) t.message = e.message;
      txn->PutOutput(e.run, e.task, e.output.empty() ? e.message : e.output);
      break;
    }
    case EventType::kAttemptInterrupted:
    case EventType::kRetryScheduled:
    case EventType::kTimeoutKill:
    case EventType::kApprovalRequested:
    case EventType::kApprovalDecided:
    case EventType::kTaskExpanded: {
      HubTask& t = task(e.task);
      t.state = e.state;
      t.message = e.message;
      break;
    }
    case EventType::kTaskFinished: {
      HubTask& t = task(e.task);
      t.state = e.state;
      t.finished = e.time;
      t.exit_code = e.exit_code;
      t.signal = e.signal;
      if (!e.message.empty()) t.message = e.message;
      break;
    }
    case EventType::kCancelRequested:
      r.cancel_requested = true;
      break;
    case EventType::kCompensationStarted:
      r.message = e.message;
      break;
    case EventType::kScheduleFired:
      r.message = e.message;
      break;
    case EventType::kScheduleSkipped:
    case EventType::kOutputTrimmed:
      break;
    case EventType::kRunFinished:
      r.state = e.state;
      r.finished = e.time;
      r.message = e.message;
      break;
    case EventType::kCommandRejected:
      r.state = "failed";
      r.finished = e.time;
      r.message = "refused by the site: " + e.message;
      break;
    case EventType::kWorkflowPlaced:
    case EventType::kWorkflowRemoved:
      break;
  }
}

// ---------------------------------------------------------------------------------------
// Operator API.

json HubCore::SiteJson(const SiteRecord& s) const {
  char inc[20];
  snprintf(inc, sizeof inc, "%016llx", static_cast<unsigned long long>(s.incarnation));
  json placed = json::array();
  for (const auto& [name, hash] : s.placed) placed.push_back(name);
  return {{"name", s.name},
          {"state", SiteStateName(s.site_state())},
          {"key", s.key},
          {"labels", s.labels},
          {"online", online(s.name)},
          {"last_seen", TimeJson(s.last_seen)},
          {"created", TimeJson(s.created)},
          {"incarnation", inc},
          {"events_received", s.events_total},
          {"events_behind", s.up_head > s.up_applied ? s.up_head - s.up_applied : 0},
          {"commands_pending", s.down_head - s.down_acked},
          {"workflows", placed}};
}

namespace {

json RunJson(const HubRun& r) {
  json tasks = json::array();
  for (const auto& t : r.tasks) {
    tasks.push_back({{"id", t.id},
                     {"state", t.state},
                     {"attempts", t.attempts},
                     {"exit_code", t.attempts > 0 ? json(t.exit_code) : json(nullptr)},
                     {"signal", t.signal},
                     {"started", TimeJson(t.started)},
                     {"finished", TimeJson(t.finished)},
                     {"message", t.message}});
  }
  return {{"id", r.id},
          {"site", r.site},
          {"workflow", r.workflow},
          {"hash", r.hash},
          {"state", r.state},
          {"request", r.request},
          {"author", r.author},
          {"params", r.params},
          {"created", TimeJson(r.created)},
          {"finished", TimeJson(r.finished)},
          {"delivered", r.delivered},
          {"cancel_requested", r.cancel_requested},
          {"message", r.message},
          {"tasks", tasks}};
}

}  // namespace

json HubCore::StatusJson() const {
  size_t online_n = 0, enrolled = 0, pending = 0, revoked = 0;
  uint64_t behind = 0, commands = 0;
  json rows = json::array();
  for (const auto& [name, s] : sites_) {
    switch (s.site_state()) {
      case SiteState::kEnrolled: ++enrolled; break;
      case SiteState::kPending: ++pending; break;
      case SiteState::kRevoked: ++revoked; break;
    }
    if (online(name)) ++online_n;
    if (s.site_state() != SiteState::kEnrolled) continue;
    behind += s.up_head > s.up_applied ? s.up_head - s.up_applied : 0;
    commands += s.down_head - s.down_acked;
    rows.push_back({{"name", name},
                    {"online", online(name)},
                    {"last_seen", TimeJson(s.last_seen)},
                    {"labels", s.labels},
                    {"events_received", s.events_total},
                    {"events_behind", s.up_head > s.up_applied ? s.up_head - s.up_applied : 0},
                    {"commands_pending", s.down_head - s.down_acked}});
  }
  std::map<std::string, uint64_t> by_state;
  Status scan = store_->ScanRuns([&](const HubRun& r) {
    ++by_state[r.state];
    return true;
  });
  const auto& c = counters_;
  return {{"sites",
           {{"enrolled", enrolled},
            {"online", online_n},
            {"offline", enrolled - std::min(enrolled, online_n)},
            {"pending", pending},
            {"revoked", revoked}}},
          {"events_behind", behind},
          {"commands_pending", commands},
          {"runs", by_state},
          {"workflows", defs_.size()},
          {"site_rows", rows},
          {"store_bytes", store_->ApproximateSize()},
          {"counters",
           {{"frames_received", c.frames_received},
            {"frames_malformed", c.frames_malformed},
            {"frames_refused", c.frames_refused},
            {"frames_stale", c.frames_stale},
            {"events_applied", c.events_applied},
            {"events_undecodable", c.events_undecodable},
            {"commands_enqueued", c.commands_enqueued},
            {"store_errors", c.store_errors},
            {"keys_refused", c.keys_refused},
            {"operator_requests", c.operator_requests},
            {"operator_errors", c.operator_errors}}}};
}

json HubCore::OnOperator(const std::string& who, const json& r, HubOutput* out) {
  ++counters_.operator_requests;
  json reply;
  if (!r.is_object()) {
    reply = Error("request is not a JSON object");
  } else {
    const std::string op = Str(r, "op");
    if (op == "status") {
      reply = {{"ok", true}, {"status", StatusJson()}};
    } else if (op == "site.add") {
      reply = OpSiteAdd(r, out);
    } else if (op == "site.accept") {
      reply = OpSiteAccept(r, out);
    } else if (op == "site.revoke") {
      reply = OpSiteRevoke(r, out);
    } else if (op == "site.label") {
      reply = OpSiteLabel(r, out);
    } else if (op == "site.list") {
      json list = json::array();
      for (const auto& [name, s] : sites_) list.push_back(SiteJson(s));
      reply = {{"ok", true}, {"sites", list}};
    } else if (op == "site.show") {
      const SiteRecord* s = FindSite(Str(r, "name"));
      reply = s ? json{{"ok", true}, {"site", SiteJson(*s)}}
                : Error("no site named '" + Str(r, "name") + "'", "not_found");
    } else if (op == "workflow.apply") {
      reply = OpWorkflowApply(who, r, out);
    } else if (op == "workflow.remove") {
      reply = OpWorkflowRemove(r, out);
    } else if (op == "workflow.list") {
      json list = json::array();
      for (const auto& [name, d] : defs_) {
        json placed = json::array();
        for (const auto& [sn, s] : sites_) {
          if (s.placed.count(name)) placed.push_back(sn);
        }
        list.push_back({{"name", name},
                        {"hash", d.hash},
                        {"target", d.target},
                        {"applied", TimeJson(d.applied)},
                        {"author", d.author},
                        {"sites", placed}});
      }
      reply = {{"ok", true}, {"workflows", list}};
    } else if (op == "run.start") {
      reply = OpRunStart(who, r, out);
    } else if (op == "run.cancel") {
      reply = OpRunCancel(who, r, out);
    } else if (op == "run.approve") {
      reply = OpRunApprove(who, r, out);
    } else if (op == "run.list") {
      reply = OpRunList(r);
    } else if (op == "run.show") {
      auto run = store_->GetRun(Str(r, "id"));
      if (!run.ok()) {
        reply = Error(run.status());
      } else if (!*run) {
        reply = Error("no run with id '" + Str(r, "id") + "'", "not_found");
      } else {
        reply = {{"ok", true}, {"run", RunJson(**run)}};
      }
    } else if (op == "run.logs") {
      auto run = store_->GetRun(Str(r, "id"));
      auto o = store_->GetOutput(Str(r, "id"), Str(r, "task"));
      if (!run.ok() || !o.ok()) {
        reply = Error(!run.ok() ? run.status() : o.status());
      } else if (!*run) {
        reply = Error("no run with id '" + Str(r, "id") + "'", "not_found");
      } else if (!*o) {
        reply = Error("no output yet for task '" + Str(r, "task") + "' of run " + Str(r, "id"),
                      "not_found");
      } else {
        reply = {{"ok", true}, {"output", **o}};
      }
    } else if (op == "events") {
      std::vector<std::string> ev;
      size_t limit = r.value("limit", 50);
      Status s = store_->ReadAudit(std::min<size_t>(limit, options_.max_list), &ev);
      json list = json::array();
      for (const auto& e : ev) list.push_back(json::parse(e, nullptr, false));
      reply = s.ok() ? json{{"ok", true}, {"events", list}} : Error(s);
    } else {
      reply = Error("unknown op '" + op + "'");
    }
  }
  if (!reply.value("ok", false)) ++counters_.operator_errors;
  return reply;
}

json HubCore::OpSiteAdd(const json& r, HubOutput* out) {
  const std::string name = Str(r, "name");
  const std::string key = Str(r, "key");
  if (!ValidSiteName(name)) {
    return Error("site name '" + name + "' must be 1-63 of a-z, 0-9 and '-' (not at either end)");
  }
  if (!IsZ85Key(key)) return Error("key for site '" + name + "' is not a 40-character Z85 public key");
  std::map<std::string, std::string> labels;
  std::string bad;
  if (!StringMap(r, "labels", &labels, &bad)) return Error(bad);
  for (const auto& [k, v] : labels) {
    if (!ValidLabel(k) || !ValidLabel(v)) return Error("label '" + k + "=" + v + "' is not valid");
  }
  auto by_key = by_key_.find(key);
  if (by_key != by_key_.end() && by_key->second != name) {
    const SiteRecord& other = sites_.at(by_key->second);
    if (other.site_state() != SiteState::kPending) {
      return Error("key is already enrolled as site '" + other.name + "'", "conflict");
    }
  }
  SiteRecord* existing = FindSite(name);
  if (existing) {
    if (existing->key == key && existing->site_state() == SiteState::kEnrolled) {
      return {{"ok", true}, {"site", SiteJson(*existing)}, {"unchanged", true}};
    }
    return Error("site '" + name + "' already exists (" +
                     SiteStateName(existing->site_state()) + ")",
                 "conflict");
  }
  std::map<std::string, SiteRecord> changed;
  HubStore::Txn txn;
  SiteRecord s;
  s.name = name;
  s.key = key;
  s.state = static_cast<uint8_t>(SiteState::kEnrolled);
  s.labels = labels;
  s.created = clock_.Now();
  Reconcile(s, &txn);
  Audit(&txn, {{"event", "site.enrolled"}, {"site", name}, {"labels", labels}});
  changed[name] = s;
  std::string pending_name;
  if (by_key != by_key_.end()) {
    // The key was waiting as a pending site: that record becomes this site.
    pending_name = by_key->second;
    txn.DeleteSite(pending_name);
  }
  if (Status st = CommitSites(txn, changed); !st.ok()) return Error(st);
  if (!pending_name.empty()) sites_.erase(pending_name);
  by_key_[key] = name;
  spdlog::info("hub.site_enrolled site={} labels={}", name, json(labels).dump());
  PokeSites({name}, out);
  return {{"ok", true}, {"site", SiteJson(sites_.at(name))}};
}

json HubCore::OpSiteAccept(const json& r, HubOutput* out) {
  const std::string name = Str(r, "name");
  SiteRecord* s = FindSite(name);
  if (!s) return Error("no site named '" + name + "'", "not_found");
  if (s->site_state() != SiteState::kPending) {
    return Error("site '" + name + "' is " + SiteStateName(s->site_state()) + ", not pending",
                 "conflict");
  }
  json add = {{"name", Str(r, "as").empty() ? name : Str(r, "as")}, {"key", s->key}};
  if (r.contains("labels")) add["labels"] = r["labels"];
  if (add["name"] == name) {
    // Same name: enroll in place.
    std::map<std::string, std::string> labels;
    std::string bad;
    if (!StringMap(r, "labels", &labels, &bad)) return Error(bad);
    SiteRecord copy = *s;
    copy.state = static_cast<uint8_t>(SiteState::kEnrolled);
    for (const auto& [k, v] : labels) copy.labels[k] = v;
    HubStore::Txn txn;
    Reconcile(copy, &txn);
    Audit(&txn, {{"event", "site.accepted"}, {"site", name}});
    std::map<std::string, SiteRecord> changed{{name, copy}};
    if (Status st = CommitSites(txn, changed); !st.ok()) return Error(st);
    PokeSites({name}, out);
    return {{"ok", true}, {"site", SiteJson(sites_.at(name))}};
  }
  return OpSiteAdd(add, out);
}

json HubCore::OpSiteRevoke(const json& r, HubOutput* out) {
  const std::string name = Str(r, "name");
  SiteRecord* s = FindSite(name);
  if (!s) return Error("no site named '" + name + "'", "not_found");
  if (s->site_state() == SiteState::kRevoked) {
    return {{"ok", true}, {"site", SiteJson(*s)}, {"unchanged", true}};
  }
  SiteRecord copy = *s;
  copy.state = static_cast<uint8_t>(SiteState::kRevoked);
  HubStore::Txn txn;
  Audit(&txn, {{"event", "site.revoked"}, {"site", name}});
  std::map<std::string, SiteRecord> changed{{name, copy}};
  if (Status st = CommitSites(txn, changed); !st.ok()) return Error(st);
  // Cut the open connection now: the site is told, its session dropped, and every
  // further frame on that connection is refused.
  if (Conn* c = ConnFor(name)) {
    Message err;
    err.t = static_cast<uint8_t>(MsgType::kError);
    err.message = "site '" + name + "' has been revoked";
    out->send.push_back({c->peer, err});
  }
  Drop(name, "revoked");
  spdlog::warn("hub.site_revoked site={}", name);
  return {{"ok", true}, {"site", SiteJson(sites_.at(name))}};
}

json HubCore::OpSiteLabel(const json& r, HubOutput* out) {
  const std::string name = Str(r, "name");
  SiteRecord* s = FindSite(name);
  if (!s) return Error("no site named '" + name + "'", "not_found");
  std::map<std::string, std::string> set;
  std::string bad;
  if (!StringMap(r, "set", &set, &bad)) return Error(bad);
  SiteRecord copy = *s;
  for (const auto& [k, v] : set) {
    if (!ValidLabel(k) || !ValidLabel(v)) return Error("label '" + k + "=" + v + "' is not valid");
    copy.labels[k] = v;
  }
  if (auto rm = r.find("remove"); rm != r.end() && rm->is_array()) {
    for (const auto& k : *rm) {
      if (k.is_string()) copy.labels.erase(k.get<std::string>());
    }
  }
  HubStore::Txn txn;
  const uint64_t before = copy.down_head;
  Reconcile(copy, &txn);
  Audit(&txn, {{"event", "site.labels"}, {"site", name}, {"labels", copy.labels}});
  std::map<std::string, SiteRecord> changed{{name, copy}};
  if (Status st = CommitSites(txn, changed); !st.ok()) return Error(st);
  PokeSites({name}, out);
  return {{"ok", true}, {"site", SiteJson(sites_.at(name))}, {"commands", copy.down_head - before}};
}

json HubCore::OpWorkflowApply(const std::string& who, const json& r, HubOutput* out) {
  const std::string file = Str(r, "file").empty() ? "<request>" : Str(r, "file");
  auto def = ParseWorkflow(Str(r, "source"), file);
  if (!def.ok()) return Error(def.status());
  std::map<std::string, std::string> target;
  std::string bad;
  if (!StringMap(r, "target", &target, &bad)) return Error(bad);
  WorkflowRecord d;
  d.name = def->name;
  d.source = def->source;
  d.hash = def->hash;
  d.target = target;
  d.applied = clock_.Now();
  d.author = who;
  auto prev = defs_.find(d.name);
  const bool unchanged =
      prev != defs_.end() && prev->second.hash == d.hash && prev->second.target == d.target;
  std::optional<WorkflowRecord> old;
  if (prev != defs_.end()) old = prev->second;
  defs_[d.name] = d;  // Reconcile reads defs_
  HubStore::Txn txn;
  txn.PutDef(d);
  std::map<std::string, SiteRecord> changed;
  json placed = json::array();
  for (const auto& [name, s] : sites_) {
    SiteRecord copy = s;
    const uint64_t before = copy.down_head;
    Reconcile(copy, &txn);
    if (copy.placed.count(d.name)) placed.push_back(name);
    if (copy.down_head != before) changed[name] = std::move(copy);
  }
  Audit(&txn, {{"event", "workflow.applied"},
               {"workflow", d.name},
               {"hash", d.hash},
               {"target", target},
               {"author", who}});
  std::vector<std::string> poke;
  for (const auto& [name, s] : changed) poke.push_back(name);
  if (Status st = CommitSites(txn, changed); !st.ok()) {
    if (old) {
      defs_[d.name] = *old;
    } else {
      defs_.erase(d.name);
    }
    return Error(st);
  }
  spdlog::info("hub.workflow_applied workflow={} hash={} sites={}", d.name, d.hash.substr(0, 12),
               placed.size());
  PokeSites(poke, out);
  return {{"ok", true},
          {"workflow", d.name},
          {"hash", d.hash},
          {"sites", placed},
          {"unchanged", unchanged}};
}

json HubCore::OpWorkflowRemove(const json& r, HubOutput* out) {
  const std::string name = Str(r, "name");
  auto it = defs_.find(name);
  if (it == defs_.end()) return Error("no workflow named '" + name + "'", "not_found");
  WorkflowRecord old = it->second;
  defs_.erase(it);
  HubStore::Txn txn;
  txn.DeleteDef(name);
  std::map<std::string, SiteRecord> changed;
  for (const auto& [sn, s] : sites_) {
    SiteRecord copy = s;
    const uint64_t before = copy.down_head;
    Reconcile(copy, &txn);
    if (copy.down_head != before) changed[sn] = std::move(copy);
  }
  Audit(&txn, {{"event", "workflow.removed"}, {"workflow", name}});
  std::vector<std::string> poke;
  for (const auto& [sn, s] : changed) poke.push_back(sn);
  if (Status st = CommitSites(txn, changed); !st.ok()) {
    defs_[name] = old;
    return Error(st);
  }
  PokeSites(poke, out);
  return {{"ok", true}, {"workflow", name}, {"sites", poke}};
}

json HubCore::OpRunStart(const std::string& who, const json& r, HubOutput* out) {
  const std::string workflow = Str(r, "workflow");
  auto d = defs_.find(workflow);
  if (d == defs_.end()) {
    return Error("no workflow named '" + workflow + "' is applied at the hub (outpostctl workflow "
                 "apply FILE --target ...)",
                 "not_found");
  }
  std::string request = Str(r, "request");
  if (request.size() > 128) return Error("request id longer than 128 characters");
  if (request.empty()) request = MakeUlid(clock_.Now(), rng_);
  auto existing = store_->GetRequest(request);
  if (!existing.ok()) return Error(existing.status());
  if (*existing) {
    const RequestRecord& q = **existing;
    if (q.workflow != workflow) {
      return Error("request id '" + request + "' was already used for workflow '" + q.workflow + "'",
                   "conflict");
    }
    return {{"ok", true}, {"request", request}, {"runs", q.runs}, {"sites", q.sites},
            {"duplicate", true}};
  }
  std::map<std::string, std::string> params, selector;
  std::string bad;
  if (!StringMap(r, "params", &params, &bad) || !StringMap(r, "target", &selector, &bad)) {
    return Error(bad);
  }
  auto def = ParseWorkflow(d->second.source, workflow);
  if (!def.ok()) return Error(def.status());
  auto resolved = def->ResolveParams(params);
  if (!resolved.ok()) return Error(resolved.status());
  std::optional<int> priority;
  if (auto p = r.find("priority"); p != r.end()) {
    if (!p->is_number_integer() || p->get<int64_t>() < -1000 || p->get<int64_t>() > 1000) {
      return Error("priority must be an integer from -1000 to 1000");
    }
    priority = p->get<int>();
  }
  const std::string only = Str(r, "site");
  std::vector<std::string> targets;
  if (!only.empty()) {
    const SiteRecord* s = FindSite(only);
    if (!s) return Error("no site named '" + only + "'", "not_found");
    if (s->site_state() != SiteState::kEnrolled) {
      return Error("site '" + only + "' is " + SiteStateName(s->site_state()), "conflict");
    }
    if (!s->placed.count(workflow)) {
      return Error("workflow '" + workflow + "' is not placed on site '" + only +
                       "' (its target does not match the site's labels)",
                   "conflict");
    }
    targets.push_back(only);
  } else {
    for (const auto& [name, s] : sites_) {
      if (s.site_state() == SiteState::kEnrolled && s.placed.count(workflow) &&
          SelectorMatches(selector, s.labels)) {
        targets.push_back(name);
      }
    }
    if (targets.empty()) {
      return Error("no enrolled site has workflow '" + workflow + "' placed" +
                       (selector.empty() ? "" : " and matches the target"),
                   "not_found");
    }
  }
  HubStore::Txn txn;
  RequestRecord q;
  q.id = request;
  q.workflow = workflow;
  q.created = clock_.Now();
  std::map<std::string, SiteRecord> changed;
  for (const auto& site : targets) {
    SiteRecord copy = sites_.at(site);
    HubRun run;
    run.id = site + "-" + MakeUlid(clock_.Now(), rng_);
    run.site = site;
    run.workflow = workflow;
    run.hash = d->second.hash;
    run.request = request;
    run.author = who;
    run.params = *resolved;
    run.created = clock_.Now();
    run.updated = run.created;
    for (const auto& t : def->tasks) {
      run.tasks.push_back(HubTask{});
      run.tasks.back().id = t.id;
    }
    Command c;
    c.type = static_cast<uint8_t>(CommandType::kStartRun);
    c.time = clock_.Now();
    c.request = request;
    c.run = run.id;
    c.workflow = workflow;
    c.source = d->second.source;
    c.hash = d->second.hash;
    c.params = params;
    c.author = who;
    c.has_priority = priority.has_value();
    c.priority = priority.value_or(0);
    Enqueue(copy, c, &txn);
    txn.PutRun(run);
    q.runs.push_back(run.id);
    q.sites.push_back(site);
    changed[site] = std::move(copy);
  }
  txn.PutRequest(q);
  Audit(&txn, {{"event", "run.requested"},
               {"request", request},
               {"workflow", workflow},
               {"runs", q.runs},
               {"author", who}});
  if (Status st = CommitSites(txn, changed); !st.ok()) return Error(st);
  spdlog::info("hub.run_requested request={} workflow={} sites={}", request, workflow,
               targets.size());
  PokeSites(targets, out);
  return {{"ok", true}, {"request", request}, {"runs", q.runs}, {"sites", q.sites},
          {"duplicate", false}};
}

json HubCore::OpRunCancel(const std::string& who, const json& r, HubOutput* out) {
  const std::string id = Str(r, "id");
  auto got = store_->GetRun(id);
  if (!got.ok()) return Error(got.status());
  if (!*got) return Error("no run with id '" + id + "'", "not_found");
  HubRun run = std::move(**got);
  if (FinalRunState(run.state)) {
    return {{"ok", true}, {"run", RunJson(run)}, {"noop", true},
            {"message", "run already " + run.state + "; nothing to cancel"}};
  }
  SiteRecord* site = FindSite(run.site);
  if (!site) return Error("run " + id + " belongs to unknown site " + run.site, "internal");
  SiteRecord copy = *site;
  Command c;
  c.type = static_cast<uint8_t>(CommandType::kCancelRun);
  c.time = clock_.Now();
  c.run = id;
  c.reason = Str(r, "reason").empty() ? "cancelled by " + who : Str(r, "reason");
  c.author = who;
  HubStore::Txn txn;
  Enqueue(copy, c, &txn);
  run.cancel_requested = true;
  txn.PutRun(run);
  Audit(&txn, {{"event", "run.cancel_requested"}, {"run", id}, {"author", who}});
  std::map<std::string, SiteRecord> changed{{run.site, copy}};
  if (Status st = CommitSites(txn, changed); !st.ok()) return Error(st);
  PokeSites({run.site}, out);
  return {{"ok", true}, {"run", RunJson(run)}, {"noop", false},
          {"message", online(run.site) ? "cancel sent" : "cancel queued until the site reconnects"}};
}

json HubCore::OpRunApprove(const std::string& who, const json& r, HubOutput* out) {
  const std::string id = Str(r, "id"), task = Str(r, "task");
  auto got = store_->GetRun(id);
  if (!got.ok()) return Error(got.status());
  if (!*got) return Error("no run with id '" + id + "'", "not_found");
  HubRun run = std::move(**got);
  bool known = false;
  for (const auto& t : run.tasks) known = known || t.id == task;
  if (!known) return Error("run " + id + " has no task '" + task + "'", "not_found");
  if (FinalRunState(run.state)) {
    return Error("run " + id + " already " + run.state + "; nothing to approve", "conflict");
  }
  SiteRecord* site = FindSite(run.site);
  if (!site) return Error("run " + id + " belongs to unknown site " + run.site, "internal");
  const bool reject = r.value("reject", false);
  SiteRecord copy = *site;
  Command c;
  c.type = static_cast<uint8_t>(CommandType::kApprove);
  c.time = clock_.Now();
  c.run = id;
  c.task = task;
  c.reason = reject ? "reject" : "approve";
  c.author = who;
  HubStore::Txn txn;
  Enqueue(copy, c, &txn);
  Audit(&txn, {{"event", reject ? "run.rejected" : "run.approved"}, {"run", id}, {"task", task},
               {"author", who}});
  std::map<std::string, SiteRecord> changed{{run.site, copy}};
  if (Status st = CommitSites(txn, changed); !st.ok()) return Error(st);
  PokeSites({run.site}, out);
  return {{"ok", true},
          {"run", id},
          {"task", task},
          {"decision", reject ? "reject" : "approve"},
          {"message", online(run.site) ? "decision sent" : "decision queued until the site reconnects"}};
}

json HubCore::OpRunList(const json& r) {
  const std::string site = Str(r, "site"), workflow = Str(r, "workflow"), state = Str(r, "state");
  size_t limit = options_.max_list;
  if (auto l = r.find("limit"); l != r.end() && l->is_number_unsigned()) {
    limit = std::min<size_t>(l->get<size_t>(), options_.max_list);
  }
  std::vector<HubRun> rows;
  Status s = store_->ScanRuns([&](const HubRun& run) {
    if ((site.empty() || run.site == site) && (workflow.empty() || run.workflow == workflow) &&
        (state.empty() || run.state == state)) {
      rows.push_back(run);
    }
    return true;
  });
  if (!s.ok()) return Error(s);
  std::sort(rows.begin(), rows.end(),
            [](const HubRun& a, const HubRun& b) { return a.created > b.created; });
  if (rows.size() > limit) rows.resize(limit);
  json list = json::array();
  for (const auto& run : rows) {
    json j = RunJson(run);
    j.erase("tasks");
    j["tasks_total"] = run.tasks.size();
    size_t done = 0;
    for (const auto& t : run.tasks) done += t.state == "succeeded" ? 1 : 0;
    j["tasks_succeeded"] = done;
    list.push_back(std::move(j));
  }
  return {{"ok", true}, {"runs", list}};
}

}  // namespace outpost
