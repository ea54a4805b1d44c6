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
                        const StartOptions& options) {
  if (runs_.count(run_id)) return Status::AlreadyExists("run '" + run_id + "' already exists");
  OUTPOST_ASSIGN_OR_RETURN(auto resolved, def->ResolveParams(params));
  if (def->concurrency > 0 && ActiveRunsOf(def->name) >= def->concurrency) {
    return Status::ResourceExhausted("workflow '" + def->name + "' already has " +
                                     std::to_string(def->concurrency) +
                                     " active run(s), its concurrency limit");
  }
  for (const auto& td : def->tasks) {
    if (!td.queue.empty() && !options_.queues.count(td.queue)) {
      return Status::InvalidArgument("task '" + td.id + "' uses queue '" + td.queue +
                                     "', which this site does not define (agent option --queue)");
    }
  }
  const TimeMs now = clock_.Now();
  Active a;
  a.rec.id = run_id;
  a.rec.workflow = def->name;
  a.rec.hash = def->hash;
  a.rec.source = def->source;
  a.rec.params = std::move(resolved);
  a.rec.request = options.request;
  a.rec.priority = options.priority.value_or(def->priority);
  a.rec.trigger = options.trigger;
  a.rec.state = static_cast<uint8_t>(RunState::kRunning);
  a.rec.created = now;
  a.rec.started = now;
  if (def->timeout > 0) a.rec.deadline = now + def->timeout;
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
  // The definition's tasks in order (a task missing from the store starts pending), then
  // instances and compensations in the order they were created.
  std::map<std::string, TaskRecord*> stored;
  for (auto& t : tasks) stored[t.id] = &t;
  for (const auto& td : a.def->tasks) {
    TaskRecord t;
    t.id = td.id;
    if (auto it = stored.find(td.id); it != stored.end() && it->second->task_kind() == TaskKind::kTask) {
      t = std::move(*it->second);
      stored.erase(it);
    }
    AddRecord(a, std::move(t), nullptr);
  }
  std::vector<TaskRecord*> extra;
  for (auto& [id, t] : stored) {
    if (t->task_kind() != TaskKind::kTask && a.def->FindTask(t->def_task) != nullptr) extra.push_back(t);
  }
  std::sort(extra.begin(), extra.end(),
            [](const TaskRecord* x, const TaskRecord* y) { return x->order < y->order; });
  for (auto* t : extra) AddRecord(a, std::move(*t), nullptr);
  auto& ref = runs_.emplace(a.rec.id, std::move(a)).first->second;
  for (size_t i = 0; i < ref.tasks.size(); ++i) {
    auto& t = ref.tasks[i];
    if (t.task_state() != TaskState::kRunning || t.instances > 0) continue;
    ++counters_.attempts_interrupted;
    t.exit_code = -1;
    t.signal = 0;
    t.finished = clock_.Now();
    t.pid = 0;
    t.kill_at = 0;
    t.deadline = 0;
    fx->events.push_back(MakeEvent(EventType::kAttemptInterrupted, ref, &t));
    if (t.task_kind() == TaskKind::kCompensation) {
      // An undo cut short must still happen: it runs again whatever its retry policy
      // (compensations are written to be repeatable).
      t.state = static_cast<uint8_t>(TaskState::kPending);
      t.message = "interrupted: the agent restarted; running the compensation again";
      Touch(ref, i, fx);
      continue;
    }
    AttemptFailed(ref, i, "interrupted: the agent restarted while the attempt was running", fx);
  }
  Evaluate(ref, fx);
  MaybeFinishRun(ref, fx);
  Dispatch(fx);
  return Status::Ok();
}

