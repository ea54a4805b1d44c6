// Engine core: the life of runs and their records (the state machine is in engine.h).
//
// Here: starting runs, the record list, what an attempt's exit means (succeeded, a retry
// after backoff, failed, cancelled), finishing tasks and runs, cancel and approvals. The
// rest of the engine, one concern a file: engine_evaluate.cpp decides
// pending records, engine_dispatch.cpp starts them in free slots, engine_render.cpp
// renders their templates, engine_fanout.cpp expands for_each tasks,
// engine_compensation.cpp runs the saga, engine_timers.cpp fires deadlines,
// engine_restore.cpp resumes runs after a restart.
//
// An entry point that changes what is decidable ends with Evaluate, then MaybeFinishRun,
// then Dispatch, so its Effects hold everything that followed from it (StartRun too: a run
// whose tasks all end within it, say its only task is skipped, finishes at once). Records
// are only appended: `Active::index` and indices held across calls stay valid.
#include "site-agent/engine.h"

#include <signal.h>

#include <cassert>

namespace outpost {

namespace {

// Why a finished attempt did not succeed, for its record's message.
std::string FailureReason(const ExitInfo& exit, bool timed_out) {
  if (!exit.spawn_error.empty()) return "could not start: " + exit.spawn_error;
  if (timed_out) return "timed out";
  if (!exit.output_error.empty() && exit.exit_code == 0 && exit.signal == 0) {
    return "invalid $OUTPOST_OUTPUT: " + exit.output_error;
  }
  if (exit.signal != 0) return "killed by signal " + std::to_string(exit.signal);
  return "exit code " + std::to_string(exit.exit_code);
}

// The record of a new run of `def`, running from `now`.
RunRecord NewRun(const WorkflowDef& def, const std::string& id,
                 std::map<std::string, std::string> params, const StartOptions& options,
                 TimeMs now) {
  RunRecord r;
  r.id = id;
  r.workflow = def.name;
  r.hash = def.hash;
  r.source = def.source;
  r.params = std::move(params);
  r.request = options.request;
  r.priority = options.priority.value_or(def.priority);
  r.trigger = options.trigger;
  r.state = static_cast<uint8_t>(RunState::kRunning);
  r.created = now;
  r.started = now;
  if (def.timeout > 0) r.deadline = now + def.timeout;
  return r;
}

}  // namespace

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

size_t Engine::AddRecord(Active& a, TaskRecord r, Effects* fx) {
  const std::string def_id = r.task_kind() == TaskKind::kTask ? r.id : r.def_task;
  const TaskDef* td = a.def->FindTask(def_id);
  assert(td != nullptr);
  r.order = static_cast<int32_t>(a.tasks.size());
  a.index[r.id] = a.tasks.size();
  a.tasks.push_back(std::move(r));
  a.defs.push_back(td);
  a.queued.push_back(false);
  if (fx != nullptr) Touch(a, a.tasks.size() - 1, fx);
  return a.tasks.size() - 1;
}

Status Engine::StartRun(std::shared_ptr<const WorkflowDef> def, const std::string& run_id,
                        const std::map<std::string, std::string>& params, Effects* fx,
                        const std::string& request) {
  StartOptions o;
  o.request = request;
  return StartRun(std::move(def), run_id, params, fx, o);
}

int Engine::ActiveRunsOf(const std::string& workflow) const {
  int n = 0;
  for (const auto& [id, a] : runs_) {
    if (a.rec.workflow == workflow && !IsFinal(a.rec.run_state())) ++n;
  }
  return n;
}

Status Engine::Admit(const WorkflowDef& def) const {
  if (def.concurrency > 0 && ActiveRunsOf(def.name) >= def.concurrency) {
    return Status::ResourceExhausted("workflow '" + def.name + "' already has " +
                                     std::to_string(def.concurrency) +
                                     " active run(s), its concurrency limit");
  }
  for (const auto& td : def.tasks) {
    if (!td.queue.empty() && !options_.queues.count(td.queue)) {
      return Status::InvalidArgument("task '" + td.id + "' uses queue '" + td.queue +
                                     "', which this site does not define (agent option --queue)");
    }
  }
  return Status::Ok();
}

Status Engine::StartRun(std::shared_ptr<const WorkflowDef> def, const std::string& run_id,
                        const std::map<std::string, std::string>& params, Effects* fx,
                        const StartOptions& options) {
  if (runs_.count(run_id)) return Status::AlreadyExists("run '" + run_id + "' already exists");
  // Secret params arrive sealed; in params (and so in every event) they are a placeholder.
  std::map<std::string, std::string> given = params;
  for (const auto& [name, sealed] : options.sealed) {
    const ParamDef* pd = nullptr;
    for (const auto& p : def->params) pd = p.name == name ? &p : pd;
    if (!pd || !pd->secret) {
      return Status::InvalidArgument("workflow '" + def->name + "' has no secret param '" + name + "'");
    }
    given[name] = kSecretPlaceholder;
  }
  for (const auto& pd : def->params) {
    if (!pd.secret) continue;
    if (!options.sealed.count(pd.name)) {
      return Status::InvalidArgument(
          "workflow '" + def->name + "' needs secret param '" + pd.name + "'" +
          (params.count(pd.name) ? " sealed to this site (outpostctl seals it; it never travels in clear)"
                                 : ""));
    }
  }
  OUTPOST_ASSIGN_OR_RETURN(auto resolved, def->ResolveParams(given));
  OUTPOST_RETURN_IF_ERROR(Admit(*def));
  Active a;
  a.rec = NewRun(*def, run_id, std::move(resolved), options, clock_.Now());
  a.rec.sealed = options.sealed;
  a.def = std::move(def);
  for (const auto& td : a.def->tasks) {
    TaskRecord t;
    t.id = td.id;
    AddRecord(a, std::move(t), fx);
  }

  Event created = MakeEvent(EventType::kRunCreated, a, nullptr);
  created.workflow = a.rec.workflow;
  created.message = a.rec.hash;
  created.params = a.rec.params;
  created.request = options.request;
  for (const auto& t : a.tasks) created.tasks.push_back(t.id);
  fx->events.push_back(std::move(created));
  Event started = MakeEvent(EventType::kRunStarted, a, nullptr);
  started.message = options.trigger;
  fx->events.push_back(std::move(started));
  fx->dirty_runs.insert(run_id);
  ++counters_.runs_started;
  auto& ref = runs_.emplace(run_id, std::move(a)).first->second;
  Evaluate(ref, fx);
  MaybeFinishRun(ref, fx);  // every task may have ended already (say, all skipped)
  Dispatch(fx);
  return Status::Ok();
}

Engine::Active* Engine::FindAttempt(const AttemptKey& key, size_t* i) {
  auto it = runs_.find(key.run);
  if (it == runs_.end()) return nullptr;
  auto idx = it->second.index.find(key.task);
  if (idx == it->second.index.end()) return nullptr;
  const auto& t = it->second.tasks[idx->second];
  if (t.task_state() != TaskState::kRunning || t.attempts != key.attempt) return nullptr;
  *i = idx->second;
  return &it->second;
}

void Engine::OnSpawned(const AttemptKey& key, int pid, Effects* fx) {
  size_t i = 0;
  Active* a = FindAttempt(key, &i);
  if (a == nullptr) return;
  a->tasks[i].pid = pid;
  Touch(*a, i, fx);
}

void Engine::OnExit(const AttemptKey& key, const ExitInfo& exit, Effects* fx) {
  size_t i = 0;
  Active* found = FindAttempt(key, &i);
  if (found == nullptr) {
    ++counters_.stale_exits;
    return;
  }
  Active& a = *found;
  ReleaseSlot(a, i);
  auto& t = a.tasks[i];
  t.exit_code = exit.exit_code;
  t.signal = exit.signal;
  t.finished = clock_.Now();
  t.deadline = 0;
  t.kill_at = 0;
  t.pid = 0;
  if (a.rec.sealed.empty()) {
    OnRedactedExit(a, i, exit, fx);
    return;
  }
  // No secret leaves in an output tail, a published output or a fan-out's items.
  ExitInfo redacted = exit;
  RedactSecrets(a, &redacted);
  OnRedactedExit(a, i, redacted, fx);
}

void Engine::RedactSecrets(const Active& a, ExitInfo* exit) const {
  if (!options_.open_secret) return;
  for (const auto& [name, sealed] : a.rec.sealed) {
    auto value = options_.open_secret(sealed);
    if (!value.ok() || value->size() < 3) continue;  // too short to tell from text
    auto scrub = [&](std::string* s) {
      for (size_t pos = 0; (pos = s->find(*value, pos)) != std::string::npos;) {
        s->replace(pos, value->size(), kSecretPlaceholder);
        pos += sizeof kSecretPlaceholder - 1;
      }
    };
    scrub(&exit->output);
    for (auto& [k, v] : exit->outputs) scrub(&v);
  }
}

void Engine::OnRedactedExit(Active& a, size_t i, const ExitInfo& exit, Effects* fx) {
  auto& t = a.tasks[i];
  Event fin = MakeEvent(
      exit.spawn_error.empty() ? EventType::kAttemptFinished : EventType::kAttemptSpawnFailed, a,
      &t);
  fin.output = exit.output;
  fin.message = exit.spawn_error.empty() ? exit.leftovers : exit.spawn_error;
  fx->events.push_back(std::move(fin));

  const bool ok = exit.spawn_error.empty() && exit.exit_code == 0 && exit.signal == 0 &&
                  !t.timed_out && exit.output_error.empty();
  if (ok) {
    t.outputs = exit.outputs;
    KeepFanOutSource(a, i, exit.output);
    FinishTask(a, i, TaskState::kSucceeded, exit.leftovers, fx);  // "" or what was killed
  } else if (Cancelling(a, i)) {
    FinishTask(a, i, TaskState::kCancelled,
               "killed: run cancelled" + (exit.leftovers.empty() ? "" : "; " + exit.leftovers), fx);
  } else {
    // What was done to processes the attempt left behind, as a succeeded task says it.
    std::string why = FailureReason(exit, t.timed_out);
    if (!exit.leftovers.empty() && exit.spawn_error.empty()) why += "; " + exit.leftovers;
    AttemptFailed(a, i, why, fx);
  }
  Evaluate(a, fx);
  MaybeFinishRun(a, fx);
  Dispatch(fx);
}

void Engine::AttemptFailed(Active& a, size_t i, const std::string& why, Effects* fx) {
  auto& t = a.tasks[i];
  const RetryPolicy& retry = a.defs[i]->retry;
  // faults.extra_retry: the planted off-by-one (common/faults.h).
  if (!Cancelling(a, i) && t.attempts <= retry.max + (options_.faults.extra_retry ? 1 : 0)) {
    t.state = static_cast<uint8_t>(TaskState::kWaiting);
    t.retry_at = clock_.Now() + BackoffDelay(retry.backoff, t.attempts, rng_);
    t.message = why + "; retry " + std::to_string(t.attempts) + " of " + std::to_string(retry.max) +
                " at " + FormatTime(t.retry_at);
    Touch(a, i, fx);
    Event e = MakeEvent(EventType::kRetryScheduled, a, &t);
    e.message = t.message;
    fx->events.push_back(std::move(e));
    return;
  }
  FinishTask(a, i, Cancelling(a, i) ? TaskState::kCancelled : TaskState::kFailed, why, fx);
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
  if (t.task_kind() == TaskKind::kInstance) MaybeFinishFanOut(a, a.index.at(t.parent), fx);
}

void Engine::MaybeFinishRun(Active& a, Effects* fx) {
  if (IsFinal(a.rec.run_state())) return;
  RunState s = RunState::kSucceeded;
  if (a.rec.compensating) {
    const std::optional<RunState> undone = CompensationOutcome(a);
    if (!undone) return;
    s = *undone;
  } else {
    bool any_failed = false;
    for (const auto& t : a.tasks) {
      if (!IsFinal(t.task_state())) return;
      any_failed = any_failed || t.task_state() == TaskState::kFailed;
    }
    if (a.rec.timed_out) {
      s = RunState::kFailed;
    } else if (a.rec.cancel_requested) {
      s = RunState::kCancelled;
    } else if (any_failed) {
      s = RunState::kFailed;
    }
    if (s != RunState::kSucceeded && BeginCompensation(a, s, fx)) return;
  }
  a.rec.state = static_cast<uint8_t>(s);
  a.rec.finished = clock_.Now();
  a.rec.deadline = 0;
  a.rec.compensating = false;  // a finished run compensates no more (its state says how)
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
  if (it->second.rec.compensating) {
    return Status::FailedPrecondition("run '" + run_id +
                                      "' is running its compensations, which are not cancelled");
  }
  CancelInternal(it->second, reason, fx);
  return Status::Ok();
}

// Records not started yet are cancelled at once; running attempts get SIGTERM (SIGKILL
// after kill_grace, from Tick) and are cancelled when they exit.
void Engine::CancelInternal(Active& a, const std::string& reason, Effects* fx) {
  if (a.rec.cancel_requested || a.rec.compensating || IsFinal(a.rec.run_state())) return;
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
        if (t.instances > 0) break;  // a for_each task: its instances are cancelled one by one
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

// A gate takes no slot: it waits for a decision (Approve) or its timeout (Tick).
void Engine::RequestApproval(Active& a, size_t i, Effects* fx) {
  auto& t = a.tasks[i];
  const TaskDef& td = *a.defs[i];
  t.state = static_cast<uint8_t>(TaskState::kAwaitingApproval);
  t.started = clock_.Now();
  t.deadline = td.timeout > 0 ? t.started + td.timeout : 0;
  t.message = "waiting for outpostctl run approve " + a.rec.id + " " + t.id;
  Touch(a, i, fx);
  Event e = MakeEvent(EventType::kApprovalRequested, a, &t);
  e.message = t.message;
  fx->events.push_back(std::move(e));
}

Status Engine::Approve(const std::string& run_id, const std::string& task, bool approved,
                       const std::string& author, Effects* fx) {
  auto it = runs_.find(run_id);
  if (it == runs_.end()) {
    return Status::NotFound("run '" + run_id + "' is not active (unknown or already finished)");
  }
  Active& a = it->second;
  auto idx = a.index.find(task);
  if (idx == a.index.end()) {
    return Status::NotFound("run " + run_id + " has no task '" + task + "'");
  }
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
