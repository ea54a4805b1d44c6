// HubCore's operator API: dispatching requests to their handlers, and the read-only
// queries (status, site and workflow lists, runs, logs, hub events).
#include "hub/hub_core.h"

#include "common/trust.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/json_fields.h"
#include "hub/site_streams.h"
#include "hub/run_view.h"

namespace outpost {

using json = nlohmann::json;

json HubCore::StatusJson() const {
  size_t online_n = 0, here_n = 0, enrolled = 0, pending = 0, revoked = 0;
  uint64_t behind = 0, commands = 0, kept = 0;
  json rows = json::array();
  for (const auto& [name, s] : sites_) {
    switch (s.site_state()) {
      case SiteState::kEnrolled: ++enrolled; break;
      case SiteState::kPending: ++pending; break;
      case SiteState::kRevoked: ++revoked; break;
    }
    if (online(name)) ++online_n;
    if (online_here(name)) ++here_n;
    kept += s.up_kept_bytes();
    if (s.site_state() != SiteState::kEnrolled) continue;
    behind += s.up_head > s.up_applied ? s.up_head - s.up_applied : 0;
    commands += s.down_head - s.down_acked;
    // A fleet's summary, not its list: site.list and the dashboard page through sites.
    if (rows.size() >= options_.max_list) continue;
    rows.push_back({{"name", name},
                    {"online", online(name)},
                    {"last_seen", TimeJson(s.last_seen)},
                    {"labels", s.labels},
                    {"events_received", s.events_total},
                    {"events_behind", s.up_head > s.up_applied ? s.up_head - s.up_applied : 0},
                    {"commands_pending", s.down_head - s.down_acked}});
  }
  const auto& c = counters_;
  return {{"sites",
           {{"enrolled", enrolled},
            {"online", online_n},
            // Several hubs over one store: of those, the sessions this hub process holds.
            {"online_here", here_n},
            {"offline", enrolled - std::min(enrolled, online_n)},
            {"pending", pending},
            {"revoked", revoked}}},
          {"events_behind", behind},
          {"commands_pending", commands},
          {"runs", run_counts_},
          {"workflows", defs_.size()},
          {"site_rows", rows},
          {"site_rows_truncated", enrolled > rows.size()},
          {"store_bytes", store_->ApproximateSize()},
          {"retention",
           {{"site_events_kept_bytes", kept},
            {"trimmed_bytes",
             {{"age", c.retention_age_bytes},
              {"budget", c.retention_budget_bytes},
              {"quota", c.retention_quota_bytes}}},
            {"keep_days", options_.retention.max_age / 86'400'000},
            {"budget_bytes", options_.retention.max_bytes},
            {"site_quota_bytes", options_.retention.site_quota}}},
          {"counters",
           {{"frames_received", c.frames_received},
            {"frames_malformed", c.frames_malformed},
            {"frames_refused", c.frames_refused},
            {"frames_stale", c.frames_stale},
            {"events_applied", c.events_applied},
            {"events_undecodable", c.events_undecodable},
            {"commands_enqueued", c.commands_enqueued},
            {"store_errors", c.store_errors},
            {"store_conflicts", c.store_conflicts},
            {"keys_refused", c.keys_refused},
            {"stale_incarnations", c.stale_incarnations},
            {"pending_refused", c.pending_refused},
            {"duplicates_dropped", c.duplicates_dropped},
            {"gaps_refused", c.gaps_refused},
            {"protocol_errors", c.protocol_errors},
            {"frame_exceptions", c.frame_exceptions},
            {"operator_requests", c.operator_requests},
            {"operator_errors", c.operator_errors},
            {"operator_invalid", c.operator_invalid},
            {"operator_exceptions", c.operator_exceptions},
            {"operator_forbidden", c.operator_forbidden},
            {"artifact_chunks_served", c.artifact_chunks_served},
            {"artifact_requests_refused", c.artifact_requests_refused},
            {"bundles_exported", c.bundles_exported},
            {"bundle_volumes_imported", c.bundle_volumes_imported},
            {"bundle_records_refused", c.bundle_records_refused},
            {"events_lost_in_restore", c.events_lost_in_restore},
            {"commands_adopted_in_restore", c.commands_adopted_in_restore},
            {"stale_hub_refusals", c.stale_hub_refusals},
            {"sites_ahead", c.sites_ahead}}},
          {"hub_epoch", hub_epoch_},
          {"policy", policy_ ? json{{"version", policy_version_}} : json(nullptr)}};
}

json HubCore::OnOperator(const std::string& who, const json& request, HubOutput* out,
                         OperatorRole role) {
  ++counters_.operator_requests;
  json reply;
  // Nothing is read or written over batches whose write is not yet on disk (nor after a
  // failed sync: the store is being reopened).
  if (Status s = Flush(out); !s.ok()) {
    ++counters_.operator_errors;
    return Error(s.WithContext("sync the hub store"));
  }
  FreshenDownHeads();
  auto r = DecodeOperatorRequest(request, options_.max_list);
  const std::string op_name = r.ok() ? r->op : "invalid";
  ++counters_.requests_by_op[op_name];
  if (!r.ok()) {
    ++counters_.operator_invalid;
    reply = Error(r.status());
  } else if (RequiredRole(r->op) > role) {
    ++counters_.operator_forbidden;
    reply = Error("operator '" + who + "' has role " + OperatorRoleName(role) + "; " + r->op +
                      " needs " + OperatorRoleName(RequiredRole(r->op)),
                  "forbidden");
  } else {
    // The boundary: no exception from a handler reaches the driver. One that escapes is a
    // bug, answered as an internal error and counted, and the hub goes on.
    try {
      reply = Dispatch(who, *r, out);
      // Several hubs over one store: another process wrote what this one read (a site's
      // record, a request); read the store again and answer from what it holds now.
      auto conflicted = [&] {
        if (!refresh_pending_ || !reply.is_object()) return false;
        auto code = reply.find("code");
        return code != reply.end() && code->is_string() && *code == "retry";
      };
      for (int attempt = 0; attempt < 8 && conflicted(); ++attempt) {
        RefreshFromStore(out);
        reply = Dispatch(who, *r, out);
      }
    } catch (const std::exception& e) {
      ++counters_.operator_exceptions;
      spdlog::error("hub.operator_exception op={} error=\"{}\"", r->op, SafeText(e.what()));
      reply = Error("internal error while handling " + r->op + "; see the hub's log", "internal");
    }
  }
  FreshenDownHeads();
  // An import's batches (group commit) are on disk before the reply says so; if they
  // cannot be, nothing the request produced leaves.
  if (Status s = Flush(out); !s.ok()) {
    out->send.clear();
    reply = Error(s.WithContext("sync the hub store"));
  }
  if (!reply.is_object() || !reply.contains("ok") || reply["ok"] != true) {
    ++counters_.operator_errors;
    ++counters_.errors_by_op[op_name];
  }
  return reply;
}

json HubCore::Dispatch(const std::string& who, const OperatorRequest& r, HubOutput* out) {
  const std::string& op = r.op;
  if (op == "status") return {{"ok", true}, {"status", StatusJson()}};
  if (op == "site.add") return OpSiteAdd(r, out);
  if (op == "site.accept") return OpSiteAccept(r, out);
  if (op == "site.revoke") return OpSiteRevoke(r, out);
  if (op == "site.remove") return OpSiteRemove(r, out);
  if (op == "site.label") return OpSiteLabel(r, out);
  if (op == "site.list") {
    json list = json::array();
    for (const auto& [name, s] : sites_) list.push_back(SiteJson(s));
    return {{"ok", true}, {"sites", list}};
  }
  if (op == "site.show") {
    const SiteRecord* s = FindSite(r.name);
    return s ? json{{"ok", true}, {"site", SiteJson(*s)}}
             : Error("no site named '" + r.name + "'", "not_found");
  }
  if (op == "workflow.apply") return OpWorkflowApply(who, r, out);
  if (op == "workflow.remove") return OpWorkflowRemove(r, out);
  if (op == "workflow.list") return OpWorkflowList();
  if (op == "workflow.show") {
    auto d = defs_.find(r.name);
    if (d == defs_.end()) return Error("no workflow named '" + r.name + "'", "not_found");
    json signer = d->second.signer.empty() ? json(nullptr) : json(d->second.signer);
    return {{"ok", true},
            {"workflow",
             {{"name", d->second.name},
              {"hash", d->second.hash},
              {"digest", ContentDigest(d->second.source)},
              {"source", d->second.source},
              {"target", d->second.target},
              {"author", d->second.author},
              {"signer", signer}}}};
  }
  if (op == "run.start") return OpRunStart(who, r, out);
  if (op == "run.cancel") return OpRunCancel(who, r, out);
  if (op == "run.approve") return OpRunApprove(who, r, out);
  if (op == "run.list") return OpRunList(r);
  if (op == "run.show") return OpRunShow(r);
  if (op == "run.logs") return OpRunLogs(r);
  if (op == "events") return OpEvents(r);
  if (op == "policy.push") return OpPolicyPush(who, r, out);
  if (op == "site.events") return OpSiteEvents(r);
  if (op == "policy.show") return OpPolicyShow();
  if (op == "artifact.has") return OpArtifactHas(r);
  if (op == "artifact.chunk") return OpArtifactChunk(r);
  if (op == "artifact.commit") return OpArtifactCommit(who, r);
  if (op == "artifact.list") return OpArtifactList();
  if (op == "bundle.export") return OpBundleExport(who, r);
  if (op == "bundle.record") return OpBundleRecord(r);
  if (op == "bundle.import") return OpBundleImport(who, r, out);
  return Error("unknown op '" + op + "'");  // DecodeOperatorRequest knows the same list
}

json HubCore::OpWorkflowList() const {
  json list = json::array();
  for (const auto& [name, d] : defs_) {
    json placed = json::array(), refused = json::object();
    for (const auto& [sn, s] : sites_) {
      if (s.placed.count(name)) placed.push_back(sn);
      if (auto r = s.refused.find(name); r != s.refused.end()) refused[sn] = r->second;
    }
    list.push_back({{"name", name},
                    {"refused_by", refused},
                    {"hash", d.hash},
                    {"target", d.target},
                    {"applied", TimeJson(d.applied)},
                    {"author", d.author},
                    {"sites", placed}});
  }
  return {{"ok", true}, {"workflows", list}};
}

// The newest `limit` events of a site's current stream, as the hub received them: what a
// site did and refused (command.rejected says why), without access to the site.
json HubCore::OpSiteEvents(const OperatorRequest& r) {
  const SiteRecord* s = FindSite(r.name);
  if (!s) return Error("no site named '" + r.name + "'", "not_found");
  const size_t limit = r.limit.value_or(std::min<size_t>(50, options_.max_list));
  const uint64_t after = s->up_applied > limit ? s->up_applied - limit : 0;
  auto got = store_->ReadUp(s->name, s->incarnation, after, limit);
  if (!got.ok()) return Error(got.status());
  json list = json::array();
  DecodeLimits limits;
  limits.max_depth = 4;
  for (const auto& rec : *got) {
    Event e;
    if (!Decode(rec.payload, &e, limits).ok()) {
      list.push_back({{"seq", rec.seq}, {"type", "undecodable"}});
      continue;
    }
    json j = {{"seq", rec.seq},
              {"time", TimeJson(e.time)},
              {"type", EventTypeName(static_cast<EventType>(e.type))}};
    if (!e.run.empty()) j["run"] = e.run;
    if (!e.task.empty()) j["task"] = e.task;
    if (!e.workflow.empty()) j["workflow"] = e.workflow;
    if (!e.state.empty()) j["state"] = e.state;
    if (!e.message.empty()) j["message"] = SafeText(e.message, 4096);
    list.push_back(std::move(j));
  }
  return {{"ok", true}, {"site", s->name}, {"events", list}};
}

json HubCore::OpRunShow(const OperatorRequest& r) {
  auto run = ReadRun(r.id);
  if (!run.ok()) return Error(run.status());
  if (!*run) return Error("no run with id '" + r.id + "'", "not_found");
  return {{"ok", true}, {"run", RunJson(**run)}};
}

json HubCore::OpRunLogs(const OperatorRequest& r) {
  auto run = ReadRun(r.id);
  if (!run.ok()) return Error(run.status());
  if (!*run) return Error("no run with id '" + r.id + "'", "not_found");
  auto o = store_->GetOutput(r.id, r.task);
  if (!o.ok()) return Error(o.status());
  if (!*o) return Error("no output yet for task '" + r.task + "' of run " + r.id, "not_found");
  return {{"ok", true}, {"output", **o}};
}

json HubCore::OpEvents(const OperatorRequest& r) {
  std::vector<std::string> ev;
  Status s = store_->ReadAudit(r.limit.value_or(std::min<size_t>(50, options_.max_list)), &ev);
  if (!s.ok()) return Error(s);
  json list = json::array();
  for (const auto& e : ev) {
    json j = json::parse(e, nullptr, false);
    list.push_back(j.is_discarded() ? json(SafeText(e)) : j);
  }
  return {{"ok", true}, {"events", list}};
}

namespace {

// A run id as the hub makes and lists them: a site name, '-', and a ULID (26 characters of
// Crockford's base32, upper case).
bool LooksLikeRunId(const std::string& id) {
  constexpr size_t kUlid = 26;
  if (id.size() < kUlid + 2 || id[id.size() - kUlid - 1] != '-') return false;
  for (size_t i = id.size() - kUlid; i < id.size(); ++i) {
    const char c = id[i];
    const bool digit = c >= '0' && c <= '9';
    const bool letter = c >= 'A' && c <= 'Z' && c != 'I' && c != 'L' && c != 'O' && c != 'U';
    if (!digit && !letter) return false;
  }
  return true;
}

}  // namespace

json HubCore::OpRunList(const OperatorRequest& r) {
  const std::string &site = r.site, &workflow = r.workflow, &state = r.state;
  // A cursor is a run id: shaped as the hub makes them, or one it holds (a site may name
  // its runs otherwise, and "next" may be such an id).
  auto held = [&] {
    auto got = ReadRun(r.after);
    return got.ok() && got->has_value();
  };
  if (!r.after.empty() && !LooksLikeRunId(r.after) && !held()) {
    return Error("'after' is not a run id (SITE-ULID, as run.list's 'next' gives): '" +
                     SafeText(r.after, 200) + "'",
                 "invalid");
  }
  const size_t limit = r.limit.value_or(options_.max_list);
  // A page reads at most this many runs, matching or not: a filter that matches little of
  // a long history answers with fewer rows and a "next" to go on from, never with a read
  // of the whole history.
  const size_t budget = std::max<size_t>(10'000, 20 * limit);
  json list = json::array();
  size_t examined = 0;
  std::string last;
  bool full = false, more = false;
  auto visit = [&](const HubRun& run) {
    if (full) {
      more = true;  // one run past a full page: there is a next page
      return false;
    }
    ++examined;
    last = run.id;
    if ((site.empty() || run.site == site) && (workflow.empty() || run.workflow == workflow) &&
        (state.empty() || run.state == state)) {
      json j = RunSummaryJson(run);
      j["tasks_total"] = run.tasks.size();
      size_t done = 0;
      for (const auto& t : run.tasks) done += t.state == "succeeded" ? 1 : 0;
      j["tasks_succeeded"] = done;
      list.push_back(std::move(j));
    }
    full = list.size() >= limit || examined >= budget;
    return true;
  };
  // One site's runs are read from that site's keys; the fleet's through the index by time.
  Status s;
  if (site.empty()) {
    s = store_->ScanRunsNewestFirst(r.after, visit);
  } else {
    s = store_->ScanSiteRunsNewestFirst(site, r.after, visit);
  }
  if (!s.ok()) return Error(s);
  // "next": where the following page starts; null when no run is left past this page.
  return {{"ok", true},
          {"runs", list},
          {"examined", examined},
          {"next", more ? json(last) : json(nullptr)}};
}
}  // namespace outpost
