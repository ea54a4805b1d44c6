// HubCore's placement: the command log of each site, the workflow definitions placed on
// sites by label selector, and the fleet policy handed to every site before them. Reconcile computes the place/remove commands that bring a
// site in line with the applied definitions; every change to a definition, a site's
// labels or its enrollment goes through it.
#include "hub/hub_core.h"

#include <spdlog/spdlog.h>

#include "common/trust.h"
#include "common/workflow/workflow.h"
#include "common/labels.h"
#include "common/json_fields.h"
#include "hub/site_streams.h"

namespace outpost {

using json = nlohmann::json;

void HubCore::Enqueue(SiteRecord& site, const Command& c, HubStore::Txn* txn) {
  deadline_dirty_.insert(site.name);  // its session's timers may depend on the log's head
  ++counters_.commands_enqueued;
  if (store_->allocates_commands()) {
    // Several hubs: the store numbers the command; the site's record is not written for it
    // (so enqueueing never collides with the session applying the site's events).
    txn->AppendDown(site.name, site.down_epoch, EncodeCommand(c));
    heads_dirty_.insert(site.name);
    return;
  }
  const uint64_t seq = site.down_head + 1;
  txn->PutDown(site.name, site.down_epoch, seq, EncodeCommand(c));
  site.down_head = seq;
}

void HubCore::Reconcile(SiteRecord& site, HubStore::Txn* txn) {
  if (site.site_state() != SiteState::kEnrolled) return;
  // The fleet policy first: a site checks the placements after it against it.
  if (policy_ && site.policy_sent != policy_version_) {
    Command c;
    c.type = static_cast<uint8_t>(CommandType::kSetPolicy);
    c.time = clock_.Now();
    c.grant = policy_->body;
    c.signer = policy_->signer;
    c.sig = policy_->sig;
    Enqueue(site, c, txn);
    site.policy_sent = policy_version_;
  }
  for (const auto& [name, d] : defs_) {
    const bool match = SelectorMatches(d.target, site.labels);
    auto placed = site.placed.find(name);
    if (match && (placed == site.placed.end() || placed->second != d.placed_tag())) {
      Command c;
      c.type = static_cast<uint8_t>(CommandType::kPlaceWorkflow);
      c.time = clock_.Now();
      c.workflow = name;
      c.source = d.source;
      c.hash = d.hash;
      c.author = d.author;
      c.grant = d.grant;
      c.signer = d.signer;
      c.sig = d.sig;
      Enqueue(site, c, txn);
      site.placed[name] = d.placed_tag();
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

std::map<std::string, SiteRecord> HubCore::ReconcileAll(HubStore::Txn* txn) {
  std::map<std::string, SiteRecord> changed;
  for (const auto& [name, site] : sites_) {
    SiteRecord copy = site;
    const size_t before = txn->size();
    Reconcile(copy, txn);
    if (txn->size() != before) changed[name] = std::move(copy);  // commands were enqueued
  }
  return changed;
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

json HubCore::OpWorkflowApply(const std::string& who, const OperatorRequest& r,
                                HubOutput* out) {
  const std::string file = r.file.empty() ? "<request>" : r.file;
  auto def = ParseWorkflow(r.source, file);
  if (!def.ok()) return Error(def.status());
  const std::map<std::string, std::string>& target = r.target;
  for (const auto& [k, v] : target) {
    if (!ValidLabel(k) || !ValidLabel(v)) return Error("target '" + k + "=" + v + "' is not valid");
  }
  // A site can only run with what it can fetch: every artifact named is at the hub.
  for (const auto& [name, digest] : def->artifacts) {
    if (!artifacts_.count(digest)) {
      return Error(file + ": artifact '" + name + "' (" + digest +
                       ") is not at the hub: outpostctl artifact push FILE first",
                   "not_found");
    }
  }
  WorkflowRecord d;
  d.name = def->name;
  d.source = def->source;
  d.hash = def->hash;
  d.target = target;
  d.applied = clock_.Now();
  d.author = who;
  if (r.signed_stmt) {
    // The hub checks what it can (a well-formed statement for this very definition) so an
    // operator hears of a mistake now; the sites check the signature against their policy.
    const Signed& st = *r.signed_stmt;
    if (Status v = VerifySignature(st); !v.ok()) return Error(v);
    auto g = ParseGrant(st.body);
    if (!g.ok()) return Error(g.status().WithContext("signed"));
    if (g->kind != "apply" || g->workflow != d.name || g->digest != ContentDigest(d.source)) {
      return Error("the signed statement is not an apply of this definition of '" + d.name + "'");
    }
    d.grant = st.body;
    d.signer = st.signer;
    d.sig = st.sig;
  }
  auto prev = defs_.find(d.name);
  const bool unchanged = prev != defs_.end() && prev->second.placed_tag() == d.placed_tag() &&
                         prev->second.target == d.target;
  std::optional<WorkflowRecord> old;
  if (prev != defs_.end()) old = prev->second;
  defs_[d.name] = d;  // Reconcile reads defs_
  HubStore::Txn txn;
  txn.PutDef(d);
  std::map<std::string, SiteRecord> changed = ReconcileAll(&txn);
  json placed = json::array();
  for (const auto& [name, s] : sites_) {
    auto c = changed.find(name);
    if ((c == changed.end() ? s : c->second).placed.count(d.name)) placed.push_back(name);
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

json HubCore::OpWorkflowRemove(const OperatorRequest& r, HubOutput* out) {
  const std::string& name = r.name;
  auto it = defs_.find(name);
  if (it == defs_.end()) return Error("no workflow named '" + name + "'", "not_found");
  WorkflowRecord old = it->second;
  defs_.erase(it);
  HubStore::Txn txn;
  txn.DeleteDef(name);
  std::map<std::string, SiteRecord> changed = ReconcileAll(&txn);
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

// The fleet policy (docs/security.md): the hub keeps the newest one pushed and hands it
// to every enrolled site through Reconcile, before any placement.
Status HubCore::LoadPolicy() {
  OUTPOST_ASSIGN_OR_RETURN(auto raw, store_->GetSetting("policy"));
  if (!raw) return Status::Ok();
  Signed s;
  auto j = nlohmann::json::parse(*raw, nullptr, false);
  auto got = SignedFromJson(j, "stored policy");
  if (!got.ok()) return got.status();
  auto p = ParsePolicy(got->body);
  if (!p.ok()) return p.status().WithContext("stored policy");
  policy_ = std::move(got).value();
  policy_version_ = p->version;
  return Status::Ok();
}

json HubCore::OpPolicyPush(const std::string& who, const OperatorRequest& r, HubOutput* out) {
  const Signed& s = *r.policy;
  // The hub is not the root of trust: it checks that this is a well-formed policy so a
  // mistake is heard now, and that it is not older than the one it hands out; each site
  // verifies the root's signature itself.
  if (Status v = VerifySignature(s); !v.ok()) return Error(v);
  if (!options_.trust_root.empty() && s.signer != options_.trust_root) {
    return Error("the policy is signed by " + s.signer + ", not by the fleet root " +
                     options_.trust_root + " (trust-root in hub.conf); sign it with the root key",
                 "forbidden");
  }
  if (options_.trust_root.empty() && policy_ && s.signer != policy_->signer) {
    return Error("the policy is signed by " + s.signer + ", but the policies pushed so far are "
                     "signed by " + policy_->signer + "; to change the fleet root, set "
                     "trust-root in hub.conf to the new root",
                 "conflict");
  }
  auto p = ParsePolicy(s.body);
  if (!p.ok()) return Error(p.status());
  if (p->expires <= clock_.Now()) {
    return Error("policy v" + std::to_string(p->version) + " expired at " + FormatTime(p->expires) +
                     "; sites would refuse it (sign it again with a later --expires)",
                 "conflict");
  }
  if (policy_ && p->version < policy_version_) {
    return Error("policy v" + std::to_string(p->version) + " is older than v" +
                     std::to_string(policy_version_) + " already pushed",
                 "conflict");
  }
  if (policy_ && p->version == policy_version_) {
    if (policy_->body == s.body && policy_->sig == s.sig) {
      return {{"ok", true}, {"version", p->version}, {"unchanged", true}};
    }
    return Error("another policy v" + std::to_string(p->version) + " was already pushed; sign a "
                     "higher version",
                 "conflict");
  }
  const std::optional<Signed> old = policy_;
  const int64_t old_version = policy_version_;
  policy_ = s;
  policy_version_ = p->version;
  HubStore::Txn txn;
  txn.PutSetting("policy", SafeDump(SignedToJson(s)));
  std::map<std::string, SiteRecord> changed = ReconcileAll(&txn);
  Audit(&txn, {{"event", "policy.pushed"},
               {"fleet", p->fleet},
               {"version", p->version},
               {"signer", s.signer},
               {"author", who}});
  if (Status st = CommitSites(txn, changed); !st.ok()) {
    policy_ = old;
    policy_version_ = old_version;
    return Error(st);
  }
  std::vector<std::string> poke;
  for (const auto& [name, site] : changed) poke.push_back(name);
  spdlog::info("hub.policy_pushed fleet={} version={} sites={}", p->fleet, p->version, poke.size());
  PokeSites(poke, out);
  return {{"ok", true}, {"version", p->version}, {"fleet", p->fleet}, {"sites", poke.size()},
          {"unchanged", false}};
}

json HubCore::OpPolicyShow() const {
  if (!policy_) return {{"ok", true}, {"policy", nullptr}};
  json sites = json::object();
  for (const auto& [name, s] : sites_) {
    if (s.site_state() == SiteState::kEnrolled) sites[name] = s.policy_sent;
  }
  json status = json::object();
  for (const auto& [name, s] : sites_) {
    if (s.site_state() == SiteState::kEnrolled) status[name] = s.policy_status;
  }
  return {{"ok", true},
          {"policy", SignedToJson(*policy_)},
          {"version", policy_version_},
          {"queued_to", sites},
          {"site_status", status}};
}

}  // namespace outpost