void Engine::Evaluate(Active& a, Effects* fx) {
  if (IsFinal(a.rec.run_state())) return;
  // Instances queued or running per for_each task, for its parallelism cap.
  std::map<std::string, int> in_flight;
  bool counted = false;
  auto count_in_flight = [&] {
    if (counted) return;
    counted = true;
    for (size_t k = 0; k < a.tasks.size(); ++k) {
      const auto& r = a.tasks[k];
      if (r.task_kind() != TaskKind::kInstance) continue;
      if (a.queued[k] || r.task_state() == TaskState::kRunning || r.task_state() == TaskState::kWaiting) {
        ++in_flight[r.parent];
      }
    }
  };
  bool changed = true;
  while (changed) {  // skips can make further tasks decidable
    changed = false;
    for (size_t i = 0; i < a.tasks.size(); ++i) {
      if (a.tasks[i].task_state() != TaskState::kPending || a.queued[i]) continue;
      const TaskDef& td = *a.defs[i];
      const TaskKind kind = a.tasks[i].task_kind();
      if (kind == TaskKind::kCompensation) {
        // One at a time, in the order they were created.
        bool earlier_open = false;
        for (size_t k = 0; k < i && !earlier_open; ++k) {
          earlier_open = a.tasks[k].task_kind() == TaskKind::kCompensation &&
                         !IsFinal(a.tasks[k].task_state());
        }
        if (!earlier_open) Enqueue(a, i);
        continue;
      }
      if (a.rec.cancel_requested) {
        FinishTask(a, i, TaskState::kCancelled, "run cancelled before the task started", fx);
        changed = true;
        continue;
      }
      if (kind == TaskKind::kInstance) {
        if (td.for_each.parallelism > 0) {
          count_in_flight();
          int& n = in_flight[a.tasks[i].parent];
          if (n >= td.for_each.parallelism) continue;
          ++n;
        }
        Enqueue(a, i);
        continue;
      }
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
          auto verdict = EvalWhen(a, i);
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
      auto& t = a.tasks[i];
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
      } else if (run_it && td.for_each.present) {
        Expand(a, i, fx);  // appends records: `t` is no longer valid
        counted = false;
        in_flight.clear();
        changed = true;
      } else if (run_it) {
        Enqueue(a, i);
      } else {
        FinishTask(a, i, TaskState::kSkipped, why, fx);
        changed = true;
      }
    }
  }
}

namespace {

std::vector<std::string> SplitItems(const std::string& text, bool lines) {
  std::vector<std::string> out;
  std::string cur;
  auto flush = [&] {
    const auto b = cur.find_first_not_of(" \t\r");
    if (b != std::string::npos) {
      const auto e = cur.find_last_not_of(" \t\r");
      out.push_back(cur.substr(b, e - b + 1));
    }
    cur.clear();
  };
  for (char c : text) {
    const bool sep = lines ? c == '\n' : (c == ',' || c == ' ' || c == '\t' || c == '\n');
    if (sep) flush();
    else cur += c;
  }
  flush();
  return out;
}

}  // namespace

void Engine::Expand(Active& a, size_t i, Effects* fx) {
  const TaskDef& td = *a.defs[i];
  std::vector<std::string> items;
  if (!td.for_each.lines_of.empty()) {
    items = SplitItems(a.tasks[a.index.at(td.for_each.lines_of)].lines, true);
  } else if (!td.for_each.expr.empty()) {
    auto r = RenderTemplate(td.for_each.expr, Values(a, i));
    if (!r.ok()) {
      FinishTask(a, i, TaskState::kFailed, "cannot expand for_each: " + r.status().message(), fx);
      return;
    }
    items = SplitItems(*r, false);
  } else {
    items = td.for_each.items;
  }
  if (items.size() > static_cast<size_t>(kMaxFanOut)) {
    FinishTask(a, i, TaskState::kFailed,
               "cannot expand for_each: " + std::to_string(items.size()) + " items (at most " +
                   std::to_string(kMaxFanOut) + ")",
               fx);
    return;
  }
  const std::string parent = a.tasks[i].id;
  {
    auto& t = a.tasks[i];
    t.state = static_cast<uint8_t>(TaskState::kRunning);
    t.started = clock_.Now();
    t.instances = static_cast<int32_t>(items.size());
    t.outputs = {{"count", std::to_string(items.size())}};
    t.message = std::to_string(items.size()) + " instance(s)";
    Touch(a, i, fx);
    Event e = MakeEvent(EventType::kTaskExpanded, a, &t);
    e.message = t.message;
    fx->events.push_back(std::move(e));
  }
  if (items.empty()) {
    a.tasks[i].outputs = {{"count", "0"}, {"succeeded", "0"}, {"failed", "0"}};
    FinishTask(a, i, TaskState::kSucceeded, "no items", fx);
    return;
  }
  for (size_t k = 0; k < items.size(); ++k) {
    TaskRecord r;
    r.id = parent + "[" + std::to_string(k) + "]";
    r.kind = static_cast<uint8_t>(TaskKind::kInstance);
    r.def_task = td.id;
    r.parent = parent;
    r.item = items[k];
    AddRecord(a, std::move(r), fx);
  }
}

