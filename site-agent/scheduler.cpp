#include "site-agent/scheduler.h"

#include <algorithm>
#include <deque>

namespace outpost {

namespace {

// Bounds the walk over missed ticks (a minutely schedule down for a year is 525,600).
constexpr int kMaxTickWalk = 100'000;

}  // namespace

std::string ScheduleKey(const std::string& workflow) { return "sched/" + workflow; }

Scheduler::Scheduler(const Clock& clock, std::function<std::string()> new_run_id)
    : clock_(clock), new_run_id_(std::move(new_run_id)) {}

Status Scheduler::Set(std::shared_ptr<const WorkflowDef> def, TimeZone tz,
                      std::optional<ScheduleState> state, Effects* fx) {
  if (!def->schedule) return Status::InvalidArgument("workflow '" + def->name + "' has no schedule");
  OUTPOST_ASSIGN_OR_RETURN(auto spec, ParseCron(def->schedule->cron));
  Entry e;
  e.spec = std::move(spec);
  e.tz = std::move(tz);
  if (state) {
    e.state = std::move(*state);
  } else {
    e.state.last_tick = clock_.Now();
  }
  e.next = NextFire(e.spec, e.tz, e.state.last_tick);
  const std::string name = def->name;
  e.def = std::move(def);
  auto& ref = entries_[name] = std::move(e);
  if (!state) Persist(ref, fx);
  return Status::Ok();
}

void Scheduler::Remove(const std::string& workflow, Effects* fx) {
  if (entries_.erase(workflow) > 0) fx->state_writes.emplace_back(ScheduleKey(workflow), std::nullopt);
}

void Scheduler::Persist(const Entry& e, Effects* fx) const {
  fx->state_writes.emplace_back(ScheduleKey(e.def->name), Encode(e.state));
}

void Scheduler::Record(const Entry& e, EventType type, const std::string& run,
                       const std::string& message, Effects* fx) const {
  Event ev;
  ev.time = clock_.Now();
  ev.type = static_cast<uint8_t>(type);
  ev.workflow = e.def->name;
  ev.run = run;
  ev.message = message;
  fx->events.push_back(std::move(ev));
}

void Scheduler::Skip(Entry& e, const std::string& why, Effects* fx) {
  ++e.state.skipped;
  Record(e, EventType::kScheduleSkipped, "", why, fx);
}

bool Scheduler::StartOne(Entry& e, TimeMs tick, bool catch_up, Engine& engine, Effects* fx) {
  const std::string when = FormatLocal(tick, e.tz);
  StartOptions o;
  o.trigger = "schedule " + when + (catch_up ? " (catch-up)" : "");
  const std::string id = new_run_id_();
  Status s = engine.StartRun(e.def, id, {}, fx, o);
  if (!s.ok()) {
    Skip(e, "tick " + when + ": " + s.message(), fx);
    return false;
  }
  ++e.state.fired;
  Record(e, EventType::kScheduleFired, id, o.trigger, fx);
  return true;
}

void Scheduler::Fire(Entry& e, TimeMs tick, bool catch_up, Engine& engine, Effects* fx) {
  const ScheduleDef& sd = *e.def->schedule;
  const int active = engine.ActiveRunsOf(e.def->name);
  const std::string when = FormatLocal(tick, e.tz);
  switch (sd.overlap) {
    case ScheduleDef::Overlap::kSkip:
      if (active > 0) {
        Skip(e, "tick " + when + ": a run is still active (overlap: skip)", fx);
        return;
      }
      break;
    case ScheduleDef::Overlap::kQueue:
      if (active > 0 || !e.state.queued.empty()) {
        if (e.state.queued.size() >= kMaxQueuedTicks) {
          Skip(e, "tick " + when + ": " + std::to_string(kMaxQueuedTicks) +
                      " ticks already wait (overlap: queue)", fx);
        } else {
          e.state.queued.push_back(tick);
        }
        return;
      }
      break;
    case ScheduleDef::Overlap::kAllow:
      if (e.def->concurrency > 0 && active >= e.def->concurrency) {
        Skip(e, "tick " + when + ": " + std::to_string(active) +
                    " runs active, the workflow's concurrency limit", fx);
        return;
      }
      break;
  }
  StartOne(e, tick, catch_up, engine, fx);
}

void Scheduler::Tick(Engine& engine, Effects* fx) {
  const TimeMs now = clock_.Now();
  for (auto& [name, e] : entries_) {
    const ScheduleDef& sd = *e.def->schedule;
    bool changed = false;
    if (e.next > 0 && e.next <= now) {
      // Walk the due ticks; keep the newest missed ones the policy may run.
      const size_t keep = sd.catch_up == ScheduleDef::CatchUp::kAll ? static_cast<size_t>(sd.catch_up_max) : 1;
      std::deque<TimeMs> missed, on_time;
      uint64_t n_missed = 0;
      TimeMs t = e.next, last = e.state.last_tick;
      bool more = false;  // the walk stopped at its bound: the count is a lower bound
      auto walk = [&](int bound) {
        for (int walked = 0; t > 0 && t <= now && walked < bound; ++walked) {
          if (now - t > sd.grace) {
            ++n_missed;
            missed.push_back(t);
            if (missed.size() > keep) missed.pop_front();
          } else {
            on_time.push_back(t);
          }
          last = t;
          t = NextFire(e.spec, e.tz, t);
        }
      };
      walk(kMaxTickWalk);
      if (t > 0 && t <= now) {
        // Down for ages (or a clock that jumped years): the newest ticks are the ones a
        // policy may run, so walk the last 31 days again for them.
        more = true;
        missed.clear();
        on_time.clear();
        t = NextFire(e.spec, e.tz, std::max<TimeMs>(last, now - TimeMs{31} * 86'400'000));
        walk(kMaxTickWalk);
      }
      std::vector<std::pair<TimeMs, bool>> fire;  // (tick, catch-up)
      if (n_missed > 0) {
        size_t run = 0;
        switch (sd.catch_up) {
          case ScheduleDef::CatchUp::kSkip: run = 0; break;
          case ScheduleDef::CatchUp::kLatest: run = on_time.empty() ? 1 : 0; break;
          case ScheduleDef::CatchUp::kAll: run = missed.size(); break;
        }
        for (size_t k = missed.size() - run; k < missed.size(); ++k) fire.emplace_back(missed[k], true);
        if (n_missed > run) {
          Skip(e, std::string(more ? "at least " : "") + std::to_string(n_missed - run) + " missed tick(s) from " +
                      FormatLocal(e.next, e.tz) + " not run (catch_up: " + CatchUpName(sd.catch_up) + ")",
               fx);
        }
      }
      for (TimeMs ot : on_time) fire.emplace_back(ot, false);
      e.state.last_tick = last;
      e.next = t;
      for (const auto& [tick, catch_up] : fire) Fire(e, tick, catch_up, engine, fx);
      changed = true;
    }
    // overlap: queue — the oldest waiting tick starts once no run is active.
    while (!e.state.queued.empty() && engine.ActiveRunsOf(name) == 0) {
      const TimeMs tick = e.state.queued.front();
      e.state.queued.erase(e.state.queued.begin());
      changed = true;
      if (StartOne(e, tick, now - tick > sd.grace, engine, fx)) break;
    }
    if (changed && !faults_.schedule_forgets_fired) Persist(e, fx);  // planted bug if not
  }
}

TimeMs Scheduler::NextDeadline() const {
  TimeMs next = 0;
  for (const auto& [name, e] : entries_) {
    if (e.next > 0 && (next == 0 || e.next < next)) next = e.next;
  }
  return next;
}

std::vector<Scheduler::Info> Scheduler::List() const {
  std::vector<Info> out;
  for (const auto& [name, e] : entries_) {
    out.push_back({name, e.def->schedule->cron, e.tz.name(), e.next, e.state});
  }
  return out;
}

}  // namespace outpost
