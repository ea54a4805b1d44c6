// Timers: Tick fires what is due; NextDeadline says when Tick next has work.
//
// There is no timer queue: each record carries its own deadlines and Tick walks the
// active runs. Per run, in order: the workflow timeout (the run is cancelled and ends
// failed, or compensates), then per record a retry backoff (the record is pending again
// and Evaluate queues it), an approval gate's timeout (the gate fails), an attempt's
// timeout (SIGTERM to its process group, then SIGKILL after kill_grace; a cancel's SIGTERM
// escalates the same way). A for_each task has no process of its own, so no timer; its
// instances do. NextDeadline must follow the same deadlines as Tick, or the driver would
// sleep through one.
#include <signal.h>

#include "site-agent/engine.h"

namespace outpost {

void Engine::Tick(Effects* fx) {
  const TimeMs now = clock_.Now();
  for (auto& [id, a] : runs_) {
    if (a.rec.deadline > 0 && now >= a.rec.deadline && !a.rec.cancel_requested) {
      a.rec.timed_out = true;
      CancelInternal(a, "workflow timeout", fx);
    }
    bool requeued = false;
    for (size_t i = 0; i < a.tasks.size(); ++i) {
      if (TickTask(a, i, now, fx)) requeued = true;
    }
    // A re-queued task goes through Evaluate, which queues it (its deps are final).
    if (requeued) Evaluate(a, fx);
  }
  Dispatch(fx);
}

// Fires the deadlines of record `i` that are due; true when a retry became due.
bool Engine::TickTask(Active& a, size_t i, TimeMs now, Effects* fx) {
  auto& t = a.tasks[i];
  if (t.task_state() == TaskState::kWaiting && t.retry_at <= now) {
    t.state = static_cast<uint8_t>(TaskState::kPending);
    t.retry_at = 0;
    Touch(a, i, fx);
    return true;
  }
  if (t.task_state() == TaskState::kAwaitingApproval && t.deadline > 0 && now >= t.deadline) {
    Event e = MakeEvent(EventType::kApprovalDecided, a, &t);
    e.message = "no decision before the timeout";
    fx->events.push_back(std::move(e));
    FinishTask(a, i, TaskState::kFailed, "approval timed out", fx);
    Evaluate(a, fx);  // may append records: `t` is no longer valid
    MaybeFinishRun(a, fx);
    return false;
  }
  if (t.task_state() != TaskState::kRunning || t.instances != 0) return false;
  if (t.deadline > 0 && now >= t.deadline && !t.timed_out) {
    t.timed_out = true;
    t.kill_at = now + options_.kill_grace;
    Touch(a, i, fx);
    fx->kills.push_back({{a.rec.id, t.id, t.attempts}, SIGTERM});
    Event e = MakeEvent(EventType::kTimeoutKill, a, &t);
    e.message = "timeout; sent SIGTERM to the process group";
    fx->events.push_back(std::move(e));
  } else if (t.kill_at > 0 && now >= t.kill_at) {
    t.kill_at = 0;
    Touch(a, i, fx);
    fx->kills.push_back({{a.rec.id, t.id, t.attempts}, SIGKILL});
  }
  return false;
}

TimeMs Engine::NextDeadline() const {
  TimeMs next = 0;
  auto consider = [&next](TimeMs t) {
    if (t > 0 && (next == 0 || t < next)) next = t;
  };
  for (const auto& [id, a] : runs_) {
    if (!a.rec.cancel_requested) consider(a.rec.deadline);
    for (const auto& t : a.tasks) {
      if (t.task_state() == TaskState::kWaiting) consider(t.retry_at);
      if (t.task_state() == TaskState::kAwaitingApproval) consider(t.deadline);
      if (t.task_state() == TaskState::kRunning) {
        if (!t.timed_out) consider(t.deadline);
        consider(t.kill_at);
      }
    }
  }
  return next;
}

}  // namespace outpost
