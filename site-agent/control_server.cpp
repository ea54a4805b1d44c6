// The agent's side of the local control protocol (common/control.h): one handler per op.
#include <spdlog/spdlog.h>

#include "common/ulid.h"
#include "site-agent/agent.h"

namespace outpost {

using json = nlohmann::json;

namespace {

json Error(const std::string& message) { return {{"ok", false}, {"error", message}}; }

// Reads a string field; empty if absent or not a string.
std::string Str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

json Agent::StatusJson() const {
  const auto& ec = engine_->counters();
  const auto& log = store_->log();
  char inc[20];
  snprintf(inc, sizeof inc, "%016llx", static_cast<unsigned long long>(log.incarnation()));
  return {{"site", config_.site},
          {"incarnation", inc},
          {"log_head", log.head()},
          {"log_acked", log.acked()},
          {"disk_bytes", log.ApproximateSize()},
          {"active_runs", engine_->active_runs()},
          {"running_attempts", engine_->running_attempts()},
          {"max_parallel", config_.max_parallel},
          {"counters",
           {{"runs_started", ec.runs_started},
            {"runs_finished", ec.runs_finished},
            {"attempts_started", ec.attempts_started},
            {"attempts_interrupted", ec.attempts_interrupted},
            {"stale_exits", ec.stale_exits},
            {"commit_failures", counters_.commit_failures},
            {"bad_requests", counters_.bad_requests},
            {"spawn_failures", counters_.spawn_failures},
            {"orphans_killed", counters_.orphans_killed}}},
          {"hub", SyncJson()}};
}

void Agent::HandleRequest(uint64_t client, const std::string& line) {
  json req = json::parse(line, nullptr, false);
  if (req.is_discarded() || !req.is_object()) {
    ++counters_.bad_requests;
    spdlog::warn("control.bad_request reason=not_a_json_object bytes={}", line.size());
    Reply(client, Error("request is not a JSON object"));
    return;
  }
  const std::string op = Str(req, "op");
  const std::string id = Str(req, "id");

  if (op == "status") {
    Reply(client, {{"ok", true}, {"status", StatusJson()}});
  } else if (op == "workflow.list") {
    // Workflows the hub placed on this site; each can be started locally by name.
    json list = json::array();
    Status bad;
    Status s = store_->log().ScanState("wf/", [&](std::string_view, std::string_view v) {
      Command c;
      if (Status d = DecodeCommand(v, &c); !d.ok()) {
        bad = d;
        return;
      }
      list.push_back({{"name", c.workflow},
                      {"hash", c.hash},
                      {"placed_by", c.author},
                      {"placed", FormatTime(c.time)}});
    });
    if (!s.ok() || !bad.ok()) {
      Reply(client, Error((s.ok() ? bad : s).ToString()));
    } else {
      Reply(client, {{"ok", true}, {"workflows", list}});
    }
  } else if (op == "run.start") {
    std::string source = Str(req, "source");
    std::string file = Str(req, "file").empty() ? "<request>" : Str(req, "file");
    if (const std::string name = Str(req, "workflow"); !name.empty()) {
      // A workflow the hub placed here runs by name, with or without the hub.
      auto placed = store_->log().GetState("wf/" + name);
      Command c;
      if (!placed.ok() || !*placed || !DecodeCommand(**placed, &c).ok()) {
        Reply(client, Error("no workflow named '" + name + "' is placed on this site"));
        return;
      }
      source = c.source;
      file = "placed:" + name;
    }
    auto def = ParseWorkflow(source, file);
    if (!def.ok()) {
      Reply(client, Error(def.status().message()));
      return;
    }
    std::map<std::string, std::string> params;
    if (auto p = req.find("params"); p != req.end() && p->is_object()) {
      for (const auto& [k, v] : p->items()) {
        if (!v.is_string()) {
          Reply(client, Error("param '" + k + "' must be a string"));
          return;
        }
        params[k] = v.get<std::string>();
      }
    }
    const std::string run_id = config_.site + "-" + MakeUlid(clock_.Now(), &rng_);
    auto shared = std::make_shared<const WorkflowDef>(std::move(def).value());
    Status s = engine_->StartRun(shared, run_id, params, &pending_);
    if (!s.ok()) {
      Reply(client, Error(s.message()));
      return;
    }
    spdlog::info("run.created run={} workflow={} hash={}", run_id, shared->name, shared->hash);
    after_commit_.emplace_back(client, json{{"ok", true}, {"id", run_id}});
  } else if (op == "run.cancel") {
    auto view = store_->GetRun(id);
    if (!view.ok()) {
      Reply(client, Error(view.status().ToString()));
    } else if (!*view) {
      Reply(client, Error("no run '" + id + "'"));
    } else if (IsFinal((*view)->run.run_state())) {
      // A cancel for a finished run is a no-op, not an error (docs/architecture.md).
      Reply(client, {{"ok", true},
                     {"state", RunStateName((*view)->run.run_state())},
                     {"message", "run already finished; nothing to cancel"}});
    } else {
      Status s = engine_->Cancel(id, "cancelled by operator", &pending_);
      if (!s.ok()) {
        Reply(client, Error(s.message()));
      } else {
        after_commit_.emplace_back(client, json{{"ok", true}, {"state", "cancelling"}});
      }
    }
  } else if (op == "run.approve") {
    const bool reject = req.value("reject", false);
    const std::string by = Str(req, "by").empty() ? "local operator" : Str(req, "by");
    Status s = engine_->Approve(id, Str(req, "task"), !reject, by, &pending_);
    if (!s.ok()) {
      Reply(client, Error(s.message()));
    } else {
      spdlog::info("run.approval run={} task={} decision={} by={}", id, Str(req, "task"),
                   reject ? "reject" : "approve", by);
      after_commit_.emplace_back(client, json{{"ok", true}, {"decision", reject ? "reject" : "approve"}});
    }
  } else if (op == "run.show" || op == "run.wait") {
    auto view = store_->GetRun(id);
    if (!view.ok()) {
      Reply(client, Error(view.status().ToString()));
    } else if (!*view) {
      Reply(client, Error("no run '" + id + "'"));
    } else if (op == "run.wait" && !IsFinal((*view)->run.run_state())) {
      waiters_[id].push_back(client);
    } else {
      Reply(client, {{"ok", true}, {"run", RunViewToJson(**view)}});
    }
  } else if (op == "run.list") {
    size_t limit = 100;
    if (auto l = req.find("limit"); l != req.end() && l->is_number_unsigned()) {
      limit = l->get<size_t>();
    }
    auto runs = store_->ListRuns(limit);
    if (!runs.ok()) {
      Reply(client, Error(runs.status().ToString()));
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
  } else if (op == "run.logs") {
    int attempt = 0;
    if (auto a = req.find("attempt"); a != req.end() && a->is_number_integer()) {
      attempt = a->get<int>();
    }
    auto out = store_->GetOutput(id, Str(req, "task"), attempt);
    if (!out.ok()) {
      Reply(client, Error(out.status().ToString()));
    } else if (!*out) {
      Reply(client, Error("no output for run '" + id + "' task '" + Str(req, "task") +
                          "' (unknown run or task, or the attempt has not finished)"));
    } else {
      Reply(client, {{"ok", true}, {"output", **out}});
    }
  } else {
    ++counters_.bad_requests;
    spdlog::warn("control.bad_request reason=unknown_op op=\"{}\"", op);
    Reply(client, Error("unknown op '" + op + "'"));
  }
}

}  // namespace outpost
