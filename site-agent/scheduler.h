// Scheduler: fires the runs of workflows that carry a `schedule`, from the site's own
// clock, with or without a hub. Sans-I/O like the engine: it reads the Clock, starts runs
// on the Engine and leaves everything to persist in the Effects (its state under
// "sched/<workflow>" lands in the same batch as the runs it started, so a crash can
// neither lose a tick nor fire it twice).
//
// Each Tick() looks at the ticks in (last_tick, now]:
//   - a tick at most `grace` old is on time and fires;
//   - older ticks were missed (the agent was down or asleep) and follow `catch_up`:
//       skip    none of them runs,
//       latest  the newest missed tick runs (unless an on-time tick runs anyway),
//       all     the newest `catch_up_max` missed ticks run, oldest first;
//   - a tick that fires while a run of the workflow is active follows `overlap`:
//       skip    it is dropped (recorded),
//       queue   it waits and starts when no run is active (at most 100 wait),
//       allow   it starts, up to the definition's `concurrency`.
// Every tick that starts no run is recorded as schedule.skipped with the reason.
//
// Thread-safety: none; the agent loop owns it.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/faults.h"
#include "common/codec.h"
#include "common/workflow/cron.h"
#include "common/workflow/workflow.h"
#include "site-agent/engine.h"

namespace outpost {

struct ScheduleState {
  TimeMs last_tick = 0;          // the newest tick handled (fired, skipped or missed)
  std::vector<TimeMs> queued;    // ticks held by overlap: queue
  uint64_t fired = 0;
  uint64_t skipped = 0;
  MSGPACK_DEFINE_MAP(last_tick, queued, fired, skipped);
};

std::string ScheduleKey(const std::string& workflow);  // "sched/<workflow>"

inline constexpr size_t kMaxQueuedTicks = 100;

class Scheduler {
 public:
  // `new_run_id` makes the id of each run the scheduler starts.
  Scheduler(const Clock& clock, std::function<std::string()> new_run_id);
  // The planted bugs of the simulator's mutation check (common/faults.h).
  void set_faults(const Faults& f) { faults_ = f; }

  // Adds or replaces the schedule of `def` (which must have one). `state` is what was
  // persisted for it; without one the schedule starts now (no history is caught up).
  Status Set(std::shared_ptr<const WorkflowDef> def, TimeZone tz,
             std::optional<ScheduleState> state, Effects* fx);
  void Remove(const std::string& workflow, Effects* fx);

  // Fires what is due; starts runs on `engine`.
  void Tick(Engine& engine, Effects* fx);
  // The earliest time Tick() has a tick to fire, or 0 if none (queued ticks wait for a
  // run to finish, which the driver reports by calling Tick() anyway).
  TimeMs NextDeadline() const;

  struct Info {
    std::string workflow;
    std::string cron;
    std::string timezone;
    TimeMs next = 0;
    ScheduleState state;
  };
  std::vector<Info> List() const;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::shared_ptr<const WorkflowDef> def;
    CronSpec spec;
    TimeZone tz;
    ScheduleState state;
    TimeMs next = 0;  // first tick after state.last_tick
  };
  void Fire(Entry& e, TimeMs tick, bool catch_up, Engine& engine, Effects* fx);
  void Record(const Entry& e, EventType type, const std::string& run, const std::string& message,
              Effects* fx) const;
  void Skip(Entry& e, const std::string& why, Effects* fx);
  bool StartOne(Entry& e, TimeMs tick, bool catch_up, Engine& engine, Effects* fx);
  void Persist(const Entry& e, Effects* fx) const;

  const Clock& clock_;
  std::function<std::string()> new_run_id_;
  std::map<std::string, Entry> entries_;
  Faults faults_;
};

}  // namespace outpost
