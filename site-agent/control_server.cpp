// The agent's side of the local control protocol (common/control.h): one handler per op.
#include <spdlog/spdlog.h>

#include "common/json_fields.h"
#include "common/trust.h"
#include "common/ulid.h"
#include "site-agent/agent.h"

namespace outpost {

using json = nlohmann::json;

json Agent::StatusJson() const {
  const auto& ec = engine_->counters();
  const auto& log = store_->log();
  char inc[20];
  snprintf(inc, sizeof inc, "%016llx", static_cast<unsigned long long>(log.incarnation()));
  return {{"site", config_.site},
          {"disk_full", disk_full_ || !store_->log().HasRoom()},
          {"incarnation", inc},
          {"log_head", log.head()},
          {"log_acked", log.acked()},
          {"disk_bytes", log.ApproximateSize()},
          {"active_runs", engine_->active_runs()},
          {"running_attempts", engine_->running_attempts()},
          {"max_parallel", config_.max_parallel},
          {"queues", config_.queues},
          {"schedules", scheduler_->size()},
          {"local_workflows", local_defs_.size()},
          {"retention",
           {{"retain_output_ms", config_.retain_output},
            {"output_budget_bytes", config_.output_budget},
            {"output_bytes", output_bytes_},
            {"outputs_trimmed", counters_.outputs_trimmed},
            {"output_bytes_trimmed", counters_.output_bytes_trimmed}}},
          {"counters",
           {{"runs_started", ec.runs_started},
            {"runs_finished", ec.runs_finished},
            {"attempts_started", ec.attempts_started},
            {"attempts_interrupted", ec.attempts_interrupted},
            {"stale_exits", ec.stale_exits},
            {"commit_failures", counters_.commit_failures},
            {"bad_requests", counters_.bad_requests},
            {"request_exceptions", counters_.request_exceptions},
            {"control_peers_refused", counters_.control_peers_refused},
            {"cgroup_fallbacks", executor_->cgroup_fallbacks()},
            {"spawn_failures", counters_.spawn_failures},
            {"orphans_killed", counters_.orphans_killed},
            {"workflow_files_invalid", counters_.workflow_files_invalid},
            {"schedule_errors", counters_.schedule_errors}}},
          // Workflow sources parsed and validated: on the loop (small), on the worker
          // (large), or found already done; what waits for the worker now.
          {"validation",
           {{"parsed_inline", parser_->counters().parsed_inline},
            {"parsed_background", parser_->counters().parsed_background},
            {"cache_hits", parser_->counters().cache_hits},
            {"waiting", parser_->waiting()},
            {"requests_waited", counters_.requests_waited_validation},
            {"command_batches_waited", counters_.commands_waited_validation}}},
          {"isolation", executor_->isolation()},
          {"hub", SyncJson()},
          {"artifacts", {{"bytes", artifacts_ ? artifacts_->bytes() : 0},
                         {"budget_bytes", config_.artifact_budget},
                         {"fetching", fetch_digest_}}},
          {"bundles", {{"volumes_imported", counters_.bundle_volumes_imported},
                       {"volumes_refused", counters_.bundle_volumes_refused},
                       {"exported", counters_.bundles_exported}}},
          {"trust", TrustJson()}};
}

void Agent::HandleRequest(uint64_t client, const std::string& line) {
  const bool shallow = JsonDepthWithin(line, kMaxRequestDepth);
  json raw = shallow ? json::parse(line, nullptr, false) : json(json::value_t::discarded);
  auto req = !shallow ? Result<ControlRequest>(Status::InvalidArgument(
                            "request nests deeper than " + std::to_string(kMaxRequestDepth) +
                            " levels"))
             : raw.is_discarded()
                 ? Result<ControlRequest>(Status::InvalidArgument("request is not valid JSON"))
                 : DecodeControlRequest(raw);
  if (!req.ok()) {
    ++counters_.bad_requests;
    spdlog::warn("control.bad_request bytes={} error=\"{}\"", line.size(),
                 SafeText(req.status().message()));
    Reply(client, Error(req.status().message()));
    return;
  }
  // The boundary: no exception from a handler reaches the agent's loop. One that escapes is
  // a bug, answered as an internal error and counted, and the agent goes on.
  DispatchGuarded(client, *req);
}

void Agent::DispatchGuarded(uint64_t client, const ControlRequest& q) {
  try {
    Dispatch(client, q);
  } catch (const std::exception& e) {
    ++counters_.request_exceptions;
    spdlog::error("control.exception op={} error=\"{}\"", q.op, SafeText(e.what()));
    Reply(client, Error("internal error while handling " + q.op + "; see the agent's log", "internal"));
  }
}

void Agent::OnWorkflowsParsed() {
  if (parser_->Collect() == 0) return;
  // Requests held for a definition: asked again, they find it in the parser's cache.
  auto held = std::move(held_requests_);
  held_requests_.clear();
  for (auto& [client, q] : held) {
    if (clients_.count(client)) DispatchGuarded(client, q);
  }
  ResumeWaitingCommands();
}

void Agent::Dispatch(uint64_t client, const ControlRequest& q) {
  const std::string& op = q.op;
  const std::string& id = q.id;
  const bool writes = op == "run.start" || op == "run.cancel" || op == "run.approve";
  if (writes) {
    // Asked of the disk now, not only learned from a failed commit: a start accepted onto
    // a full disk could be neither recorded nor refused (its reply waits for the commit,
    // the client gives up, and the run starts later when space returns).
    // With work held, only its commit says the disk has room again.
    const bool room = store_->log().HasRoom();
    if (!room || pending_.empty()) SetDiskFull(!room);
  }
  if (disk_full_ && writes) {
    Reply(client, Error("disk_full: the agent's data directory " + config_.data_dir +
                            " has no room to record this; free space and retry (held work "
                            "resumes by itself)",
                        "conflict"));
    return;
  }
  if (op == "status") {
    Reply(client, {{"ok", true}, {"status", StatusJson()}});
  } else if (op == "workflow.list") {
    // Workflows this site runs by name: placed by the hub or loaded from --workflows.
    json list = json::array();
    std::map<std::string, Scheduler::Info> sched;
    for (auto& i : scheduler_->List()) sched[i.workflow] = i;
    std::map<std::string, Command> placed;
    store_->log()
        .ScanState("wf/",
                   [&](std::string_view, std::string_view v) {
                     Command c;
                     if (DecodeCommand(v, &c).ok()) placed[c.workflow] = c;
                   })
        .IgnoreError();
    for (const auto& [name, def] : KnownWorkflows()) {
      json w = {{"name", name}, {"hash", def->hash}};
      if (auto p = placed.find(name); p != placed.end()) {
        w["source"] = "hub";
        w["placed_by"] = p->second.author;
        w["placed"] = FormatTime(p->second.time);
      } else {
        w["source"] = "local";
      }
      if (auto si = sched.find(name); si != sched.end()) {
        w["schedule"] = {{"cron", si->second.cron},
                         {"timezone", si->second.timezone},
                         {"next", si->second.next > 0 ? FormatTime(si->second.next) : ""},
                         {"last_tick", si->second.state.last_tick > 0 ? FormatTime(si->second.state.last_tick) : ""},
                         {"fired", si->second.state.fired},
                         {"skipped", si->second.state.skipped},
                         {"queued", si->second.state.queued.size()}};
      }
      list.push_back(std::move(w));
    }
    Reply(client, {{"ok", true}, {"workflows", list}});
  } else if (op == "run.start") {
    std::shared_ptr<const WorkflowDef> shared;
    if (const std::string& name = q.workflow; !name.empty()) {
      // A workflow placed by the hub or loaded from --workflows runs by name, hub or not,
      // from the definition already validated.
      auto all = KnownWorkflows();
      auto it = all.find(name);
      if (it == all.end()) {
        Reply(client, Error("no workflow named '" + name + "' is placed on this site or in its workflow directory", "not_found"));
        return;
      }
      shared = it->second;
    } else {
      // A large file is validated off the loop: the request waits, the agent does not.
      auto def = parser_->Get(q.source, q.file.empty() ? "<request>" : q.file);
      if (!def) {
        ++counters_.requests_waited_validation;
        held_requests_.emplace_back(client, q);
        return;
      }
      if (!def->ok()) {
        Reply(client, Error(def->status().message()));
        return;
      }
      shared = **def;
    }
    std::map<std::string, std::string> params = q.params;
    StartOptions so;
    if (q.priority) so.priority = *q.priority;
    // A secret given here (a local administrator's request) is sealed to this site's own
    // key at once, so it is stored and recorded like one sealed by outpostctl.
    for (const auto& pd : shared->params) {
      auto v = params.find(pd.name);
      if (!pd.secret || v == params.end()) continue;
      auto sealed = SealToSite(v->second, keys_.public_z85);
      if (!sealed.ok()) {
        Reply(client, Error(sealed.status()));
        return;
      }
      so.sealed[pd.name] = *sealed;
      params.erase(v);
    }
    const std::string run_id = config_.site + "-" + MakeUlid(clock_.Now(), &rng_);
    Status s = engine_->StartRun(shared, run_id, params, &pending_, so);
    if (!s.ok()) {
      Reply(client, Error(s));
      return;
    }
    spdlog::info("run.created run={} workflow={} hash={}", run_id, shared->name, shared->hash);
    after_commit_.emplace_back(client, json{{"ok", true}, {"id", run_id}});
  } else if (op == "run.cancel") {
    auto view = store_->GetRun(id);
    if (!view.ok()) {
      Reply(client, Error(view.status()));
    } else if (!*view) {
      Reply(client, Error("no run '" + id + "'", "not_found"));
    } else if (IsFinal((*view)->run.run_state())) {
      // A cancel for a finished run is a no-op, not an error (docs/architecture.md).
      Reply(client, {{"ok", true},
                     {"state", RunStateName((*view)->run.run_state())},
                     {"message", "run already finished; nothing to cancel"}});
    } else {
      Status s = engine_->Cancel(id, "cancelled by operator", &pending_);
      if (!s.ok()) {
        Reply(client, Error(s));
      } else {
        after_commit_.emplace_back(client, json{{"ok", true}, {"state", "cancelling"}});
      }
    }
  } else if (op == "run.approve") {
    const bool reject = q.reject;
    const std::string by = q.by.empty() ? "local operator" : q.by;
    Status s = engine_->Approve(id, q.task, !reject, by, &pending_);
    if (!s.ok() && s.code() == Code::kNotFound && !engine_->FindRun(id)) {
      // A run that exists but has finished has no gate to decide: a conflict, not unknown.
      auto view = store_->GetRun(id);
      if (view.ok() && *view) {
        s = Status::FailedPrecondition("run '" + id + "' has finished (" +
                                       RunStateName((*view)->run.run_state()) +
                                       "): no approval is waiting");
      }
    }
    if (!s.ok()) {
      Reply(client, Error(s));
    } else {
      spdlog::info("run.approval run={} task={} decision={} by={}", id, SafeText(q.task),
                   reject ? "reject" : "approve", by);
      after_commit_.emplace_back(client, json{{"ok", true}, {"decision", reject ? "reject" : "approve"}});
    }
  } else if (op == "run.show" || op == "run.wait") {
    auto view = store_->GetRun(id);
    if (!view.ok()) {
      Reply(client, Error(view.status()));
    } else if (!*view) {
      Reply(client, Error("no run '" + id + "'", "not_found"));
    } else if (op == "run.wait" && !IsFinal((*view)->run.run_state())) {
      waiters_[id].push_back(client);
    } else {
      Reply(client, {{"ok", true}, {"run", RunViewToJson(**view)}});
    }
  } else if (op == "run.list") {
    auto runs = store_->ListRuns(q.limit);
    if (!runs.ok()) {
      Reply(client, Error(runs.status()));
      return;
    }
    json arr = json::array();
    for (const auto& r : *runs) {
      arr.push_back({{"id", r.id},
                     {"workflow", r.workflow},
                     {"state", RunStateName(r.run_state())},
                     {"created", FormatTime(r.created)},
                     {"finished", r.finished > 0 ? json(FormatTime(r.finished)) : json(nullptr)}});
    }
    Reply(client, {{"ok", true}, {"runs", std::move(arr)}});
  } else if (op == "bundle.import" || op == "bundle.export") {
    auto c = clients_.find(client);
    if (c == clients_.end() || c->second.fds.empty()) {
      Reply(client, Error(op + " needs the bundle file's descriptor passed with the request "
                               "(outpostctl --local bundle import|export does this)"));
      return;
    }
    const int fd = c->second.fds.front();
    c->second.fds.erase(c->second.fds.begin());
    json r = op == "bundle.import" ? ImportBundle(fd) : ExportBundle(fd);
    close(fd);
    Reply(client, r);
  } else if (op == "artifact.list") {
    Reply(client, {{"ok", true}, {"artifacts", ArtifactsJson()}});
  } else if (op == "retention.trim") {
    // A retention pass now (it also runs every minute when retention is configured).
    if (config_.retain_output == 0 && config_.output_budget == 0) {
      Reply(client, Error("no retention configured (agent options retain-output, output-budget)", "conflict"));
      return;
    }
    json r = TrimOutputs();
    if (auto e = r.find("error"); e != r.end()) {
      Reply(client, Error(e->is_string() ? e->get<std::string>() : SafeDump(*e)));
    } else {
      after_commit_.emplace_back(client, json{{"ok", true}, {"trimmed", r}});
    }
  } else if (op == "run.logs") {
    auto out = store_->GetOutput(id, q.task, q.attempt);
    if (!out.ok()) {
      Reply(client, Error(out.status()));
    } else if (!*out) {
      auto trimmed = store_->log().GetState("trim/" + id);
      if (trimmed.ok() && *trimmed) {
        Reply(client, Error("the output of run '" + id + "' was removed by retention: " + **trimmed, "not_found"));
      } else {
        Reply(client, Error("no output for run '" + id + "' task '" + q.task +
                            "' (unknown run or task, or the attempt has not finished)", "not_found"));
      }
    } else {
      Reply(client, {{"ok", true}, {"output", **out}});
    }
  } else {
    Reply(client, Error("unknown op '" + op + "'"));  // DecodeControlRequest knows the list
  }
}

}  // namespace outpost
