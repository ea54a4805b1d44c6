#include "site-agent/agent_store.h"

#include <algorithm>

namespace outpost {

Status AgentStore::Commit(const Effects& fx, const Engine& engine,
                          const std::vector<StateWrite>& extra) {
  std::vector<std::string> events;
  std::vector<StateWrite> writes;
  events.reserve(fx.events.size());
  for (const auto& e : fx.events) {
    events.push_back(Encode(e));
    if (e.type == static_cast<uint8_t>(EventType::kAttemptFinished) ||
        e.type == static_cast<uint8_t>(EventType::kAttemptSpawnFailed)) {
      writes.push_back({OutputKey(e.run, e.task, e.attempt),
                        e.output.empty() ? e.message : e.output});
    }
  }
  for (const auto& id : fx.dirty_runs) {
    if (const RunRecord* r = engine.FindRun(id)) writes.push_back({RunKey(id), Encode(*r)});
  }
  for (const auto& [run, task] : fx.dirty_tasks) {
    if (const TaskRecord* t = engine.FindTask(run, task)) {
      writes.push_back({TaskKey(run, task), Encode(*t)});
    }
  }
  for (const auto& [k, v] : fx.state_writes) writes.push_back({k, v});
  writes.insert(writes.end(), extra.begin(), extra.end());
  if (events.empty() && writes.empty()) return Status::Ok();
  if (faults_.split_commit && !events.empty() && !writes.empty()) {
    // The planted bug (common/faults.h): state first, its events in a second write.
    OUTPOST_RETURN_IF_ERROR(log_->Append({}, writes).status());
    return log_->Append(events, {}).status();
  }
  return log_->Append(events, writes).status();
}

Result<std::optional<RunView>> AgentStore::GetRun(const std::string& run_id) const {
  OUTPOST_ASSIGN_OR_RETURN(auto raw, log_->GetState(RunKey(run_id)));
  if (!raw) return std::optional<RunView>();
  RunView v;
  OUTPOST_RETURN_IF_ERROR(Decode(*raw, &v.run).WithContext("run record " + run_id));
  Status bad;
  OUTPOST_RETURN_IF_ERROR(log_->ScanState(TaskPrefix(run_id), [&](std::string_view k,
                                                                  std::string_view val) {
    TaskRecord t;
    Status s = Decode(val, &t);
    if (!s.ok()) {
      bad = s.WithContext("task record " + std::string(k));
      return;
    }
    v.tasks.push_back(std::move(t));
  }));
  OUTPOST_RETURN_IF_ERROR(bad);
  std::sort(v.tasks.begin(), v.tasks.end(),
            [](const TaskRecord& a, const TaskRecord& b) { return a.order < b.order; });
  return std::optional<RunView>(std::move(v));
}

Result<std::vector<RunView>> AgentStore::LoadUnfinished() const {
  std::vector<std::string> ids;
  Status bad;
  OUTPOST_RETURN_IF_ERROR(log_->ScanState("run/", [&](std::string_view k, std::string_view val) {
    RunRecord r;
    Status s = Decode(val, &r);
    if (!s.ok()) {
      bad = s.WithContext(std::string(k));
      return;
    }
    if (!IsFinal(r.run_state())) ids.push_back(r.id);
  }));
  OUTPOST_RETURN_IF_ERROR(bad);
  std::vector<RunView> out;
  for (const auto& id : ids) {
    OUTPOST_ASSIGN_OR_RETURN(auto v, GetRun(id));
    if (v) out.push_back(std::move(*v));
  }
  return out;
}

Result<std::vector<RunRecord>> AgentStore::ListRuns(size_t limit) const {
  std::vector<RunRecord> out;
  Status bad;
  OUTPOST_RETURN_IF_ERROR(log_->ScanState("run/", [&](std::string_view k, std::string_view val) {
    RunRecord r;
    Status s = Decode(val, &r);
    if (!s.ok()) {
      bad = s.WithContext(std::string(k));
      return;
    }
    r.source.clear();  // listing does not need the definition text
    out.push_back(std::move(r));
  }));
  OUTPOST_RETURN_IF_ERROR(bad);
  std::sort(out.begin(), out.end(), [](const RunRecord& a, const RunRecord& b) {
    return a.created != b.created ? a.created < b.created : a.id < b.id;
  });
  if (out.size() > limit) out.erase(out.begin(), out.end() - static_cast<ptrdiff_t>(limit));
  return out;
}

Result<std::optional<std::string>> AgentStore::GetOutput(const std::string& run,
                                                         const std::string& task,
                                                         int attempt) const {
  if (attempt <= 0) {
    OUTPOST_ASSIGN_OR_RETURN(auto raw, log_->GetState(TaskKey(run, task)));
    if (!raw) return std::optional<std::string>();
    TaskRecord t;
    OUTPOST_RETURN_IF_ERROR(Decode(*raw, &t));
    attempt = t.attempts;
    if (attempt == 0) return std::optional<std::string>(std::string());
  }
  return log_->GetState(OutputKey(run, task, attempt));
}

}  // namespace outpost
