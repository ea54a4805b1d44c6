// Compensation (the saga): a run that would end failed or cancelled undoes what it did.
//
// Once every record of such a run is final, MaybeFinishRun calls BeginCompensation. If
// any succeeded task or instance declares `compensate` (a for_each task is undone through
// its instances, not itself), the run stays running with `compensating` set and `outcome`
// saying what it would have ended as, its workflow timeout cleared, and gets one record
// "compensate:ID" per undo, in CompensationOrder: the latest finished first (ties: the
// later record first). Evaluate queues them one at a time, in that order
// (CompensationTurn); each runs under its task's retry policy and timeout, and a cancel no
// longer applies (Engine::Cancel refuses, Engine::Cancelling). When all are final the run
// ends compensated, or compensation_failed if any did not succeed (CompensationOutcome).
// An undo interrupted by a restart runs again whatever its retry policy
// (RerunCompensation): compensations are written to be repeatable.
#include <algorithm>

#include "site-agent/engine.h"

namespace outpost {

// Compensations run one at a time, in the order they were created.
bool Engine::CompensationTurn(const Active& a, size_t i) const {
  for (size_t k = 0; k < i; ++k) {
    if (a.tasks[k].task_kind() == TaskKind::kCompensation && !IsFinal(a.tasks[k].task_state())) {
      return false;
    }
  }
  return true;
}

// The records to undo, the one that finished last first.
std::vector<size_t> Engine::CompensationOrder(const Active& a) const {
  std::vector<size_t> todo;
  for (size_t i = 0; i < a.tasks.size(); ++i) {
    const auto& t = a.tasks[i];
    if (t.task_state() != TaskState::kSucceeded || !a.defs[i]->has_compensate()) continue;
    if (t.task_kind() == TaskKind::kTask && a.defs[i]->for_each.present) continue;  // instances
    todo.push_back(i);
  }
  std::sort(todo.begin(), todo.end(), [&a](size_t x, size_t y) {
    const auto& tx = a.tasks[x];
    const auto& ty = a.tasks[y];
    return tx.finished != ty.finished ? tx.finished > ty.finished : tx.order > ty.order;
  });
  return todo;
}

// False when there is nothing to undo: the run ends as `outcome`.
bool Engine::BeginCompensation(Active& a, RunState outcome, Effects* fx) {
  const std::vector<size_t> todo = CompensationOrder(a);
  if (todo.empty()) return false;
  a.rec.compensating = true;
  a.rec.outcome = RunStateName(outcome);
  a.rec.deadline = 0;
  fx->dirty_runs.insert(a.rec.id);
  std::string list;
  std::vector<TaskRecord> comps;
  for (size_t i : todo) {
    TaskRecord c;
    c.id = "compensate:" + a.tasks[i].id;
    c.kind = static_cast<uint8_t>(TaskKind::kCompensation);
    c.def_task = a.defs[i]->id;
    c.parent = a.tasks[i].id;
    c.item = a.tasks[i].item;
    list += (list.empty() ? "" : ", ") + a.tasks[i].id;
    comps.push_back(std::move(c));
  }
  Event e = MakeEvent(EventType::kCompensationStarted, a, nullptr);
  e.state = a.rec.outcome;
  e.message = "run " + a.rec.outcome + "; compensating " + list;
  fx->events.push_back(std::move(e));
  for (auto& c : comps) AddRecord(a, std::move(c), fx);
  Evaluate(a, fx);  // queues the first compensation
  return true;
}

std::optional<RunState> Engine::CompensationOutcome(const Active& a) const {
  bool comp_failed = false;
  for (const auto& t : a.tasks) {
    if (t.task_kind() != TaskKind::kCompensation) continue;
    if (!IsFinal(t.task_state())) return std::nullopt;
    comp_failed = comp_failed || t.task_state() != TaskState::kSucceeded;
  }
  return comp_failed ? RunState::kCompensationFailed : RunState::kCompensated;
}

// An undo cut short must still happen: it runs again whatever its retry policy
// (compensations are written to be repeatable).
void Engine::RerunCompensation(Active& a, size_t i, Effects* fx) {
  auto& t = a.tasks[i];
  t.state = static_cast<uint8_t>(TaskState::kPending);
  t.message = "interrupted: the agent restarted; running the compensation again";
  Touch(a, i, fx);
}

}  // namespace outpost
