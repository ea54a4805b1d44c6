// Evaluate: deciding the pending records of a run. It never starts anything; it queues
// (Enqueue) and Dispatch starts, later in the same step.
//
// Each pending record not yet queued is looked at again whenever something may have
// changed:
//   - a compensation is queued once every earlier compensation is final (one at a time);
//   - once the run is being cancelled, any other pending record is cancelled;
//   - an instance is queued if its for_each task's `parallelism` allows (TakeInstanceSlot);
//   - a task of the definition is decided from its upstream (`needs`): by its `trigger`
//     if it has one, else by its `when` expression once all upstream is final, else by
//     `when` (success, failure, always). A task that runs is queued, becomes an approval
//     gate or expands into instances (for_each); one that does not is skipped, saying why.
// Skipping, failing and expanding can make further records decidable, so Evaluate passes
// over the run until a pass changes nothing.
#include "site-agent/engine.h"

namespace outpost {

namespace {

// What a task's upstream (its `needs`) has come to so far.
struct Upstream {
  size_t n_needs = 0;
  size_t n_final = 0;
  size_t n_succeeded = 0;
  size_t n_failed = 0;
  std::string blocker;     // "DEP STATE": the first final dependency that did not succeed
  std::string failed_dep;  // the first dependency that failed

  bool all_final() const { return n_final == n_needs; }
};

// Whether a task can be decided yet, and if so whether it runs (else why it is skipped).
struct Verdict {
  bool decided = true;
  bool run_it = false;
  std::string why;
};

Upstream Summarize(const TaskDef& td, const std::vector<TaskRecord>& tasks,
                   const std::map<std::string, size_t>& index, bool failed_is_success) {
  Upstream up;
  up.n_needs = td.needs.size();
  for (const auto& dep : td.needs) {
    const auto& d = tasks[index.at(dep)];
    if (!IsFinal(d.task_state())) continue;
    ++up.n_final;
    if (d.task_state() == TaskState::kSucceeded ||
        (failed_is_success && d.task_state() == TaskState::kFailed)) {
      ++up.n_succeeded;
    } else if (up.blocker.empty()) {
      up.blocker = dep + " " + TaskStateName(d.task_state());
    }
    if (d.task_state() == TaskState::kFailed) {
      ++up.n_failed;
      if (up.failed_dep.empty()) up.failed_dep = dep;
    }
  }
  return up;
}

// A `trigger` may decide before all upstream is final (one_success, one_failed,
// none_failed).
Verdict ByTrigger(Trigger trigger, const Upstream& up) {
  const bool no_deps = up.n_needs == 0;
  Verdict v;
  switch (trigger) {
    case Trigger::kAllSuccess:
      v.decided = up.all_final();
      v.run_it = up.n_succeeded == up.n_needs;
      v.why = "skipped: upstream " + up.blocker;
      break;
    case Trigger::kAllDone:
      v.decided = up.all_final();
      v.run_it = true;
      break;
    case Trigger::kOneSuccess:
      v.run_it = no_deps || up.n_succeeded > 0;
      v.decided = v.run_it || up.all_final();
      v.why = "skipped: no upstream task succeeded";
      break;
    case Trigger::kOneFailed:
      v.run_it = no_deps || up.n_failed > 0;
      v.decided = v.run_it || up.all_final();
      v.why = "skipped: no upstream task failed";
      break;
    case Trigger::kNoneFailed:
      v.run_it = up.n_failed == 0;
      v.decided = up.all_final() || up.n_failed > 0;
      v.why = "skipped: upstream " + up.failed_dep + " failed";
      break;
  }
  return v;
}

// `when` decides once all upstream is final.
Verdict ByWhen(When when, const Upstream& up) {
  Verdict v;
  v.decided = up.all_final();
  switch (when) {
    case When::kSuccess:
      v.run_it = up.n_succeeded == up.n_needs;
      v.why = "skipped: upstream " + up.blocker;
      break;
    case When::kFailure:
      v.run_it = up.n_failed > 0;
      v.why = "skipped: no upstream task failed";
      break;
    case When::kAlways:
      v.run_it = true;
      break;
  }
  return v;
}

}  // namespace

void Engine::Evaluate(Active& a, Effects* fx) {
  if (IsFinal(a.rec.run_state())) return;
  InFlight in_flight;
  bool changed = true;
  while (changed) {  // skips can make further tasks decidable
    changed = false;
    for (size_t i = 0; i < a.tasks.size(); ++i) {
      if (a.tasks[i].task_state() != TaskState::kPending || a.queued[i]) continue;
      if (EvaluatePending(a, i, &in_flight, fx)) changed = true;
    }
  }
}

// Queues or decides one pending record; true when that may make other records decidable.
bool Engine::EvaluatePending(Active& a, size_t i, InFlight* in_flight, Effects* fx) {
  const TaskKind kind = a.tasks[i].task_kind();
  if (kind == TaskKind::kCompensation) {
    if (CompensationTurn(a, i)) Enqueue(a, i);
    return false;
  }
  if (a.rec.cancel_requested) {
    FinishTask(a, i, TaskState::kCancelled, "run cancelled before the task started", fx);
    return true;
  }
  if (kind == TaskKind::kInstance) {
    if (TakeInstanceSlot(a, i, in_flight)) Enqueue(a, i);
    return false;
  }
  return DecideTask(a, i, in_flight, fx);
}

bool Engine::DecideTask(Active& a, size_t i, InFlight* in_flight, Effects* fx) {
  const TaskDef& td = *a.defs[i];
  const Upstream up = Summarize(td, a.tasks, a.index, options_.faults.failed_counts_as_success);
  Verdict v;
  if (td.trigger) {
    v = ByTrigger(*td.trigger, up);
  } else if (!td.when_expr.empty()) {
    v.decided = up.all_final();
    if (v.decided) {
      auto verdict = EvalWhen(a, i);
      if (!verdict.ok()) {
        FinishTask(a, i, TaskState::kFailed,
                   "cannot evaluate 'when': " + verdict.status().message(), fx);
        return true;
      }
      v.run_it = *verdict;
      v.why = "skipped: 'when' " + td.when_expr + " is false";
    }
  } else {
    v = ByWhen(td.when, up);
  }
  if (!v.decided) return false;
  if (v.run_it && td.approval) {
    RequestApproval(a, i, fx);
    return false;
  }
  if (v.run_it && td.for_each.present) {
    Expand(a, i, fx);    // appends records
    in_flight->reset();  // count again, with the new instances
    return true;
  }
  if (v.run_it) {
    Enqueue(a, i);
    return false;
  }
  FinishTask(a, i, TaskState::kSkipped, v.why, fx);
  return true;
}

}  // namespace outpost
