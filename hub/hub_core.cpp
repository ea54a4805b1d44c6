// HubCore's sessions: the two streams of each site backed by the store, the handshake
// (new incarnations, stale connections), frames in, timers, and the upstream apply that
// stores a batch, folds it into the run view and advances the watermark in one commit.
#include "hub/hub_core.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

#include "common/json_fields.h"
#include "hub/run_view.h"
#include "hub/site_streams.h"

namespace outpost {

using json = nlohmann::json;


HubCore::HubCore(HubStore* store, const Clock& clock, Rng* rng, HubOptions options,
                 Faults faults)
    : store_(store), clock_(clock), rng_(rng), options_(options), faults_(faults) {}

HubCore::~HubCore() { FlushDeferredAudit(); }

void HubCore::FlushDeferredAudit() {
  if (deferred_audit_.size() == 0) return;
  HubStore::Txn txn = std::move(deferred_audit_);
  deferred_audit_ = HubStore::Txn();
  if (Status s = CommitTxn(txn); !s.ok()) CountStoreFailure(s);
}

Result<std::unique_ptr<HubCore>> HubCore::Open(HubStore* store, const Clock& clock, Rng* rng,
                                               HubOptions options, const Faults& faults) {
  std::unique_ptr<HubCore> h(new HubCore(store, clock, rng, options, faults));
  std::vector<SiteRecord> sites;
  OUTPOST_RETURN_IF_ERROR(store->LoadSites(&sites));
  for (auto& s : sites) {
    if (faults.forget_watermark) s.up_applied = 0;  // planted bug (common/faults.h)
    h->by_key_[s.key] = s.name;
    h->sites_[s.name] = std::move(s);
  }
  std::vector<WorkflowRecord> defs;
  OUTPOST_RETURN_IF_ERROR(store->LoadDefs(&defs));
  for (auto& d : defs) h->defs_[d.name] = std::move(d);
  OUTPOST_RETURN_IF_ERROR(h->LoadPolicy());
  std::vector<ArtifactRecord> arts;
  OUTPOST_RETURN_IF_ERROR(store->LoadArtifacts(&arts));
  for (auto& a : arts) h->artifacts_[a.digest] = std::move(a);
  h->audit_next_ = store->audit_head() + 1;
  OUTPOST_RETURN_IF_ERROR(h->LoadRunCounts());
  if (store->allocates_commands()) {
    for (const auto& [name, s] : h->sites_) h->heads_dirty_.insert(name);
    h->FreshenDownHeads();
  }
  OUTPOST_ASSIGN_OR_RETURN(auto epoch, store->GetSetting("hub_epoch"));
  if (epoch) {
    const char* end = epoch->data() + epoch->size();
    if (std::from_chars(epoch->data(), end, h->hub_epoch_).ptr != end) {
      return Status::Corruption("hub store: setting hub_epoch is not a number: '" +
                                SafeText(*epoch) + "'");
    }
  }
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

bool HubCore::online_here(const std::string& site) const {
  auto it = conns_.find(site);
  return it != conns_.end() && it->second->session->established();
}

bool HubCore::online(const std::string& site) const {
  return online_here(site) || online_elsewhere_.count(site) > 0;
}

void HubCore::ExchangePresence() {
  const TimeMs now = clock_.Now();
  if (now - presence_at_ < kPresenceEveryMs) return;
  presence_at_ = now;
  json mine = {{"at", now}, {"sites", json::array()}};
  for (const auto& [name, c] : conns_) {
    if (c->session->established()) mine["sites"].push_back(name);
  }
  HubStore::Txn txn;
  txn.PutSetting("online/" + options_.process_name, SafeDump(mine));
  if (Status st = CommitTxn(txn); !st.ok()) CountStoreFailure(st);
  std::set<std::string> elsewhere;
  Status st = store_->ScanSettings("online/", [&](const std::string& key, const std::string& v) {
    if (key == "online/" + options_.process_name) return;
    auto j = json::parse(v, nullptr, false);
    if (!j.is_object() || !j.contains("at") || !j["at"].is_number_integer() ||
        !j.contains("sites") || !j["sites"].is_array()) {
      return;  // not what a hub writes: ignored
    }
    // A process that stopped saying (killed) holds nothing after kPresenceStaleMs.
    if (now - j["at"].get<TimeMs>() > kPresenceStaleMs) return;
    for (const auto& site : j["sites"]) {
      if (site.is_string()) elsewhere.insert(site.get<std::string>());
    }
  });
  if (!st.ok()) {
    ++counters_.store_errors;
    return;
  }
  online_elsewhere_ = std::move(elsewhere);
}

void HubCore::Audit(HubStore::Txn* txn, json event) {
  event["seq"] = audit_next_;
  event["time"] = FormatTime(clock_.Now());
  txn->Audit(audit_next_++, SafeDump(event));  // text from sites may not be UTF-8
}

void HubCore::Drop(const std::string& site, const std::string& why, bool persist) {
  deadline_dirty_.insert(site);
  auto it = conns_.find(site);
  if (it == conns_.end()) return;
  const bool was_online = it->second->session->established();
  conns_.erase(it);
  if (SiteRecord* s = FindSite(site)) {
    HubStore::Txn txn;
    SiteRecord copy = *s;
    if (persist) txn.PutSite(copy);  // persists last_seen
    Audit(&txn, {{"event", "site.offline"}, {"site", site}, {"reason", SafeText(why)}});
    if (Status st = CommitTxn(txn); !st.ok()) {
      CountStoreFailure(st);
    } else {
      *s = std::move(copy);
    }
  }
  if (was_online) spdlog::info("hub.site_offline site={} reason=\"{}\"", site, SafeText(why));
}

Status HubCore::CommitTxn(HubStore::Txn& txn) {
  Status s = store_->Commit(txn);
  if (s.code() == Code::kAborted) {
    ++counters_.store_conflicts;
    refresh_pending_ = true;
    spdlog::info("hub.store_conflict error=\"{}\"", SafeText(s.message()));
  }
  return s;
}

void HubCore::AdoptStored(const std::string& name, std::optional<SiteRecord> fresh,
                          HubOutput* out) {
  auto it = sites_.find(name);
  if (!fresh) {
    // Removed through another hub process.
    if (it != sites_.end()) {
      by_key_.erase(it->second.key);
      if (ConnFor(name)) Drop(name, "site removed", false);
      sites_.erase(name);
    }
    return;
  }
  if (it == sites_.end()) {
    by_key_[fresh->key] = name;
    KeepStored(std::move(*fresh));
    return;
  }
  const SiteRecord& held = it->second;
  const bool moved = fresh->incarnation != held.incarnation ||
                     fresh->up_applied != held.up_applied ||
                     fresh->down_epoch != held.down_epoch || fresh->down_acked < held.down_acked;
  const uint64_t old_head = held.down_head;
  if (held.key != fresh->key) by_key_.erase(held.key);
  by_key_[fresh->key] = name;
  KeepStored(std::move(*fresh));
  if (ConnFor(name) && (moved || it->second.site_state() != SiteState::kEnrolled)) {
    // Another hub process applied this site's events (its session is there now) or the
    // site was revoked: this session is over; the site reconnects where it may.
    ++counters_.sessions_taken_over;
    Drop(name, moved ? "another hub process holds this site's session" : "site not enrolled",
         false);
  } else if (out) {
    FreshenDownHead(name);
    if (it->second.down_head > old_head) PokeSites({name}, out);  // enqueued elsewhere
  }
}

void HubCore::FreshenDownHead(const std::string& name) const {
  if (!heads_dirty_.erase(name)) return;
  auto it = sites_.find(name);
  if (it == sites_.end()) return;
  auto head = store_->DownHead(name, it->second.down_epoch);
  if (!head.ok()) {
    heads_dirty_.insert(name);  // read again next time
    return;
  }
  // Commands written at a number (a new incarnation's carried log) count too.
  it->second.down_head = std::max(*head, it->second.down_acked);
  deadline_dirty_.insert(name);
}

void HubCore::FreshenDownHeads() const {
  if (heads_dirty_.empty()) return;
  const std::set<std::string> dirty = heads_dirty_;
  for (const auto& name : dirty) FreshenDownHead(name);
}

void HubCore::KeepStored(SiteRecord fresh) {
  ++counters_.records_reread;
  SiteRecord& held = sites_[fresh.name];
  if (store_->allocates_commands()) {
    if (fresh.down_epoch == held.down_epoch) fresh.down_head = held.down_head;
    heads_dirty_.insert(fresh.name);
  }
  held = std::move(fresh);
}

Status HubCore::RereadSite(const std::string& name, HubOutput* out) {
  OUTPOST_ASSIGN_OR_RETURN(auto fresh, store_->GetSite(name));
  AdoptStored(name, std::move(fresh), out);
  return Status::Ok();
}

void HubCore::RefreshFromStore(HubOutput* out) {
  refresh_pending_ = false;
  std::vector<SiteRecord> list;
  if (Status s = store_->LoadSites(&list); !s.ok()) {
    ++counters_.store_errors;
    refresh_pending_ = true;
    // Tried again at every tick while the store is away: logged once every 10 s.
    if (clock_.Now() - refresh_logged_at_ >= 10'000) {
      refresh_logged_at_ = clock_.Now();
      spdlog::error("hub.refresh_failed error=\"{}\"", SafeText(s.ToString()));
    }
    return;
  }
  std::set<std::string> seen;
  for (auto& s : list) {
    seen.insert(s.name);
    std::string name = s.name;
    AdoptStored(name, std::move(s), out);
  }
  std::vector<std::string> gone;
  for (const auto& [name, rec] : sites_) {
    if (!seen.count(name)) gone.push_back(name);
  }
  for (const auto& name : gone) AdoptStored(name, std::nullopt, out);
  if (!ReloadDefs().ok()) refresh_pending_ = true;
  LoadPolicy().IgnoreError();
  ReloadArtifacts().IgnoreError();
  run_cache_.Clear();
}

Status HubCore::ReloadDefs() {
  std::vector<WorkflowRecord> list;
  OUTPOST_RETURN_IF_ERROR(store_->LoadDefs(&list));
  defs_.clear();
  for (auto& d : list) defs_[d.name] = std::move(d);
  return Status::Ok();
}

Status HubCore::ReloadArtifacts() {
  std::vector<ArtifactRecord> list;
  OUTPOST_RETURN_IF_ERROR(store_->LoadArtifacts(&list));
  for (auto& a : list) artifacts_[a.digest] = std::move(a);
  return Status::Ok();
}

void HubCore::OnStoreChanges(HubOutput* out) {
  std::vector<std::string> changes;
  if (Status s = store_->TakeChanges(&changes); !s.ok()) {
    // Asked every round while the store is away: logged once every 10 s.
    if (clock_.Now() - changes_logged_at_ >= 10'000) {
      changes_logged_at_ = clock_.Now();
      spdlog::warn("hub.store_changes_failed error=\"{}\"", SafeText(s.ToString()));
    }
  }
  bool defs = false, policy = false, arts = false;
  for (const auto& c : changes) {
    if (c == "*") return RefreshFromStore(out);
    if (c.rfind("site/", 0) == 0) {
      if (Status s = RereadSite(c.substr(5), out); !s.ok()) refresh_pending_ = true;
    } else if (c.rfind("down/", 0) == 0) {
      // Commands enqueued through another hub process: sent at once if the site is here.
      const std::string name = c.substr(5);
      auto it = sites_.find(name);
      if (it == sites_.end()) continue;
      const uint64_t before = it->second.down_head;
      heads_dirty_.insert(name);
      FreshenDownHead(name);
      if (it->second.down_head > before) PokeSites({name}, out);
    } else if (c == "defs") {
      defs = true;
    } else if (c == "policy") {
      policy = true;
    } else if (c == "artifacts") {
      arts = true;
    }
  }
  if (defs && !ReloadDefs().ok()) refresh_pending_ = true;
  if (policy) LoadPolicy().IgnoreError();
  if (arts) ReloadArtifacts().IgnoreError();
}

void HubCore::Emit(const std::string& site, const SyncOutput& so, HubOutput* out) {
  deadline_dirty_.insert(site);  // the session was just touched: its timers may have moved
  Conn* c = ConnFor(site);
  if (!c) return;
  for (const auto& m : so.send) out->send.push_back({c->peer, m});
  if (so.disconnect) {
    if (!so.disconnect_reason.empty() && so.tell_peer) {
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
  // After a failed sync the watermarks held here are ahead of the disk: nothing more is
  // applied or said (a gap or a duplicate would be answered with an ACK of them) until
  // the driver reopens the store and the core.
  if (sync_failed_) return;
  HandleSiteFrame(identity, peer, payload, out);
  if (!holding()) return;
  // Held until the group's sync, in order: the ACKs of its batches, and whatever else
  // was said after them.
  for (auto& f : out->send) held_.push_back(std::move(f));
  out->send.clear();
  if (unsynced_batches_ >= options_.group_commit) Flush(out).IgnoreError();
}

Status HubCore::Flush(HubOutput* out) {
  if (sync_failed_) return Status::Unavailable("a sync of the hub store failed; it is reopened");
  if (!holding()) return Status::Ok();
  const uint64_t batches = std::exchange(unsynced_batches_, 0);
  Status s = store_->SyncDeferred();
  if (!s.ok()) {
    sync_failed_ = true;
    ++counters_.store_errors;
    spdlog::error("hub.group_sync_failed batches={} held_frames={} error=\"{}\" (none of them "
                  "is acknowledged: the sites send them again; the store is reopened)",
                  batches, held_.size(), SafeText(s.message()));
    held_.clear();
    return s;
  }
  ++counters_.group_syncs;
  counters_.group_batches += batches;
  for (auto& f : held_) out->send.push_back(std::move(f));
  held_.clear();
  return Status::Ok();
}

void HubCore::HandleSiteFrame(const std::string& identity, const std::string& peer,
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
                 SafeText(s.message()));
    if (Conn* c = ConnFor(identity); c && c->peer == peer) Drop(identity, "malformed frame");
    refuse("malformed frame: " + s.message());
    return;
  }
  site->last_seen = clock_.Now();
  // The boundary: no exception from the session or the store reaches the driver. One that
  // escapes is a bug: counted, the session dropped, the site told, and the hub goes on.
  try {
    if (m.type() == MsgType::kHello && store_->shared() && !faults_.apply_without_cas) {
      // Another hub process may have applied this site's events or enqueued commands
      // since this one last read its record: the session starts from what is stored.
      if (Status st = RereadSite(identity, out); !st.ok()) {
        ++counters_.store_errors;
        refuse("the hub could not read this site's record: " + st.message());
        return;
      }
      site = FindSite(identity);
      if (!site || site->site_state() != SiteState::kEnrolled) {
        refuse("site '" + identity + "' is not enrolled at this hub");
        return;
      }
      site->last_seen = clock_.Now();
    }
    FreshenDownHead(identity);
    Handle(identity, peer, m, out);
    if (sessions_lost_.erase(identity)) {
      ++counters_.sessions_taken_over;
      Drop(identity, "another hub process applied this site's events", false);
      refuse("another hub process holds this site's session; reconnect");
    }
  } catch (const std::exception& e) {
    ++counters_.frame_exceptions;
    spdlog::error("hub.frame_exception site={} type={} error=\"{}\"", identity,
                  MsgTypeName(m.t), SafeText(e.what()));
    if (Conn* c = ConnFor(identity); c && c->peer == peer) Drop(identity, "internal error");
    refuse("the hub could not handle this frame (internal error); reconnect and retry");
  }
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
  copy.retired.push_back(copy.incarnation);
  if (copy.retired.size() > kMaxRetiredIncarnations) copy.retired.erase(copy.retired.begin());
  copy.incarnation = incarnation;
  copy.up_applied = 0;
  copy.up_head = 0;
  copy.down_epoch = incarnation;
  copy.down_head = 0;
  copy.down_acked = 0;
  copy.placed.clear();  // the new database has none of them
  copy.policy_sent = 0;
  Reconcile(copy, &txn);
  for (const auto& c : carry) Enqueue(copy, c, &txn);
  txn.PutSite(copy);
  OUTPOST_RETURN_IF_ERROR(CommitTxn(txn));
  site = std::move(copy);
  return Status::Ok();
}

void HubCore::Handle(const std::string& site_name, const std::string& peer, const Message& m,
                     HubOutput* out) {
  SiteRecord& site = sites_.at(site_name);
  if (m.type() == MsgType::kHello) {
    if (std::find(site.retired.begin(), site.retired.end(), m.incarnation) !=
        site.retired.end()) {
      return RefuseRetired(site, peer, m.incarnation, out);
    }
    // A HELLO opens a new session, whatever state the old one was in.
    if (site.incarnation == 0) {
      SiteRecord copy = site;
      copy.incarnation = m.incarnation;
      HubStore::Txn txn;
      txn.PutSite(copy);
      if (Status s = CommitTxn(txn); !s.ok()) {
        CountStoreFailure(s);
        return;  // no WELCOME: the site says HELLO again later
      }
      site = std::move(copy);
    } else if (site.incarnation != m.incarnation && !faults_.ignore_incarnation) {
      if (Status s = NewIncarnation(site, m.incarnation); !s.ok()) {
        ++counters_.store_errors;
        spdlog::error("hub.new_incarnation_failed site={} error=\"{}\"", site_name, s.ToString());
        return;
      }
    }
    // A hub restored from a backup (docs/protocol.md): a site that has not reconciled with
    // this epoch may be ahead of the store; one that has seen a newer epoch proves this
    // store is an old copy.
    bool accept_trimmed = false;
    if (m.hub_epoch > hub_epoch_) return RefuseStaleHub(site, peer, m.hub_epoch, out);
    if (m.hub_epoch < hub_epoch_) {
      if (site.epoch_confirmed < hub_epoch_) {
        if (Status s = ReconcileRestore(site, m.down_applied); !s.ok()) {
          ++counters_.store_errors;
          spdlog::error("hub.restore_reconcile_failed site={} error=\"{}\"", site_name,
                        s.ToString());
          return;  // no WELCOME: the site says HELLO again later
        }
      }
      accept_trimmed = true;
    }
    if (!accept_trimmed) {
      // A site ahead of this store: it applied commands this store never had, or another
      // command under a number this store has (a backup put back without
      // --declare-restored, and the restored hub's log grew to that number since).
      std::string why;
      if (m.down_applied > site.down_head) {
        why = "the site applied commands through " + std::to_string(m.down_applied) +
              " but this hub's command log for it ends at " + std::to_string(site.down_head);
      } else if (m.down_digest != 0 && m.down_applied > site.down_acked) {
        auto mine = store_->ReadDown(site_name, site.down_epoch, m.down_applied - 1, 1, SIZE_MAX);
        if (!mine.ok()) {
          ++counters_.store_errors;
          return;  // no WELCOME: the site says HELLO again later
        }
        if (!mine->empty() && mine->front().seq == m.down_applied &&
            CommandDigest(mine->front().payload) != m.down_digest) {
          why = "the site applied a different command " + std::to_string(m.down_applied) +
                " than this hub's";
        }
      }
      if (!why.empty()) return RefuseAhead(site, peer, why, m, out);
    }
    const bool was_online = online_here(site_name);
    auto c = std::make_unique<Conn>();
    c->peer = peer;
    c->up = std::make_unique<Upstream>(this, site_name);
    c->down = std::make_unique<Downstream>(this, site_name);
    c->session = std::make_unique<SyncSession>(SyncSession::Role::kHub, clock_, options_.sync,
                                               c->down.get(), c->up.get(), "", 0, faults_);
    c->session->set_hub_epoch(hub_epoch_, accept_trimmed);
    conns_[site_name] = std::move(c);
    Conn* conn = conns_[site_name].get();
    SyncOutput so;
    conn->session->OnConnected(&so);
    conn->session->OnMessage(m, &so);
    Account(SyncCounters{}, conn->session->counters());
    // The head a site reports counts only once its HELLO was accepted.
    if (conn->session->established()) site.up_head = std::max(site.up_head, m.up_head);
    if (conn->session->established()) ++counters_.handshakes;
    if (!was_online && conn->session->established()) {
      // Written with the other sites that came online in this round (Tick): after a hub
      // restart 10,000 sites come back at once, and a synced write each was most of the
      // hub's time per handshake. The record itself needs no write here (up_head is
      // stored with the site's next batch).
      Audit(&deferred_audit_, {{"event", "site.online"},
                               {"site", site_name},
                               {"events_behind", site.up_head - site.up_applied},
                               {"commands_behind", site.down_head - m.down_applied}});
      spdlog::info("hub.site_online site={} incarnation={:016x} events_behind={} commands_behind={}",
                   site_name, site.incarnation, site.up_head - site.up_applied,
                   site.down_head - m.down_applied);
    }
    Emit(site_name, so, out);
    return;
  }
  Conn* conn = ConnFor(site_name);
  if (m.type() == MsgType::kArtifactGet && conn && conn->peer == peer && conn->session->established()) {
    return ServeArtifact(site_name, peer, m, out);
  }
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
  const SyncCounters before = conn->session->counters();
  conn->session->OnMessage(m, &so);
  Account(before, conn->session->counters());
  Emit(site_name, so, out);
}

void HubCore::Account(const SyncCounters& before, const SyncCounters& after) {
  counters_.duplicates_dropped += after.duplicates_dropped - before.duplicates_dropped;
  counters_.gaps_refused += after.gaps_refused - before.gaps_refused;
  counters_.protocol_errors += after.protocol_errors - before.protocol_errors;
}

void HubCore::RefuseRetired(SiteRecord& site, const std::string& peer, uint64_t incarnation,
                            HubOutput* out) {
  // A site restored from an old disk image (or an old backup) speaks for a history the hub
  // has replaced: applying it again would duplicate events. Refused, recorded, never merged.
  ++counters_.stale_incarnations;
  char inc[20];
  snprintf(inc, sizeof inc, "%016llx", static_cast<unsigned long long>(incarnation));
  HubStore::Txn txn;
  Audit(&txn, {{"event", "site.stale_incarnation"}, {"site", site.name}, {"incarnation", inc}});
  if (Status s = CommitTxn(txn); !s.ok()) CountStoreFailure(s);
  spdlog::warn("hub.stale_incarnation site={} incarnation={}", site.name, inc);
  Message err;
  err.t = static_cast<uint8_t>(MsgType::kError);
  err.message = std::string("incarnation ") + inc + " of site '" + site.name +
                "' was replaced by a newer one; this database is an old copy. Move it away so "
                "the agent starts a new incarnation, or remove and re-add the site";
  out->send.push_back({peer, err});
  if (Conn* c = ConnFor(site.name); c && c->peer == peer) Drop(site.name, "stale incarnation");
}

Result<uint64_t> HubCore::DeclareRestored() {
  // The epoch is the declaration's time (or one more than the last): a later restore of an
  // even older copy, declared later, still gets a newer epoch than any site has seen.
  const uint64_t epoch = std::max<uint64_t>(hub_epoch_ + 1, static_cast<uint64_t>(clock_.Now()));
  HubStore::Txn txn;
  txn.PutSetting("hub_epoch", std::to_string(epoch));
  Audit(&txn, {{"event", "hub.restored"}, {"epoch", epoch}, {"sites", sites_.size()}});
  OUTPOST_RETURN_IF_ERROR(CommitTxn(txn));
  hub_epoch_ = epoch;
  spdlog::warn("hub.restored epoch={} sites={}", epoch, sites_.size());
  return epoch;
}

Status HubCore::ReconcileRestore(SiteRecord& site, uint64_t site_applied) {
  SiteRecord copy = site;
  HubStore::Txn txn;
  uint64_t adopted = 0, resent = 0;
  if (faults_.restore_reuses_commands && site_applied > copy.down_acked) {
    // The planted bug (common/faults.h): the watermark adopted, nothing moved.
    adopted = site_applied - copy.down_acked;
    copy.down_head = std::max(copy.down_head, site_applied);
    copy.down_acked = site_applied;
  } else if (site_applied > copy.down_acked) {
    // The site applied commands through site_applied from the hub that was lost; this
    // store's log past down_acked is not what it applied (the backup's unacknowledged
    // tail, and whatever was enqueued since the restore, declared or not). Every one of
    // those is sent again after site_applied, in a new downstream log, so no sequence
    // number means two commands. Applying one the site already has is harmless: starts are
    // deduplicated by run id, placements by hash, cancels and approvals of a decided run
    // are no-ops, and policies only move forward.
    OUTPOST_ASSIGN_OR_RETURN(auto tail, store_->ReadDown(copy.name, copy.down_epoch,
                                                         copy.down_acked, SIZE_MAX, SIZE_MAX));
    txn.TrimDown(copy.name, copy.down_epoch, copy.down_head);
    copy.down_epoch = rng_->Next();
    adopted = site_applied - copy.down_acked;
    uint64_t seq = site_applied;
    for (const auto& r : tail) txn.PutDown(copy.name, copy.down_epoch, ++seq, r.payload);
    resent = tail.size();
    copy.down_acked = site_applied;
    copy.down_head = seq;
  }
  copy.epoch_confirmed = hub_epoch_;
  Audit(&txn, {{"event", "site.restore_reconciled"},
               {"site", copy.name},
               {"epoch", hub_epoch_},
               {"site_applied", site_applied},
               {"commands_adopted", adopted},
               {"commands_resent", resent}});
  txn.PutSite(copy);
  OUTPOST_RETURN_IF_ERROR(CommitTxn(txn));
  spdlog::warn("hub.restore_reconciled site={} site_applied={} commands_adopted={} commands_resent={}",
               copy.name, site_applied, adopted, resent);
  counters_.commands_adopted_in_restore += adopted;
  site = std::move(copy);
  return Status::Ok();
}

void HubCore::RefuseAhead(SiteRecord& site, const std::string& peer, const std::string& why,
                          const Message& hello, HubOutput* out) {
  ++counters_.sites_ahead;
  const std::string hint =
      ": the hub's store is older than what the site has seen (restored from a backup? stop "
      "the hub and run outpost-hub --declare-restored)";
  if (stale_noted_.insert(site.name).second) {
    spdlog::error("hub.behind_site site={} site_applied={} hub_head={} why=\"{}{}\"", site.name,
                  hello.down_applied, site.down_head, why, hint);
    HubStore::Txn txn;
    Audit(&txn, {{"event", "hub.behind_site"},
                 {"site", site.name},
                 {"site_applied", hello.down_applied},
                 {"hub_head", site.down_head},
                 {"why", why}});
    if (Status s = CommitTxn(txn); !s.ok()) CountStoreFailure(s);
  }
  Message err;
  err.t = static_cast<uint8_t>(MsgType::kError);
  err.message = why + hint;
  out->send.push_back({peer, err});
  // A HELLO opens a new session: the old one, on whatever connection, is over.
  if (ConnFor(site.name)) Drop(site.name, "site ahead of this store");
}

void HubCore::RefuseStaleHub(SiteRecord& site, const std::string& peer, uint64_t site_epoch,
                             HubOutput* out) {
  ++counters_.stale_hub_refusals;
  if (stale_noted_.insert(site.name).second) {
    spdlog::error("hub.stale_copy site={} site_epoch={} hub_epoch={}", site.name, site_epoch,
                  hub_epoch_);
    HubStore::Txn txn;
    Audit(&txn, {{"event", "hub.stale_copy"},
                 {"site", site.name},
                 {"site_epoch", site_epoch},
                 {"hub_epoch", hub_epoch_}});
    if (Status s = CommitTxn(txn); !s.ok()) CountStoreFailure(s);
  }
  Message err;
  err.t = static_cast<uint8_t>(MsgType::kError);
  err.message = "site '" + site.name + "' has reconciled with hub epoch " +
                std::to_string(site_epoch) + ", newer than this hub's " +
                std::to_string(hub_epoch_) +
                ": the hub store is an old copy. Stop the hub and run outpost-hub "
                "--declare-restored on it (docs/operations.md)";
  out->send.push_back({peer, err});
  if (ConnFor(site.name)) Drop(site.name, "stale hub copy");
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
  if (!Flush(out).ok()) return;  // a failed sync: the driver reopens the store (write_failed)
  FlushDeferredAudit();
  FreshenDownHeads();
  if (refresh_pending_) RefreshFromStore(out);
  if (store_->shared()) ExchangePresence();
  if (store_->shared() && clock_.Now() - counts_read_at_ >= 5000) {
    // Every process's runs, counted by the store (at most every 5 s).
    counts_read_at_ = clock_.Now();
    auto counts = store_->CountRunsByState();
    if (counts.ok() && *counts) run_counts_ = std::move(**counts);
  }
  if (!deferred_.empty() && clock_.Now() - deferred_since_ >= 1000) {
    // faults_.ack_before_durable: a lazy group commit, a second after the ACKs went out.
    auto deferred = std::move(deferred_);
    deferred_.clear();
    for (auto& [site, batch] : deferred) {
      Upstream(this, site).ApplyDurably(batch.first, batch.second).IgnoreError();
    }
  }
  // Only sessions with a timer due are ticked (a hub holds thousands of idle sessions).
  const TimeMs now = clock_.Now();
  if (now >= housekeep_at_) {
    housekeep_at_ = now + options_.retention.check_ms;
    Housekeep();
  }
  RefreshDeadlines();
  std::vector<std::string> names;
  for (auto it = deadlines_.begin(); it != deadlines_.end() && it->first <= now; ++it) {
    names.push_back(it->second);
  }
  for (const auto& site : names) {
    Conn* c = ConnFor(site);
    if (!c) continue;  // dropped: Drop marked it, the next refresh removes its entry
    SyncOutput so;
    c->session->Tick(&so);
    Emit(site, so, out);
  }
  Flush(out).IgnoreError();  // anything applied above (a failure leaves write_failed set)
}

void HubCore::RefreshDeadlines() const {
  for (const auto& site : deadline_dirty_) {
    if (auto old = deadline_at_.find(site); old != deadline_at_.end()) {
      deadlines_.erase({old->second, site});
      deadline_at_.erase(old);
    }
    auto c = conns_.find(site);
    if (c == conns_.end()) continue;
    const TimeMs d = c->second->session->NextDeadline();
    if (d > 0) {
      deadlines_.insert({d, site});
      deadline_at_[site] = d;
    }
  }
  deadline_dirty_.clear();
}

TimeMs HubCore::NextDeadline() const {
  TimeMs best = deferred_.empty() ? 0 : deferred_since_ + 1000;
  if (options_.retention.max_age > 0 || options_.retention.max_bytes > 0) {
    if (best == 0 || housekeep_at_ < best) best = std::max<TimeMs>(housekeep_at_, 1);
  }
  RefreshDeadlines();
  if (!deadlines_.empty() && (best == 0 || deadlines_.begin()->first < best)) {
    best = deadlines_.begin()->first;
  }
  return best;
}

Status HubCore::MaterializeEvent(const std::string& site, uint64_t seq, const Event& e,
                                 std::map<std::string, HotRun>* runs, HubStore::Txn* txn) {
  if (e.run.empty()) return Status::Ok();
  if (e.run.find('\0') != std::string::npos) {
    // Run ids are "<site>-<ULID>"; a NUL would run into the store's keys for other runs
    // (RocksHubStore's task rows). Kept raw in the copy of the log, left out of the view.
    ++counters_.events_undecodable;
    spdlog::warn("hub.event_bad_run_id site={} seq={} (a run id with a NUL byte)", site, seq);
    return Status::Ok();
  }
  auto it = runs->find(e.run);
  if (it == runs->end()) {
    std::optional<HotRun> hot = run_cache_.Take(e.run);
    if (!hot) {
      hot.emplace();
      auto got = store_->GetRun(e.run);
      if (got.ok() && *got) {
        hot->run = std::move(**got);
        hot->existed = true;
        hot->state_before = hot->run.state;
      } else if (!got.ok() && got.status().code() != Code::kCorruption) {
        // The store could not be read: the batch waits (nothing is acknowledged) rather
        // than fold into a run it cannot see.
        return got.status().WithContext("read run " + e.run);
      } else {
        if (!got.ok()) {
          // A stored run that does not decode is replaced by what its events say.
          ++counters_.events_undecodable;
          spdlog::error("hub.run_record_unreadable run={} error=\"{}\" (rebuilt from its events)",
                        e.run, got.status().message());
        }
        hot->run.id = e.run;
        hot->run.site = site;
        hot->run.created = e.time;
      }
    }
    it = runs->emplace(e.run, std::move(*hot)).first;
  }
  HubRun& run = it->second.run;
  if (run.site != site) {
    ++counters_.events_undecodable;
    spdlog::warn("hub.event_foreign_run site={} seq={} run={} owner={}", site, seq, e.run,
                 run.site);
    return Status::Ok();
  }
  if (faults_.run_view_drops_run_end && e.type == static_cast<uint8_t>(EventType::kRunFinished)) {
    return Status::Ok();  // planted bug (common/faults.h)
  }
  FoldEvent(e, &run, txn, &it->second.task_index, &it->second.changed);
  return Status::Ok();
}

Result<std::optional<HubRun>> HubCore::ReadRun(const std::string& id) const {
  if (const HotRun* hot = run_cache_.Peek(id)) return std::optional<HubRun>(hot->run);
  return store_->GetRun(id);
}

std::map<std::string, uint64_t> HubCore::CountRuns(const std::map<std::string, int64_t>& delta,
                                                   HubStore::Txn* txn) const {
  std::map<std::string, uint64_t> next = run_counts_;
  bool changed = false;
  for (const auto& [state, d] : delta) {
    if (d == 0) continue;
    changed = true;
    uint64_t& n = next[state];
    // Never below zero, whatever a store written by an older hub says.
    n = d < 0 && static_cast<uint64_t>(-d) > n ? 0 : n + static_cast<uint64_t>(d);
    if (n == 0) next.erase(state);
  }
  // A store shared by several hub processes counts its runs itself (CountRunsByState).
  if (changed && !store_->shared()) txn->PutSetting("run_counts", Encode(next));
  return next;
}

Status HubCore::LoadRunCounts() {
  OUTPOST_ASSIGN_OR_RETURN(auto counted, store_->CountRunsByState());
  if (counted) {
    run_counts_ = std::move(*counted);
    counts_read_at_ = clock_.Now();
    return Status::Ok();
  }
  OUTPOST_ASSIGN_OR_RETURN(auto stored, store_->GetSetting("run_counts"));
  if (stored) {
    if (Status s = Decode(*stored, &run_counts_); !s.ok()) {
      return Status::Corruption("hub store: setting run_counts: " + s.message());
    }
    return Status::Ok();
  }
  // A store from before the counts were kept: counted once, and kept from now on.
  run_counts_.clear();
  OUTPOST_RETURN_IF_ERROR(store_->ScanRuns([&](const HubRun& r) {
    ++run_counts_[r.state];
    return true;
  }));
  if (run_counts_.empty()) return Status::Ok();
  HubStore::Txn txn;
  txn.PutSetting("run_counts", Encode(run_counts_));
  return CommitTxn(txn);
}
}  // namespace outpost
