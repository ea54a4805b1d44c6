// HubCore's site registry: admitting keys at the handshake (ZAP), enrolling, accepting,
// revoking and labelling sites, and committing changed site records.
#include "hub/hub_core.h"

#include <spdlog/spdlog.h>

#include "common/json_fields.h"
#include "common/keys.h"
#include "common/workflow/workflow.h"
#include "common/labels.h"
#include "hub/run_view.h"
#include "hub/site_streams.h"

namespace outpost {

using json = nlohmann::json;

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
    LogUnknownKey(key, "unknown_key");
    return std::nullopt;
  }
  size_t pending = 0;
  for (const auto& [name, site] : sites_) pending += site.site_state() == SiteState::kPending;
  if (pending >= options_.max_pending) {
    // A flood of unknown keys must not grow the registry without bound.
    ++counters_.pending_refused;
    LogUnknownKey(key, "pending_sites_full");
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
  if (Status st = CommitTxn(txn); !st.ok()) {
    CountStoreFailure(st);
    spdlog::error("hub.pending_record_failed error=\"{}\"", st.ToString());
    return std::nullopt;
  }
  spdlog::info("hub.site_pending site={} key={} (accept with: outpostctl site accept {})", s.name,
               key, s.name);
  by_key_[key] = s.name;
  sites_[s.name] = std::move(s);
  return std::nullopt;
}

// Unknown keys are logged at most once a second, with how many were not logged since: a
// scan of the site port must not flood the log.
void HubCore::LogUnknownKey(const std::string& key, const char* reason) {
  const TimeMs now = clock_.Now();
  if (now - unknown_logged_at_ < 1000) {
    ++unknown_suppressed_;
    return;
  }
  spdlog::warn("hub.key_refused reason={} key={} not_logged_since_last={}", reason,
               SafeText(key, 64), unknown_suppressed_);
  unknown_logged_at_ = now;
  unknown_suppressed_ = 0;
}

Status HubCore::CommitSites(HubStore::Txn& txn, std::map<std::string, SiteRecord>& changed) {
  for (auto& [name, s] : changed) {
    // Only commands appended (numbered by the store): the record itself did not change.
    if (store_->allocates_commands()) {
      auto held = sites_.find(name);
      if (held != sites_.end() && Encode(held->second) == Encode(s)) continue;
    }
    txn.PutSite(s);
  }
  Status s = CommitTxn(txn);
  if (!s.ok()) {
    CountStoreFailure(s);
    return s;
  }
  for (auto& [name, rec] : changed) {
    by_key_[rec.key] = name;
    sites_[name] = std::move(rec);
  }
  FreshenDownHeads();
  return Status::Ok();
}

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
          {"workflows", placed},
          {"refused_workflows", s.refused},
          {"commands_refused", s.commands_refused},
          {"policy", s.policy_status.empty() ? json(nullptr) : json(s.policy_status)},
          {"artifacts", SiteArtifactsJson(s)},
          {"bundles", {{"last_imported", s.bundle_in}, {"last_exported", s.bundle_out}}},
          {"health", s.health_at > 0 ? json{{"at", TimeJson(s.health_at)}, {"summary", s.health}}
                                     : json(nullptr)}};
}

json HubCore::OpSiteAdd(const OperatorRequest& r, HubOutput* out) {
  const std::string& name = r.name;
  const std::string& key = r.key;
  if (!ValidSiteName(name)) {
    return Error("site name '" + name + "' must be 1-63 of a-z, 0-9 and '-' (not at either end)");
  }
  if (!IsZ85Key(key)) return Error("key for site '" + name + "' is not a 40-character Z85 public key");
  const std::map<std::string, std::string>& labels = r.labels;
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
  spdlog::info("hub.site_enrolled site={} labels={}", name, SafeDump(json(labels)));
  PokeSites({name}, out);
  return {{"ok", true}, {"site", SiteJson(sites_.at(name))}};
}

