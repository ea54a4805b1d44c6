// Dispatch: queued records into free slots, and the start of an attempt.
//
// Evaluate puts a record that may start into its named queue (Enqueue; QueueOf: the
// task's `queue` if this site defines it, else "default"). Dispatch then starts records
// while fewer than max_parallel attempts run: the queues take turns in name order, from
// the one after the queue served last, passing over a queue at its own limit (QueueLimit:
// EngineOptions::queues, else max_parallel), so a long queue cannot starve a short one.
// Within a queue ReadyQueue::Pop gives the highest run priority, then the earliest; every
// kAgeEvery-th start the earliest regardless. An entry is not removed when its record stops
// waiting (cancelled, skipped, its run finished): `Active::queued` says whether it is live,
// and a stale entry is dropped when it comes up.
//
// running_ and running_by_queue_ count attempts from StartAttempt to their exit
// (ReleaseSlot); a for_each task and an approval gate hold no slot.
#include "site-agent/engine.h"

namespace outpost {

void Engine::ReadyQueue::Push(uint64_t seq, Ready r) {
  by_priority.emplace(r.neg_priority, seq);
  by_seq.emplace(seq, std::move(r));
}

Engine::Ready Engine::ReadyQueue::Pop() {
  // Mostly the most urgent; every kAgeEvery-th start the one waiting longest.
  const bool oldest = starts % kAgeEvery == kAgeEvery - 1;
  const uint64_t seq = oldest ? by_seq.begin()->first : by_priority.begin()->second;
  auto entry = by_seq.find(seq);
  Ready r = std::move(entry->second);
  by_priority.erase({r.neg_priority, seq});
  by_seq.erase(entry);
  return r;
}

void Engine::Enqueue(Active& a, size_t i) {
  a.queued[i] = true;
  ready_[QueueOf(a, i)].Push(next_seq_++, Ready{a.rec.id, i, -a.rec.priority});
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
    if (!StartNext(fx)) return;
  }
}

bool Engine::StartNext(Effects* fx) {
  // Queues take turns: start after the one served last.
  auto it = ready_.upper_bound(last_queue_);
  for (size_t n = 0; n < ready_.size(); ++n, ++it) {
    if (it == ready_.end()) it = ready_.begin();
    const std::string& name = it->first;
    ReadyQueue& q = it->second;
    if (q.by_seq.empty() || running_by_queue_[name] >= QueueLimit(name)) continue;
    while (!q.by_seq.empty()) {
      const Ready r = q.Pop();
      auto run = runs_.find(r.run);
      if (run == runs_.end() || r.i >= run->second.queued.size() || !run->second.queued[r.i]) {
        continue;  // stale: cancelled, finished or already started
      }
      run->second.queued[r.i] = false;
      ++q.starts;
      last_queue_ = name;
      StartAttempt(run->second, r.i, fx);  // may add queues to ready_
      return true;
    }
  }
  return false;
}

void Engine::StartAttempt(Active& a, size_t i, Effects* fx) {
  // A task whose artifacts are not in the cache yet (still arriving over the link or on a
  // bundle volume not imported yet) waits for them without spending an attempt; the run's
  // timeout, if it has one, bounds the wait.
  for (const auto& [name, digest] : a.def->artifacts) {
    auto path = options_.artifact_path ? options_.artifact_path(digest)
                                       : Result<std::string>(Status::FailedPrecondition("no cache"));
    if (path.ok()) continue;
    auto& t = a.tasks[i];
    const std::string msg = "waiting for artifact '" + name + "' (" + digest.substr(0, 12) +
                            "): " + path.status().message();
    t.state = static_cast<uint8_t>(TaskState::kWaiting);
    t.retry_at = clock_.Now() + kArtifactRecheck;
    if (t.message != msg) {
      t.message = msg;
      Event e = MakeEvent(EventType::kRetryScheduled, a, &t);
      e.message = msg;
      fx->events.push_back(std::move(e));
    }
    Touch(a, i, fx);
    return;
  }
  if (a.tasks[i].message.rfind("waiting for artifact", 0) == 0) a.tasks[i].message.clear();
  StartProcess sp;
  std::string why;
  if (!Render(a, i, &sp, &why)) {
    // Nothing to retry: the same references would fail the same way.
    FinishTask(a, i, TaskState::kFailed, "cannot start: " + why, fx);
    Evaluate(a, fx);
    MaybeFinishRun(a, fx);
    return;
  }
  auto& t = a.tasks[i];
  const TaskDef& td = *a.defs[i];
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
  Event started = MakeEvent(EventType::kAttemptStarted, a, &t);
  if (!isolation_.empty()) started.message = "isolation: " + isolation_;
  fx->events.push_back(std::move(started));

  sp.key = {a.rec.id, t.id, t.attempts};
  sp.output_cap = td.output_cap;
  sp.keep_children = td.keep_children;
  AddProcessEnv(a, i, &sp);
  fx->starts.push_back(std::move(sp));
}

void Engine::ReleaseSlot(const Active& a, size_t i) {
  --running_;
  --running_by_queue_[QueueOf(a, i)];
}

}  // namespace outpost