void Engine::MaybeFinishFanOut(Active& a, size_t parent, Effects* fx) {
  auto& p = a.tasks[parent];
  if (p.task_state() != TaskState::kRunning || p.instances == 0) return;
  int succeeded = 0, failed = 0, cancelled = 0, total = 0;
  for (const auto& r : a.tasks) {
    if (r.task_kind() != TaskKind::kInstance || r.parent != p.id) continue;
    if (!IsFinal(r.task_state())) return;
    ++total;
    if (r.task_state() == TaskState::kSucceeded) ++succeeded;
    else if (r.task_state() == TaskState::kCancelled) ++cancelled;
    else ++failed;
  }
  p.outputs = {{"count", std::to_string(total)},
               {"succeeded", std::to_string(succeeded)},
               {"failed", std::to_string(failed)}};
  if (succeeded == total) {
    FinishTask(a, parent, TaskState::kSucceeded, "", fx);
  } else if (failed == 0) {
    FinishTask(a, parent, TaskState::kCancelled,
               std::to_string(cancelled) + " of " + std::to_string(total) + " instance(s) cancelled", fx);
  } else {
    FinishTask(a, parent, TaskState::kFailed,
               std::to_string(failed) + " of " + std::to_string(total) + " instance(s) failed", fx);
  }
}

void Engine::Enqueue(Active& a, size_t i) {
  a.queued[i] = true;
  ReadyQueue& q = ready_[QueueOf(a, i)];
  const uint64_t seq = next_seq_++;
  q.by_seq.emplace(seq, Ready{a.rec.id, i, -a.rec.priority});
  q.by_priority.emplace(-a.rec.priority, seq);
}

const std::string& Engine::QueueOf(const Active& a, size_t i) const {
  static const std::string kDefault = "default";
  const std::string& q = a.defs[i]->queue;
  return q.empty() || !options_.queues.count(q) ? kDefault : q;
}

int Engine::QueueLimit(const std::string& queue) const {
  auto it = options_.queues.find(queue);
  return it == options_.queues.end() ? options_.max_parallel : it->second;
}

void Engine::Dispatch(Effects* fx) {
  while (running_ < options_.max_parallel) {
    // Queues take turns: start after the one served last.
    bool started = false;
    auto it = ready_.upper_bound(last_queue_);
    for (size_t n = 0; n < ready_.size() && !started; ++n, ++it) {
      if (it == ready_.end()) it = ready_.begin();
      const std::string& name = it->first;
      ReadyQueue& q = it->second;
      if (q.by_seq.empty() || running_by_queue_[name] >= QueueLimit(name)) continue;
      while (!q.by_seq.empty() && !started) {
        // Mostly the most urgent; every kAgeEvery-th start the one waiting longest.
        const bool oldest = q.starts % kAgeEvery == kAgeEvery - 1;
        const uint64_t seq = oldest ? q.by_seq.begin()->first : q.by_priority.begin()->second;
        auto entry = q.by_seq.find(seq);
        const Ready r = entry->second;
        q.by_priority.erase({r.neg_priority, seq});
        q.by_seq.erase(entry);
        auto run = runs_.find(r.run);
        if (run == runs_.end() || r.i >= run->second.queued.size() || !run->second.queued[r.i]) {
          continue;  // stale: cancelled, finished or already started
        }
        run->second.queued[r.i] = false;
        ++q.starts;
        last_queue_ = name;
        started = true;
        StartAttempt(run->second, r.i, fx);
      }
    }
    if (!started) return;
  }
}

TemplateContext Engine::Values(const Active& a, size_t i) const {
  // An instance (and the compensation of one) sees its own record as tasks.ID.
  size_t self = i;
  if (a.tasks[i].task_kind() == TaskKind::kCompensation) self = a.index.at(a.tasks[i].parent);
  TemplateContext ctx;
  ctx.params = &a.rec.params;
  ctx.site_name = options_.site_name;
  ctx.site_labels = &options_.site_labels;
  ctx.outputs = [&a, self](const std::string& task) -> const std::map<std::string, std::string>* {
    if (task == a.defs[self]->id) return &a.tasks[self].outputs;
    auto it = a.index.find(task);
    return it == a.index.end() ? nullptr : &a.tasks[it->second].outputs;
  };
  if (a.tasks[self].task_kind() == TaskKind::kInstance) ctx.item = &a.tasks[self].item;
  return ctx;
}

