// Engine: the site agent's workflow engine, a sans-I/O state machine.
//
// Inputs: StartRun (a validated definition and params), OnSpawned / OnExit (what the
// executor reports), Cancel, Tick (the clock has moved; due deadlines fire), Restore
// (a run loaded from the store after a restart). Outputs, collected in Effects: events
// to append, run/task records that changed, processes to start and kill. The engine
// never spawns, sleeps, reads the wall clock or touches the disk; the driver (the agent
// daemon, a test, the simulator) does that with the Effects, in this order:
//   1. append events + changed records in one synced WriteBatch,
//   2. then start and kill processes,
// so a task is never running without the log saying so (at-least-once attempts).
//
// State machine of a task:
//   pending --deps final, `when` holds--> (queued) --slot free--> running
//   pending --deps final, `when` fails--> skipped
//   running --exit 0--> succeeded
//   running --fail/timeout, attempts <= retry.max--> waiting --retry_at--> (queued)
//   running --fail/timeout, no retries left--> failed
//   any non-final --cancel--> cancelled (running ones after their process group exits)
// A run is finished when all its tasks are: cancelled if a cancel was asked for (failed
// if that cancel came from the workflow timeout), failed if any task failed, else
// succeeded.
//
// Fan-out: a for_each task, once decided, becomes `running` with one record per item
// ("ID[0]", "ID[1]", ...), each an ordinary task with its own attempts, retries and logs,
// at most `parallelism` of them queued or running at once. The for_each task succeeds
// when all its instances did, else fails; downstream tasks see it like any other task.
//
// Compensation (saga): when a run would end failed or cancelled and some succeeded tasks
// (or instances) declare `compensate`, the run stays running with `compensating` set and
// gets one record per compensation ("compensate:ID"), run one at a time, the latest
// finished task first, each under the task's retry policy and timeout. A cancel no longer
// applies. The run then ends compensated, or compensation_failed if any of them failed.
//
// Queues: each task runs in a named queue (EngineOptions::queues, task `queue`) with its
// own concurrency limit inside max_parallel; queues take turns for free slots, so a long
// queue cannot starve a short one; within a queue a higher run priority goes first, then
// first come first served — except every kAgeEvery-th start, which takes the task that
// has waited longest (no starvation by priority either).
//
// Timers: each record carries its own deadlines (retry_at, deadline, kill_at, run
// deadline); NextDeadline() tells the driver when to call Tick().
//
// Thread-safety: none; one driver thread owns an Engine.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/faults.h"
#include "common/protocol/event.h"
#include "common/random.h"
#include "common/status.h"
#include "common/workflow/template.h"
#include "common/workflow/workflow.h"
#include "site-agent/run_state.h"

namespace outpost {

struct AttemptKey {
  std::string run;
  std::string task;
  int attempt = 0;
  bool operator==(const AttemptKey&) const = default;
};

struct StartProcess {
  AttemptKey key;
  std::vector<std::string> argv;
  std::vector<std::pair<std::string, std::string>> env;  // added to the agent's environment
  std::string workdir;
  size_t output_cap = 0;  // bytes of output kept; 0: the executor's default
  bool keep_children = false;  // leave processes it started running after it ends
};

struct KillProcess {
  AttemptKey key;
  int signal = 0;
};

struct ExitInfo {
  int exit_code = -1;  // -1 when killed by a signal or never started
  int signal = 0;
  std::string output;       // tail of stdout+stderr, already capped by the executor
  std::string spawn_error;  // non-empty: the process could not be started
  std::map<std::string, std::string> outputs;  // what it wrote to $OUTPOST_OUTPUT
  std::string output_error;  // non-empty: $OUTPOST_OUTPUT held something that is not key=value
  // What happened to processes the attempt left behind: "" (none), or how they were killed
  // ("left-over processes killed (process group)") or kept.
  std::string leftovers;
};

struct Effects {
  std::vector<Event> events;
  std::set<std::string> dirty_runs;                         // run ids
  std::set<std::pair<std::string, std::string>> dirty_tasks;  // (run, task)
  std::vector<StartProcess> starts;
  std::vector<KillProcess> kills;
  std::vector<std::string> finished_runs;  // reached a final state in this step
  // Other state keys written in the same batch (the scheduler's "sched/<workflow>"):
  // key -> value, nullopt deletes.
  std::vector<std::pair<std::string, std::optional<std::string>>> state_writes;

