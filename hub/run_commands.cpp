// HubCore's run commands: starting a workflow on sites (idempotent by request id),
// cancelling a run and deciding an approval gate — each an entry in the site's command
// log, committed with its request record and audit event.
#include "hub/hub_core.h"

#include <spdlog/spdlog.h>

#include "common/trust.h"
#include "common/ulid.h"
#include "common/workflow/workflow.h"
#include "common/labels.h"
#include "common/json_fields.h"
#include "hub/site_streams.h"
#include "hub/run_view.h"

namespace outpost {

using json = nlohmann::json;

namespace {

// A start's own terms, hashed over a length-prefixed encoding (values are operator text,
// any bytes): what a retry with the same request id must repeat. Sealed secrets differ on
// every sealing, so only their names and the sites they were sealed to count; a signed
// statement may be signed again for a retry, so it does not count either.
std::string StartFingerprint(const OperatorRequest& r) {
  std::string b;
  auto put = [&b](std::string_view v) {
    b += std::to_string(v.size());
    b += ':';
    b.append(v);
  };
  put(r.workflow);
  put(r.site);
  b += "target";
  for (const auto& [k, v] : r.target) put(k), put(v);
  b += "params";
  for (const auto& [k, v] : r.params) put(k), put(v);
  b += "priority";
  put(r.priority ? std::to_string(*r.priority) : "none");
  b += "secrets";
  for (const auto& [param, per_site] : r.secrets) {
    put(param);
    for (const auto& [site_key, box] : per_site) put(site_key);
  }
  return HexHash(b);
}

}  // namespace

json HubCore::OpRunStart(const std::string& who, const OperatorRequest& r, HubOutput* out) {
  const std::string& workflow = r.workflow;
  // A retried request is answered from its record first: the runs it made stand even if
  // the workflow was removed since (the simulator's operators found this).
  std::string request = r.request;  // at most kMaxRequestIdBytes (the decoder checked)
  if (request.empty()) request = MakeUlid(clock_.Now(), rng_);
  auto existing = store_->GetRequest(request);
  if (!existing.ok()) return Error(existing.status());
  if (faults_.forget_requests) existing = std::optional<RequestRecord>();  // planted bug
  if (*existing) {
    const RequestRecord& q = **existing;
    if (q.workflow != workflow) {
      return Error("request id '" + request + "' was already used for workflow '" + q.workflow + "'",
                   "conflict");
    }
    if (!q.asked.empty() && q.asked != StartFingerprint(r)) {
      return Error("request id '" + request + "' was already used for another start of '" +
                       workflow + "' (its site, target, params or priority differ): a retry "
                       "must repeat the start, a new start needs a new request id",
                   "conflict");
    }
    return {{"ok", true}, {"request", request}, {"runs", q.runs}, {"sites", q.sites},
            {"duplicate", true}};
  }
  auto d = defs_.find(workflow);
  if (d == defs_.end()) {
    return Error("no workflow named '" + workflow + "' is applied at the hub (outpostctl workflow "
                 "apply FILE --target ...)",
                 "not_found");
  }
  const std::map<std::string, std::string>&params = r.params, &selector = r.target;
  std::optional<Grant> grant;
  if (r.signed_stmt) {
    // Checked here so an operator hears of a mistake now; each site checks it again
    // against its policy, and only the sites it names will run it.
    if (Status v = VerifySignature(*r.signed_stmt); !v.ok()) return Error(v);
    auto g = ParseGrant(r.signed_stmt->body);
    if (!g.ok()) return Error(g.status().WithContext("signed"));
    if (g->kind != "start" || g->workflow != workflow || g->request != request ||
        g->params != params || g->priority != r.priority || g->secrets != r.secrets) {
      return Error("the signed statement is not this start (workflow, request id, params and "
                   "priority must be the signed ones)");
    }
    if (g->digest != ContentDigest(d->second.source)) {
      return Error("workflow '" + workflow + "' at the hub is not the definition you signed "
                   "(apply it again, or sign the one applied)", "conflict");
    }
    grant = std::move(g).value();
  }
  auto def = ParseWorkflow(d->second.source, workflow);
  if (!def.ok()) return Error(def.status());
  // Secret params come sealed, never in clear; the hub's view shows a placeholder.
  std::map<std::string, std::string> given = params;
  for (const auto& pd : def->params) {
    if (!pd.secret) continue;
    if (params.count(pd.name)) {
      return Error("param '" + pd.name + "' of '" + workflow + "' is secret: it is sealed to each "
                   "site by outpostctl and never sent in clear");
    }
    if (r.secrets.count(pd.name)) given[pd.name] = kSecretPlaceholder;
  }
  for (const auto& [param, per_site] : r.secrets) {
    if (!given.count(param) || given.at(param) != kSecretPlaceholder) {
      return Error("workflow '" + workflow + "' has no secret param '" + param + "'");
    }
  }
  auto resolved = def->ResolveParams(given);
  if (!resolved.ok()) return Error(resolved.status());
  const std::optional<int> priority = r.priority;
  const std::string& only = r.site;
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
  }
  if (grant) {
    // A signed start goes only to the sites it names (by key).
    std::erase_if(targets, [&](const std::string& name) {
      const std::string& key = sites_.at(name).key;
      return std::find(grant->sites.begin(), grant->sites.end(), key) == grant->sites.end();
    });
    if (targets.empty()) {
      return Error("none of the sites the signed start names is an enrolled target with '" +
                       workflow + "' placed",
                   "not_found");
    }
  }
  if (targets.empty()) {
    return Error("no enrolled site has workflow '" + workflow + "' placed" +
                     (selector.empty() ? "" : " and matches the target"),
                 "not_found");
  }
  HubStore::Txn txn;
  RequestRecord q;
  q.id = request;
  q.workflow = workflow;
  q.created = clock_.Now();
  q.asked = StartFingerprint(r);
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
    for (const auto& [param, per_site] : r.secrets) {
      auto box = per_site.find(copy.key);
      if (box == per_site.end()) {
        return Error("secret param '" + param + "' is not sealed to site '" + site + "'", "conflict");
      }
      c.secrets[param] = box->second;
    }
    if (r.signed_stmt) {
      c.grant = r.signed_stmt->body;
      c.signer = r.signed_stmt->signer;
      c.sig = r.signed_stmt->sig;
    }
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
  std::map<std::string, uint64_t> counts =
      CountRuns({{"pending", static_cast<int64_t>(q.runs.size())}}, &txn);
  if (Status st = CommitSites(txn, changed); !st.ok()) return Error(st);
  run_counts_ = std::move(counts);
  spdlog::info("hub.run_requested request={} workflow={} sites={}", request, workflow,
               targets.size());
  PokeSites(targets, out);
  return {{"ok", true}, {"request", request}, {"runs", q.runs}, {"sites", q.sites},
          {"duplicate", false}};
}