Result<bool> Engine::EvalWhen(const Active& a, size_t i) const {
  OUTPOST_ASSIGN_OR_RETURN(auto e, ParseExpr(a.defs[i]->when_expr));
  ExprContext ctx;
  ctx.values = Values(a, i);
  ctx.task_state = [&a](const std::string& task) -> std::string {
    auto it = a.index.find(task);
    return it == a.index.end() ? "" : TaskStateName(a.tasks[it->second].task_state());
  };
  return EvalExpr(e, ctx);
}

bool Engine::Render(const Active& a, size_t i, StartProcess* sp, std::string* why) const {
  const TaskDef& td = *a.defs[i];
  TemplateContext ctx = Values(a, i);
  auto render = [&](const std::string& in, std::string* out) {
    auto r = RenderTemplate(in, ctx);
    if (!r.ok()) {
      *why = r.status().message();
      return false;
    }
    *out = std::move(r).value();
    return true;
  };
  const bool comp = a.tasks[i].task_kind() == TaskKind::kCompensation;
  const auto& run = comp ? td.compensate_run : td.run;
  const auto& shell = comp ? td.compensate_shell : td.shell;
  if (!run.empty()) {
    sp->argv.resize(run.size());
    for (size_t k = 0; k < run.size(); ++k) {
      if (!render(run[k], &sp->argv[k])) return false;
    }
  } else {
    std::string cmd;
    if (!render(shell, &cmd)) return false;
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
  const TaskDef& td = *a.defs[i];
  StartProcess sp;
  std::string why;
  if (!Render(a, i, &sp, &why)) {
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
  ++running_by_queue_[QueueOf(a, i)];
  ++counters_.attempts_started;
  Touch(a, i, fx);
  fx->events.push_back(MakeEvent(EventType::kAttemptStarted, a, &t));

  sp.key = {a.rec.id, t.id, t.attempts};
  sp.output_cap = td.output_cap;
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
  if (t.task_kind() != TaskKind::kTask && !t.item.empty()) sp.env.emplace_back("OUTPOST_ITEM", t.item);
  if (t.task_kind() == TaskKind::kCompensation) sp.env.emplace_back("OUTPOST_COMPENSATING", t.parent);
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
  --running_by_queue_[QueueOf(a, i)];
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
    if (t.task_kind() == TaskKind::kTask) {
      for (const auto& d : a.def->tasks) {
        if (d.for_each.lines_of == t.id) t.lines = exit.output;  // a downstream fans out over it
      }
    }
    FinishTask(a, i, TaskState::kSucceeded, "", fx);
  } else if (Cancelling(a, i)) {
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
  const RetryPolicy& retry = a.defs[i]->retry;
  if (!Cancelling(a, i) && t.attempts <= retry.max) {
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
    bool comp_failed = false;
    for (const auto& t : a.tasks) {
      if (t.task_kind() != TaskKind::kCompensation) continue;
      if (!IsFinal(t.task_state())) return;
      comp_failed = comp_failed || t.task_state() != TaskState::kSucceeded;
    }
    s = comp_failed ? RunState::kCompensationFailed : RunState::kCompensated;
  } else {
    bool any_failed = false;
    for (const auto& t : a.tasks) {
      if (!IsFinal(t.task_state())) return;
      any_failed = any_failed || t.task_state() == TaskState::kFailed;
    }
    if (a.rec.timed_out) s = RunState::kFailed;
    else if (a.rec.cancel_requested) s = RunState::kCancelled;
    else if (any_failed) s = RunState::kFailed;
    if (s != RunState::kSucceeded && BeginCompensation(a, s, fx)) return;
  }
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

bool Engine::BeginCompensation(Active& a, RunState outcome, Effects* fx) {
  std::vector<size_t> todo;
  for (size_t i = 0; i < a.tasks.size(); ++i) {
    const auto& t = a.tasks[i];
    if (t.task_state() != TaskState::kSucceeded || !a.defs[i]->has_compensate()) continue;
    if (t.task_kind() == TaskKind::kTask && a.defs[i]->for_each.present) continue;  // its instances
    todo.push_back(i);
  }
  if (todo.empty()) return false;
  // Undo in reverse: the task that finished last is compensated first.
  std::sort(todo.begin(), todo.end(), [&a](size_t x, size_t y) {
    const auto& tx = a.tasks[x];
    const auto& ty = a.tasks[y];
    return tx.finished != ty.finished ? tx.finished > ty.finished : tx.order > ty.order;
  });
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
      } else if (t.task_state() == TaskState::kRunning && t.instances == 0) {
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
