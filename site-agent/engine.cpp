#include "site-agent/engine.h"

#include "common/expr.h"
#include "common/template.h"

#include <signal.h>

#include <algorithm>
#include <cassert>

namespace outpost {

Engine::Engine(const Clock& clock, Rng* rng, EngineOptions options)
    : clock_(clock), rng_(rng), options_(options) {
  if (options_.max_parallel < 1) options_.max_parallel = 1;
}

Event Engine::MakeEvent(EventType type, const Active& a, const TaskRecord* t) const {
  Event e;
  e.time = clock_.Now();
  e.type = static_cast<uint8_t>(type);
  e.run = a.rec.id;
  if (t != nullptr) {
    e.task = t->id;
    e.attempt = t->attempts;
    e.state = TaskStateName(t->task_state());
    e.exit_code = t->exit_code;
    e.signal = t->signal;
  }
  return e;
}

Status Engine::StartRun(std::shared_ptr<const WorkflowDef> def, const std::string& run_id,
                        const std::map<std::string, std::string>& params, Effects* fx,
                        const std::string& request) {
  if (runs_.count(run_id)) return Status::AlreadyExists("run '" + run_id + "' already exists");
  OUTPOST_ASSIGN_OR_RETURN(auto resolved, def->ResolveParams(params));
  const TimeMs now = clock_.Now();
  Active a;
  a.rec.id = run_id;
  a.rec.workflow = def->name;
  a.rec.hash = def->hash;
  a.rec.source = def->source;
  a.rec.params = std::move(resolved);
  a.rec.request = request;
  a.rec.state = static_cast<uint8_t>(RunState::kRunning);
  a.rec.created = now;
  a.rec.started = now;
  if (def->timeout > 0) a.rec.deadline = now + def->timeout;
  for (const auto& td : def->tasks) {
    TaskRecord t;
    t.id = td.id;
    t.order = static_cast<int32_t>(a.tasks.size());
    a.index[t.id] = a.tasks.size();
    a.tasks.push_back(std::move(t));
  }
  a.queued.assign(a.tasks.size(), false);
  a.def = std::move(def);

  Event created = MakeEvent(EventType::kRunCreated, a, nullptr);
  created.workflow = a.rec.workflow;
  created.message = a.rec.hash;
  created.params = a.rec.params;
  created.request = request;
  for (const auto& t : a.tasks) created.tasks.push_back(t.id);
  fx->events.push_back(std::move(created));
  fx->events.push_back(MakeEvent(EventType::kRunStarted, a, nullptr));
  fx->dirty_runs.insert(run_id);
  for (size_t i = 0; i < a.tasks.size(); ++i) Touch(a, i, fx);
  ++counters_.runs_started;
  auto& ref = runs_.emplace(run_id, std::move(a)).first->second;
  Evaluate(ref, fx);
  Dispatch(fx);
  return Status::Ok();
}

Status Engine::Restore(RunRecord run, std::vector<TaskRecord> tasks, Effects* fx) {
  if (IsFinal(run.run_state())) return Status::Ok();
  if (runs_.count(run.id)) return Status::AlreadyExists("run '" + run.id + "' already active");
  auto parsed = ParseWorkflow(run.source, "run " + run.id);
  if (!parsed.ok()) return parsed.status().WithContext("restore run " + run.id);
  Active a;
  a.def = std::make_shared<const WorkflowDef>(std::move(parsed).value());
  a.rec = std::move(run);
  // Tasks in definition order; a task missing from the store starts pending.
  for (const auto& td : a.def->tasks) {
    TaskRecord t;
    t.id = td.id;
    for (auto& stored : tasks) {
      if (stored.id == td.id) t = std::move(stored);
    }
    t.order = static_cast<int32_t>(a.tasks.size());
    a.index[t.id] = a.tasks.size();
    a.tasks.push_back(std::move(t));
  }
  a.queued.assign(a.tasks.size(), false);
  auto& ref = runs_.emplace(a.rec.id, std::move(a)).first->second;
  for (size_t i = 0; i < ref.tasks.size(); ++i) {
    auto& t = ref.tasks[i];
    if (t.task_state() != TaskState::kRunning) continue;
    ++counters_.attempts_interrupted;
    t.exit_code = -1;
    t.signal = 0;
    t.finished = clock_.Now();
    t.pid = 0;
    t.kill_at = 0;
    t.deadline = 0;
    fx->events.push_back(MakeEvent(EventType::kAttemptInterrupted, ref, &t));
    AttemptFailed(ref, i, "interrupted: the agent restarted while the attempt was running", fx);
  }
  Evaluate(ref, fx);
  MaybeFinishRun(ref, fx);
  Dispatch(fx);
  return Status::Ok();
}

void Engine::Evaluate(Active& a, Effects* fx) {
  bool changed = true;
  while (changed) {  // skips can make further tasks decidable
    changed = false;
    for (size_t i = 0; i < a.tasks.size(); ++i) {
      auto& t = a.tasks[i];
      if (t.task_state() != TaskState::kPending || a.queued[i]) continue;
      if (a.rec.cancel_requested) {
        FinishTask(a, i, TaskState::kCancelled, "run cancelled before the task started", fx);
        changed = true;
        continue;
      }
      const TaskDef& td = a.def->tasks[i];
      size_t n_final = 0, n_succeeded = 0, n_failed = 0;
      std::string blocker, failed_dep;
      for (const auto& dep : td.needs) {
        const auto& d = a.tasks[a.index.at(dep)];
        if (!IsFinal(d.task_state())) continue;
        ++n_final;
        if (d.task_state() == TaskState::kSucceeded) {
          ++n_succeeded;
        } else if (blocker.empty()) {
          blocker = dep + " " + TaskStateName(d.task_state());
        }
        if (d.task_state() == TaskState::kFailed) {
          ++n_failed;
          if (failed_dep.empty()) failed_dep = dep;
        }
      }
      const bool all_final = n_final == td.needs.size();
      const bool no_deps = td.needs.empty();
      bool run_it = false, decided = true;
      std::string why;
      if (td.trigger) {
        switch (*td.trigger) {
          case Trigger::kAllSuccess:
            decided = all_final;
            run_it = n_succeeded == td.needs.size();
            why = "skipped: upstream " + blocker;
            break;
          case Trigger::kAllDone:
            decided = all_final;
            run_it = true;
            break;
          case Trigger::kOneSuccess:
            run_it = no_deps || n_succeeded > 0;
            decided = run_it || all_final;
            why = "skipped: no upstream task succeeded";
            break;
          case Trigger::kOneFailed:
            run_it = no_deps || n_failed > 0;
            decided = run_it || all_final;
            why = "skipped: no upstream task failed";
            break;
          case Trigger::kNoneFailed:
            run_it = n_failed == 0;
            decided = all_final || n_failed > 0;
            why = "skipped: upstream " + failed_dep + " failed";
            break;
        }
      } else if (!td.when_expr.empty()) {
        decided = all_final;
        if (decided) {
          auto verdict = EvalWhen(a, td);
          if (!verdict.ok()) {
            FinishTask(a, i, TaskState::kFailed, "cannot evaluate 'when': " + verdict.status().message(),
                       fx);
            changed = true;
            continue;
          }
          run_it = *verdict;
          why = "skipped: 'when' " + td.when_expr + " is false";
        }
      } else {
        decided = all_final;
        switch (td.when) {
          case When::kSuccess:
            run_it = n_succeeded == td.needs.size();
            why = "skipped: upstream " + blocker;
            break;
          case When::kFailure:
            run_it = n_failed > 0;
            why = "skipped: no upstream task failed";
            break;
          case When::kAlways:
            run_it = true;
            break;
        }
      }
      if (!decided) continue;
      if (run_it && td.approval) {
        // A gate takes no slot: it waits for a decision (or its timeout).
        t.state = static_cast<uint8_t>(TaskState::kAwaitingApproval);
        t.started = clock_.Now();
        t.deadline = td.timeout > 0 ? t.started + td.timeout : 0;
        t.message = "waiting for outpostctl run approve " + a.rec.id + " " + t.id;
        Touch(a, i, fx);
        Event e = MakeEvent(EventType::kApprovalRequested, a, &t);
        e.message = t.message;
        fx->events.push_back(std::move(e));
      } else if (run_it) {
        a.queued[i] = true;
        ready_.emplace_back(a.rec.id, i);
      } else {
        FinishTask(a, i, TaskState::kSkipped, why, fx);
        changed = true;
      }
    }
  }
}

void Engine::Dispatch(Effects* fx) {
  while (running_ < options_.max_parallel && !ready_.empty()) {
    auto [run_id, i] = ready_.front();
    ready_.pop_front();
    auto it = runs_.find(run_id);
    if (it == runs_.end() || !it->second.queued[i]) continue;  // stale entry
    it->second.queued[i] = false;
    StartAttempt(it->second, i, fx);
  }
}

TemplateContext Engine::Values(const Active& a) const {
  TemplateContext ctx;
  ctx.params = &a.rec.params;
  ctx.site_name = options_.site_name;
  ctx.site_labels = &options_.site_labels;
  ctx.outputs = [&a](const std::string& task) -> const std::map<std::string, std::string>* {
    auto it = a.index.find(task);
    return it == a.index.end() ? nullptr : &a.tasks[it->second].outputs;
  };
  return ctx;
}

Result<bool> Engine::EvalWhen(const Active& a, const TaskDef& td) const {
  OUTPOST_ASSIGN_OR_RETURN(auto e, ParseExpr(td.when_expr));
  ExprContext ctx;
  ctx.values = Values(a);
  ctx.task_state = [&a](const std::string& task) -> std::string {
    auto it = a.index.find(task);
    return it == a.index.end() ? "" : TaskStateName(a.tasks[it->second].task_state());
  };
  return EvalExpr(e, ctx);
}

bool Engine::Render(const Active& a, const TaskDef& td, StartProcess* sp, std::string* why) const {
  TemplateContext ctx = Values(a);
  auto render = [&](const std::string& in, std::string* out) {
    auto r = RenderTemplate(in, ctx);
    if (!r.ok()) {
      *why = r.status().message();
      return false;
    }
    *out = std::move(r).value();
    return true;
  };
  if (!td.run.empty()) {
    sp->argv.resize(td.run.size());
    for (size_t k = 0; k < td.run.size(); ++k) {
      if (!render(td.run[k], &sp->argv[k])) return false;
    }
  } else {
    std::string cmd;
    if (!render(td.shell, &cmd)) return false;
    sp->argv = {"/bin/sh", "-c", cmd};
  }
  for (const auto& [k, v] : td.env) {
    std::string value;
    if (!render(v, &value)) return false;
    sp->env.emplace_back(k, std::move(value));
  }
  return render(td.workdir, &sp->workdir);
}

void Engine::StartAttempt(Active& a, size_t i, Effects* fx) {
  auto& t = a.tasks[i];
  const TaskDef& td = a.def->tasks[i];
  StartProcess sp;
  std::string why;
  if (!Render(a, td, &sp, &why)) {
    // Nothing to retry: the same references would fail the same way.
    FinishTask(a, i, TaskState::kFailed, "cannot start: " + why, fx);
    Evaluate(a, fx);
    MaybeFinishRun(a, fx);
    return;
  }
  const TimeMs now = clock_.Now();
  t.state = static_cast<uint8_t>(TaskState::kRunning);
  ++t.attempts;
  t.started = now;
  t.finished = 0;
  t.retry_at = 0;
  t.exit_code = -1;
  t.signal = 0;
  t.timed_out = false;
  t.kill_at = 0;
  t.pid = 0;
  t.message.clear();
  t.outputs.clear();
  t.deadline = td.timeout > 0 ? now + td.timeout : 0;
  ++running_;
  ++counters_.attempts_started;
  Touch(a, i, fx);
  fx->events.push_back(MakeEvent(EventType::kAttemptStarted, a, &t));

  sp.key = {a.rec.id, t.id, t.attempts};
  for (const auto& [k, v] : a.rec.params) {
    std::string name = "OUTPOST_PARAM_";
    for (char c : k) {
      name += (c == '-' || c == '.') ? '_'
                                     : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    sp.env.emplace_back(name, v);
  }
  sp.env.emplace_back("OUTPOST_WORKFLOW", a.rec.workflow);
  sp.env.emplace_back("OUTPOST_RUN_ID", a.rec.id);
  sp.env.emplace_back("OUTPOST_TASK_ID", t.id);
  sp.env.emplace_back("OUTPOST_ATTEMPT", std::to_string(t.attempts));
  fx->starts.push_back(std::move(sp));
}

void Engine::OnSpawned(const AttemptKey& key, int pid, Effects* fx) {
  auto it = runs_.find(key.run);
  if (it == runs_.end()) return;
  auto idx = it->second.index.find(key.task);
  if (idx == it->second.index.end()) return;
  auto& t = it->second.tasks[idx->second];
  if (t.task_state() != TaskState::kRunning || t.attempts != key.attempt) return;
  t.pid = pid;
  Touch(it->second, idx->second, fx);
}

void Engine::OnExit(const AttemptKey& key, const ExitInfo& exit, Effects* fx) {
  auto it = runs_.find(key.run);
  if (it == runs_.end()) {
    ++counters_.stale_exits;
    return;
  }
  Active& a = it->second;
  auto idx = a.index.find(key.task);
  if (idx == a.index.end()) {
    ++counters_.stale_exits;
    return;
  }
  const size_t i = idx->second;
  auto& t = a.tasks[i];
  if (t.task_state() != TaskState::kRunning || t.attempts != key.attempt) {
    ++counters_.stale_exits;
    return;
  }
  --running_;
  t.exit_code = exit.exit_code;
  t.signal = exit.signal;
  t.finished = clock_.Now();
  t.deadline = 0;
  t.kill_at = 0;
  t.pid = 0;
  Event fin = MakeEvent(exit.spawn_error.empty() ? EventType::kAttemptFinished
                                                 : EventType::kAttemptSpawnFailed,
                        a, &t);
  fin.output = exit.output;
  fin.message = exit.spawn_error;
  fx->events.push_back(std::move(fin));

  const bool ok = exit.spawn_error.empty() && exit.exit_code == 0 && exit.signal == 0 &&
                  !t.timed_out && exit.output_error.empty();
  if (ok) {
    t.outputs = exit.outputs;
    FinishTask(a, i, TaskState::kSucceeded, "", fx);
  } else if (a.rec.cancel_requested) {
    FinishTask(a, i, TaskState::kCancelled, "killed: run cancelled", fx);
  } else {
    std::string why;
    if (!exit.spawn_error.empty()) why = "could not start: " + exit.spawn_error;
    else if (t.timed_out) why = "timed out";
    else if (!exit.output_error.empty() && exit.exit_code == 0 && exit.signal == 0)
      why = "invalid $OUTPOST_OUTPUT: " + exit.output_error;
    else if (exit.signal != 0) why = "killed by signal " + std::to_string(exit.signal);
    else why = "exit code " + std::to_string(exit.exit_code);
    AttemptFailed(a, i, why, fx);
  }
  Evaluate(a, fx);
  MaybeFinishRun(a, fx);
  Dispatch(fx);
}

void Engine::AttemptFailed(Active& a, size_t i, const std::string& why, Effects* fx) {
  auto& t = a.tasks[i];
  const RetryPolicy& retry = a.def->tasks[i].retry;
  if (!a.rec.cancel_requested && t.attempts <= retry.max) {
    t.state = static_cast<uint8_t>(TaskState::kWaiting);
    t.retry_at = clock_.Now() + BackoffDelay(retry.backoff, t.attempts, rng_);
    t.message = why + "; retry " + std::to_string(t.attempts) + " of " +
                std::to_string(retry.max) + " at " + FormatTime(t.retry_at);
    Touch(a, i, fx);
    Event e = MakeEvent(EventType::kRetryScheduled, a, &t);
    e.message = t.message;
    fx->events.push_back(std::move(e));
    return;
  }
  FinishTask(a, i, a.rec.cancel_requested ? TaskState::kCancelled : TaskState::kFailed, why, fx);
}

void Engine::FinishTask(Active& a, size_t i, TaskState s, const std::string& why, Effects* fx) {
  auto& t = a.tasks[i];
  t.state = static_cast<uint8_t>(s);
  if (t.finished == 0 || s == TaskState::kSkipped || s == TaskState::kCancelled) {
    t.finished = clock_.Now();
  }
  t.retry_at = 0;
  t.message = why;
  a.queued[i] = false;
  Touch(a, i, fx);
  Event e = MakeEvent(EventType::kTaskFinished, a, &t);
  e.message = why;
  fx->events.push_back(std::move(e));
}

void Engine::MaybeFinishRun(Active& a, Effects* fx) {
  if (IsFinal(a.rec.run_state())) return;
  bool any_failed = false;
  for (const auto& t : a.tasks) {
    if (!IsFinal(t.task_state())) return;
    any_failed = any_failed || t.task_state() == TaskState::kFailed;
  }
  RunState s = RunState::kSucceeded;
  if (a.rec.timed_out) s = RunState::kFailed;
  else if (a.rec.cancel_requested) s = RunState::kCancelled;
  else if (any_failed) s = RunState::kFailed;
  a.rec.state = static_cast<uint8_t>(s);
  a.rec.finished = clock_.Now();
  a.rec.deadline = 0;
  fx->dirty_runs.insert(a.rec.id);
  Event e = MakeEvent(EventType::kRunFinished, a, nullptr);
  e.state = RunStateName(s);
  e.message = a.rec.message;
  fx->events.push_back(std::move(e));
  fx->finished_runs.push_back(a.rec.id);
  ++counters_.runs_finished;
}

Status Engine::Cancel(const std::string& run_id, const std::string& reason, Effects* fx) {
  auto it = runs_.find(run_id);
  if (it == runs_.end()) {
    return Status::NotFound("run '" + run_id + "' is not active (unknown or already finished)");
  }
  CancelInternal(it->second, reason, fx);
  return Status::Ok();
}

Status Engine::Approve(const std::string& run_id, const std::string& task, bool approved,
                       const std::string& author, Effects* fx) {
  auto it = runs_.find(run_id);
  if (it == runs_.end()) {
    return Status::NotFound("run '" + run_id + "' is not active (unknown or already finished)");
  }
  Active& a = it->second;
  auto idx = a.index.find(task);
  if (idx == a.index.end()) return Status::NotFound("run " + run_id + " has no task '" + task + "'");
  auto& t = a.tasks[idx->second];
  if (t.task_state() != TaskState::kAwaitingApproval) {
    return Status::FailedPrecondition("task '" + task + "' is " + TaskStateName(t.task_state()) +
                                      ", not awaiting approval");
  }
  const std::string who = author.empty() ? "unknown" : author;
  Event e = MakeEvent(EventType::kApprovalDecided, a, &t);
  e.message = std::string(approved ? "approved" : "rejected") + " by " + who;
  fx->events.push_back(std::move(e));
  t.finished = clock_.Now();
  t.deadline = 0;
  FinishTask(a, idx->second, approved ? TaskState::kSucceeded : TaskState::kFailed,
             std::string(approved ? "approved" : "rejected") + " by " + who, fx);
  Evaluate(a, fx);
  MaybeFinishRun(a, fx);
  Dispatch(fx);
  return Status::Ok();
}

void Engine::CancelInternal(Active& a, const std::string& reason, Effects* fx) {
  if (a.rec.cancel_requested || IsFinal(a.rec.run_state())) return;  // idempotent
  a.rec.cancel_requested = true;
  a.rec.message = reason;
  fx->dirty_runs.insert(a.rec.id);
  Event e = MakeEvent(EventType::kCancelRequested, a, nullptr);
  e.message = reason;
  fx->events.push_back(std::move(e));
  const TimeMs now = clock_.Now();
  for (size_t i = 0; i < a.tasks.size(); ++i) {
    auto& t = a.tasks[i];
    switch (t.task_state()) {
      case TaskState::kPending:
      case TaskState::kWaiting:
      case TaskState::kAwaitingApproval:
        FinishTask(a, i, TaskState::kCancelled, "cancelled: " + reason, fx);
        break;
      case TaskState::kRunning:
        fx->kills.push_back({{a.rec.id, t.id, t.attempts}, SIGTERM});
        t.kill_at = now + options_.kill_grace;
        Touch(a, i, fx);
        break;
      default:
        break;
    }
  }
  MaybeFinishRun(a, fx);
}

void Engine::Tick(Effects* fx) {
  const TimeMs now = clock_.Now();
  for (auto& [id, a] : runs_) {
    if (a.rec.deadline > 0 && now >= a.rec.deadline && !a.rec.cancel_requested) {
      a.rec.timed_out = true;
      CancelInternal(a, "workflow timeout", fx);
    }
    bool requeued = false;
    for (size_t i = 0; i < a.tasks.size(); ++i) {
      auto& t = a.tasks[i];
      if (t.task_state() == TaskState::kWaiting && t.retry_at <= now) {
        t.state = static_cast<uint8_t>(TaskState::kPending);
        t.retry_at = 0;
        Touch(a, i, fx);
        requeued = true;
      } else if (t.task_state() == TaskState::kAwaitingApproval && t.deadline > 0 &&
                 now >= t.deadline) {
        Event e = MakeEvent(EventType::kApprovalDecided, a, &t);
        e.message = "no decision before the timeout";
        fx->events.push_back(std::move(e));
        FinishTask(a, i, TaskState::kFailed, "approval timed out", fx);
        Evaluate(a, fx);
        MaybeFinishRun(a, fx);
      } else if (t.task_state() == TaskState::kRunning) {
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
      }
    }
    // A re-queued task goes through Evaluate, which queues it (its deps are final).
    if (requeued) Evaluate(a, fx);
  }
  Dispatch(fx);
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

const RunRecord* Engine::FindRun(const std::string& run_id) const {
  auto it = runs_.find(run_id);
  return it == runs_.end() ? nullptr : &it->second.rec;
}

const TaskRecord* Engine::FindTask(const std::string& run_id, const std::string& task) const {
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return nullptr;
  auto idx = it->second.index.find(task);
  return idx == it->second.index.end() ? nullptr : &it->second.tasks[idx->second];
}

void Engine::Forget(const std::string& run_id) {
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return;
  assert(IsFinal(it->second.rec.run_state()));
  runs_.erase(it);
}

}  // namespace outpost
