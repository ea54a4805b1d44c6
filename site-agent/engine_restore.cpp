// Restore: resuming a run loaded from the store after the agent restarted.
//
// The run's definition is parsed again from the source it started with, so a workflow
// edited since does not change a run in flight. Its records come back in the order they
// were created (AdoptRecords). An attempt the store says was running has lost its
// process (the agent kills an orphaned process group before restoring), so it is recorded
// as interrupted (attempts_interrupted, an AttemptInterrupted event) and handled like a
// failed attempt: retried under its task's policy, else the task fails. A compensation
// runs again regardless (RerunCompensation). At-least-once: an attempt whose exit the store
// did not record may run twice.
#include <algorithm>

#include "site-agent/engine.h"

namespace outpost {

Status Engine::Restore(RunRecord run, std::vector<TaskRecord> tasks, Effects* fx) {
  if (IsFinal(run.run_state())) return Status::Ok();
  if (runs_.count(run.id)) return Status::AlreadyExists("run '" + run.id + "' already active");
  auto parsed = ParseWorkflow(run.source, "run " + run.id);
  if (!parsed.ok()) return parsed.status().WithContext("restore run " + run.id);
  Active a;
  a.def = std::make_shared<const WorkflowDef>(std::move(parsed).value());
  a.rec = std::move(run);
  AdoptRecords(a, std::move(tasks));
  auto& ref = runs_.emplace(a.rec.id, std::move(a)).first->second;
  for (size_t i = 0; i < ref.tasks.size(); ++i) {
    const auto& t = ref.tasks[i];
    if (t.task_state() != TaskState::kRunning || t.instances > 0) continue;
    RecoverInterrupted(ref, i, fx);
  }
  Evaluate(ref, fx);
  MaybeFinishRun(ref, fx);
  Dispatch(fx);
  return Status::Ok();
}

// The definition's tasks in order (a task missing from the store starts pending), then
// instances and compensations in the order they were created. A stored record whose task
// the definition lacks is left out.
void Engine::AdoptRecords(Active& a, std::vector<TaskRecord> tasks) {
  std::map<std::string, TaskRecord*> stored;
  for (auto& t : tasks) stored[t.id] = &t;
  for (const auto& td : a.def->tasks) {
    TaskRecord t;
    t.id = td.id;
    if (auto it = stored.find(td.id);
        it != stored.end() && it->second->task_kind() == TaskKind::kTask) {
      t = std::move(*it->second);
      stored.erase(it);
    }
    AddRecord(a, std::move(t), nullptr);
  }
  std::vector<TaskRecord*> extra;
  for (auto& [id, t] : stored) {
    if (t->task_kind() != TaskKind::kTask && a.def->FindTask(t->def_task) != nullptr) {
      extra.push_back(t);
    }
  }
  std::sort(extra.begin(), extra.end(),
            [](const TaskRecord* x, const TaskRecord* y) { return x->order < y->order; });
  for (auto* t : extra) AddRecord(a, std::move(*t), nullptr);
}

// An attempt that was running when the agent stopped: recorded as interrupted and retried
// under its task's policy (a compensation runs again regardless).
void Engine::RecoverInterrupted(Active& a, size_t i, Effects* fx) {
  auto& t = a.tasks[i];
  ++counters_.attempts_interrupted;
  t.exit_code = -1;
  t.signal = 0;
  t.finished = clock_.Now();
  t.pid = 0;
  t.kill_at = 0;
  t.deadline = 0;
  fx->events.push_back(MakeEvent(EventType::kAttemptInterrupted, a, &t));
  if (t.task_kind() == TaskKind::kCompensation) {
    RerunCompensation(a, i, fx);
    return;
  }
  if (options_.faults.restore_as_succeeded) {  // planted bug (common/faults.h)
    t.state = static_cast<uint8_t>(TaskState::kSucceeded);
    t.exit_code = 0;
    Touch(a, i, fx);
    return;
  }
  AttemptFailed(a, i, "interrupted: the agent restarted while the attempt was running", fx);
}

}  // namespace outpost