json HubCore::OpRunCancel(const std::string& who, const OperatorRequest& r, HubOutput* out) {
  const std::string& id = r.id;
  auto got = ReadRun(id);
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
  c.reason = r.reason.empty() ? "cancelled by " + who : r.reason;
  c.author = who;
  if (r.signed_stmt) {
    c.grant = r.signed_stmt->body;
    c.signer = r.signed_stmt->signer;
    c.sig = r.signed_stmt->sig;
  }
  HubStore::Txn txn;
  Enqueue(copy, c, &txn);
  run.cancel_requested = true;
  txn.PutRun(run);
  Audit(&txn, {{"event", "run.cancel_requested"}, {"run", id}, {"author", who}});
  std::map<std::string, SiteRecord> changed{{run.site, copy}};
  if (Status st = CommitSites(txn, changed); !st.ok()) return Error(st);
  run_cache_.Forget(id);
  PokeSites({run.site}, out);
  return {{"ok", true}, {"run", RunJson(run)}, {"noop", false},
          {"message", online(run.site) ? "cancel sent" : "cancel queued until the site reconnects"}};
}

json HubCore::OpRunApprove(const std::string& who, const OperatorRequest& r,
                           HubOutput* out) {
  const std::string &id = r.id, &task = r.task;
  auto got = ReadRun(id);
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
  const bool reject = r.reject;
  SiteRecord copy = *site;
  Command c;
  c.type = static_cast<uint8_t>(CommandType::kApprove);
  c.time = clock_.Now();
  c.run = id;
  c.task = task;
  c.reason = reject ? "reject" : "approve";
  c.author = who;
  if (r.signed_stmt) {
    c.grant = r.signed_stmt->body;
    c.signer = r.signed_stmt->signer;
    c.sig = r.signed_stmt->sig;
  }
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

}  // namespace outpost