json HubCore::OpSiteAccept(const OperatorRequest& r, HubOutput* out) {
  const std::string& name = r.name;
  SiteRecord* s = FindSite(name);
  if (!s) return Error("no site named '" + name + "'", "not_found");
  if (s->site_state() != SiteState::kPending) {
    return Error("site '" + name + "' is " + SiteStateName(s->site_state()) + ", not pending",
                 "conflict");
  }
  OperatorRequest add;
  add.op = "site.add";
  add.name = r.as.empty() ? name : r.as;
  add.key = s->key;
  add.labels = r.labels;
  if (add.name == name) {
    // Same name: enroll in place.
    const std::map<std::string, std::string>& labels = r.labels;
    for (const auto& [k, v] : labels) {
      if (!ValidLabel(k) || !ValidLabel(v)) return Error("label '" + k + "=" + v + "' is not valid");
    }
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

json HubCore::OpSiteRevoke(const OperatorRequest& r, HubOutput* out) {
  const std::string& name = r.name;
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

json HubCore::OpSiteLabel(const OperatorRequest& r, HubOutput* out) {
  const std::string& name = r.name;
  SiteRecord* s = FindSite(name);
  if (!s) return Error("no site named '" + name + "'", "not_found");
  SiteRecord copy = *s;
  for (const auto& [k, v] : r.set) {
    if (!ValidLabel(k) || !ValidLabel(v)) return Error("label '" + k + "=" + v + "' is not valid");
    copy.labels[k] = v;
  }
  for (const auto& k : r.remove) copy.labels.erase(k);
  HubStore::Txn txn;
  const uint64_t before = copy.down_head;
  Reconcile(copy, &txn);
  Audit(&txn, {{"event", "site.labels"}, {"site", name}, {"labels", copy.labels}});
  std::map<std::string, SiteRecord> changed{{name, copy}};
  if (Status st = CommitSites(txn, changed); !st.ok()) return Error(st);
  PokeSites({name}, out);
  return {{"ok", true}, {"site", SiteJson(sites_.at(name))}, {"commands", copy.down_head - before}};
}

json HubCore::OpSiteRemove(const OperatorRequest& r, HubOutput* out) {
  const std::string& name = r.name;
  SiteRecord* s = FindSite(name);
  if (!s) return Error("no site named '" + name + "'", "not_found");
  if (s->site_state() == SiteState::kEnrolled) {
    return Error("site '" + name + "' is enrolled; revoke it first (outpostctl site revoke " +
                     name + ")",
                 "conflict");
  }
  HubStore::Txn txn;
  txn.DeleteSite(name);
  size_t runs = 0;
  std::map<std::string, int64_t> delta;
  std::vector<std::string> purged;
  if (r.purge) {
    // The site's history goes too: its copies of the event log, its command logs, its runs.
    txn.PurgeSiteStreams(name);
    // Every run the site owns, whatever its id says (a site's events may name any id).
    Status scan = store_->ScanRuns([&](const HubRun& run) {
      if (run.site == name) {
        txn.DeleteRun(run.id);
        purged.push_back(run.id);
        --delta[run.state];
        ++runs;
      }
      return true;
    });
    if (!scan.ok()) return Error(scan);
  }
  Audit(&txn, {{"event", "site.removed"}, {"site", name}, {"purged", r.purge},
               {"runs_purged", runs}});
  std::map<std::string, uint64_t> counts = CountRuns(delta, &txn);
  if (Status st = CommitTxn(txn); !st.ok()) {
    CountStoreFailure(st);
    return Error(st);
  }
  run_counts_ = std::move(counts);
  for (const auto& id : purged) run_cache_.Forget(id);
  Drop(name, "removed");
  by_key_.erase(s->key);
  sites_.erase(name);
  spdlog::warn("hub.site_removed site={} purged={} runs_purged={}", name, r.purge, runs);
  (void)out;
  return {{"ok", true}, {"site", name}, {"purged", r.purge}, {"runs_purged", runs}};
}

}  // namespace outpost