  bool empty() const {
    return events.empty() && dirty_runs.empty() && dirty_tasks.empty() && starts.empty() &&
           kills.empty() && state_writes.empty();
  }
};

struct EngineOptions {
  int max_parallel = 4;         // task attempts running at once on this site
  DurationMs kill_grace = 5000;  // TERM -> KILL escalation
  std::string site_name;        // {{ site.name }}
  std::map<std::string, std::string> site_labels;  // {{ site.labels.KEY }}
  std::map<std::string, int> queues;  // named queues and their concurrency limits
  // Opens a sealed secret (the site's key); unset: secret params cannot run here.
  std::function<Result<std::string>(const std::string& sealed)> open_secret;
  // The path of a verified artifact in the site's cache, or why it is not there; unset:
  // workflows with artifacts cannot run here.
  std::function<Result<std::string>(const std::string& digest)> artifact_path = nullptr;
  // The planted bugs of the simulator's mutation check (common/faults.h); none in the agent.
  Faults faults = {};
};

struct EngineCounters {
  uint64_t runs_started = 0;
  uint64_t runs_finished = 0;
  uint64_t attempts_started = 0;
  uint64_t attempts_interrupted = 0;
  uint64_t stale_exits = 0;  // exits for attempts the engine no longer runs
};

struct StartOptions {
  std::string request;   // the hub's request id (empty for a local run)
  std::optional<int> priority;  // unset: the definition's priority
  std::string trigger;   // "schedule 2026-...": what started the run, for `run show`
  // Secret params, each sealed to this site's key (base64); their value in params is
  // kSecretPlaceholder. Opened only to give them to a task's environment.
  std::map<std::string, std::string> sealed;
};

inline constexpr int kMaxFanOut = 1000;  // instances of one for_each task
inline constexpr uint64_t kAgeEvery = 8;  // every 8th start in a queue takes its oldest task

class Engine {
 public:
  Engine(const Clock& clock, Rng* rng, EngineOptions options);

  // Starts a run of `def` with id `run_id`. Params are resolved against the definition.
  // `request` is the hub's request id (empty for a local run).
  // A workflow with `concurrency` N refuses a run while N of its runs are active
  // (ResourceExhausted); a task naming a queue this site lacks refuses the run.
  Status StartRun(std::shared_ptr<const WorkflowDef> def, const std::string& run_id,
                  const std::map<std::string, std::string>& params, Effects* fx,
                  const std::string& request = "");
  Status StartRun(std::shared_ptr<const WorkflowDef> def, const std::string& run_id,
                  const std::map<std::string, std::string>& params, Effects* fx,
                  const StartOptions& options);
  // Active runs of the workflow named `workflow`.
  int ActiveRunsOf(const std::string& workflow) const;

  // Resumes a run loaded from the store. Attempts that were running are recorded as
  // interrupted and retried under their policy.
  Status Restore(RunRecord run, std::vector<TaskRecord> tasks, Effects* fx);

  void OnSpawned(const AttemptKey& key, int pid, Effects* fx);
  void OnExit(const AttemptKey& key, const ExitInfo& exit, Effects* fx);
  Status Cancel(const std::string& run_id, const std::string& reason, Effects* fx);
  // Decides an approval gate that is awaiting_approval: it succeeds (approved) or fails
  // (rejected), recorded with its author. NotFound / FailedPrecondition otherwise.
  Status Approve(const std::string& run_id, const std::string& task, bool approved,
                 const std::string& author, Effects* fx);
  void Tick(Effects* fx);

  // The earliest time Tick() has work to do, or 0 if none.
  TimeMs NextDeadline() const;

  // Records of an active run, or nullptr if the engine does not hold it (finished runs
  // are dropped with Forget() once the driver has persisted them).
  const RunRecord* FindRun(const std::string& run_id) const;
  // How attempts are contained ("cgroup", "process group"): written in each attempt's
  // attempt.started event.
  void set_isolation(std::string isolation) { isolation_ = std::move(isolation); }
  const TaskRecord* FindTask(const std::string& run_id, const std::string& task) const;
  void Forget(const std::string& run_id);

  size_t active_runs() const { return runs_.size(); }
  // The artifacts (digests) the definitions of active runs name: the cache keeps them.
  std::set<std::string> ActiveArtifacts() const {
    std::set<std::string> out;
    for (const auto& [id, a] : runs_) {
      for (const auto& [name, digest] : a.def->artifacts) out.insert(digest);
    }
    return out;
  }
  int running_attempts() const { return running_; }
  const EngineCounters& counters() const { return counters_; }

 private:
  // A run the engine holds. Records are only ever appended (AddRecord), so an index into
  // `tasks` stays valid for the life of the run, but a reference into it does not survive
  // anything that may add records (Expand, BeginCompensation and what calls them).
  struct Active {
    RunRecord rec;
    std::shared_ptr<const WorkflowDef> def;
    // The definition's tasks in order, then instances and compensations as created.
    std::vector<TaskRecord> tasks;
    std::vector<const TaskDef*> defs;  // the definition each record runs
    std::vector<bool> queued;          // in ready_
    std::map<std::string, size_t> index;
  };
  struct Ready {
    std::string run;
    size_t i = 0;
    int neg_priority = 0;
  };
  // The tasks waiting for a slot in one queue, by priority and by arrival. Every
  // kAgeEvery-th start takes the oldest instead of the most urgent, so a steady stream of
  // high-priority work cannot hold lower-priority work back for ever.
  struct ReadyQueue {
    std::map<uint64_t, Ready> by_seq;
    std::set<std::pair<int, uint64_t>> by_priority;  // (-priority, seq)
    uint64_t starts = 0;

    void Push(uint64_t seq, Ready r);
    // Removes and returns the entry to try next (which may be stale). Not empty.
    Ready Pop();
  };
  // Instances queued, running or waiting per for_each task, for its parallelism cap;
  // nullopt until first needed (counting walks the whole run).
  using InFlight = std::optional<std::map<std::string, int>>;

  // Core (engine.cpp): the record list, attempts' results, how tasks and runs end, cancel,
  // approvals.
  Event MakeEvent(EventType type, const Active& a, const TaskRecord* t) const;
  size_t AddRecord(Active& a, TaskRecord r, Effects* fx);
  Status Admit(const WorkflowDef& def) const;  // concurrency and queues allow a new run
  // The run and record of an attempt the engine is running, or nullptr.
  Active* FindAttempt(const AttemptKey& key, size_t* i);
  void AttemptFailed(Active& a, size_t i, const std::string& why, Effects* fx);
  // Replaces each secret param's value in an exit's output and outputs by "[secret]".
  void RedactSecrets(const Active& a, ExitInfo* exit) const;
  void OnRedactedExit(Active& a, size_t i, const ExitInfo& exit, Effects* fx);
  void FinishTask(Active& a, size_t i, TaskState s, const std::string& why, Effects* fx);
  void MaybeFinishRun(Active& a, Effects* fx);
  void CancelInternal(Active& a, const std::string& reason, Effects* fx);
  void RequestApproval(Active& a, size_t i, Effects* fx);  // a gate that was decided to run
  // A cancel applies to this record (compensations run to the end regardless).
  bool Cancelling(const Active& a, size_t i) const {
    return a.rec.cancel_requested && a.tasks[i].task_kind() != TaskKind::kCompensation;
  }
  void Touch(const Active& a, size_t i, Effects* fx) const {
    fx->dirty_tasks.emplace(a.rec.id, a.tasks[i].id);
  }

  // Deciding pending records (engine_evaluate.cpp).
  void Evaluate(Active& a, Effects* fx);  // pending tasks whose deps are final
  bool EvaluatePending(Active& a, size_t i, InFlight* in_flight, Effects* fx);
  bool DecideTask(Active& a, size_t i, InFlight* in_flight, Effects* fx);

  // Queues and slots (engine_dispatch.cpp).
  void Enqueue(Active& a, size_t i);
  void Dispatch(Effects* fx);   // queued tasks into free slots
  bool StartNext(Effects* fx);  // one task from the next queue with a free slot
  const std::string& QueueOf(const Active& a, size_t i) const;
  int QueueLimit(const std::string& queue) const;
  void StartAttempt(Active& a, size_t i, Effects* fx);
  static constexpr DurationMs kArtifactRecheck = 2000;  // a task waiting for an artifact
  void ReleaseSlot(const Active& a, size_t i);  // the attempt of `i` exited

  // What templates see and what a process gets (engine_render.cpp).
  // Fills argv, env and workdir with templates rendered; false and *why when one of them
  // refers to something that does not exist.
  bool Render(const Active& a, size_t i, StartProcess* sp, std::string* why) const;
  void AddProcessEnv(const Active& a, size_t i, StartProcess* sp) const;  // OUTPOST_*
  TemplateContext Values(const Active& a, size_t i) const;
  Result<bool> EvalWhen(const Active& a, size_t i) const;

  // Fan-out (engine_fanout.cpp).
  Result<std::vector<std::string>> FanOutItems(const Active& a, size_t i) const;
  void Expand(Active& a, size_t i, Effects* fx);  // a for_each task's instances
  bool TakeInstanceSlot(const Active& a, size_t i, InFlight* in_flight) const;
  void KeepFanOutSource(Active& a, size_t i, const std::string& output);  // lines_of
  void MaybeFinishFanOut(Active& a, size_t parent, Effects* fx);

  // Compensation (engine_compensation.cpp).
  bool CompensationTurn(const Active& a, size_t i) const;
  bool BeginCompensation(Active& a, RunState outcome, Effects* fx);
  std::vector<size_t> CompensationOrder(const Active& a) const;
  std::optional<RunState> CompensationOutcome(const Active& a) const;  // nullopt: not done
  void RerunCompensation(Active& a, size_t i, Effects* fx);

  // Restore (engine_restore.cpp).
  void AdoptRecords(Active& a, std::vector<TaskRecord> tasks);
  void RecoverInterrupted(Active& a, size_t i, Effects* fx);

  // Timers (engine_timers.cpp).
  bool TickTask(Active& a, size_t i, TimeMs now, Effects* fx);

  const Clock& clock_;
  Rng* rng_;
  EngineOptions options_;
  std::map<std::string, Active> runs_;
  std::map<std::string, ReadyQueue> ready_;  // by queue name
  std::map<std::string, int> running_by_queue_;
  std::string last_queue_;  // the queue served last, for turns
  uint64_t next_seq_ = 0;
  int running_ = 0;
  EngineCounters counters_;
  std::string isolation_;
};

}  // namespace outpost
