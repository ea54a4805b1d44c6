// The materialized state of runs and tasks on a site: what `run show` reports and what
// the engine resumes from after a restart. Stored in the event log's `state` column
// family (one key per run header, one per task) in the same WriteBatch as the events
// that changed it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/codec.h"

namespace outpost {

enum class TaskState : uint8_t {
  kPending = 0,  // not started yet (includes queued for a free slot)
  kWaiting,      // failed attempt; waiting for its retry backoff
  kRunning,
  kSucceeded,
  kFailed,
  kSkipped,
  kCancelled,
  kAwaitingApproval,  // an approval gate waiting for `run approve`
};

// A run whose tasks failed (or that was cancelled or timed out) and that has tasks with
// `compensate` runs their compensations, then ends compensated or compensation_failed.
enum class RunState : uint8_t {
  kPending = 0,
  kRunning,
  kSucceeded,
  kFailed,
  kCancelled,
  kCompensated,
  kCompensationFailed,
};

// What a task record stands for.
enum class TaskKind : uint8_t {
  kTask = 0,      // a task of the definition
  kInstance,      // one instance of a for_each task ("ID[N]")
  kCompensation,  // the compensation of a succeeded task or instance ("compensate:ID")
};

const char* TaskStateName(TaskState s);  // waiting reports as "pending"
const char* RunStateName(RunState s);
bool IsFinal(TaskState s);
bool IsFinal(RunState s);

struct TaskRecord {
  std::string id;
  uint8_t state = 0;
  int32_t attempts = 0;
  int32_t exit_code = -1;  // of the last attempt; -1 if none or killed by a signal
  int32_t signal = 0;      // signal that ended the last attempt, 0 if none
  TimeMs started = 0;      // of the last attempt
  TimeMs finished = 0;
  TimeMs retry_at = 0;     // kWaiting: when the next attempt may start
  TimeMs deadline = 0;     // kRunning: when the attempt's timeout fires (0: none)
  TimeMs kill_at = 0;      // kRunning: when to escalate TERM to KILL (0: not pending)
  bool timed_out = false;  // the last attempt was killed for its timeout
  int32_t pid = 0;         // process group of the running attempt, for orphan cleanup
  int32_t order = 0;       // position in the definition
  std::string message;
  std::map<std::string, std::string> outputs;  // key=value lines the succeeded attempt published
  uint8_t kind = 0;        // TaskKind
  std::string def_task;    // kInstance/kCompensation: the definition's task it runs
  std::string parent;      // kInstance: the for_each task; kCompensation: the record undone
  std::string item;        // kInstance (and its compensation): {{ item }}
  int32_t instances = 0;   // a for_each task once expanded: how many instances it has
  std::string lines;       // stdout kept for a downstream for_each {lines_of: ...}
  MSGPACK_DEFINE_MAP(id, state, attempts, exit_code, signal, started, finished, retry_at,
                     deadline, kill_at, timed_out, pid, order, message, outputs, kind, def_task,
                     parent, item, instances, lines);

  TaskState task_state() const { return static_cast<TaskState>(state); }
  TaskKind task_kind() const { return static_cast<TaskKind>(kind); }
};

struct RunRecord {
  std::string id;
  std::string workflow;
  std::string hash;
  std::string source;  // the definition this run started with
  std::map<std::string, std::string> params;
  uint8_t state = 0;
  TimeMs created = 0;
  TimeMs started = 0;
  TimeMs finished = 0;
  TimeMs deadline = 0;  // workflow timeout (0: none)
  bool cancel_requested = false;
  bool timed_out = false;
  std::string message;
  std::string request;  // the hub's request id, empty for local runs
  int32_t priority = 0;        // higher runs first within a queue
  std::string trigger;         // what started it: "" (operator/hub) or "schedule TIME"
  bool compensating = false;   // the run failed and its compensations are running
  std::string outcome;         // compensating: what the run would have ended as
  std::map<std::string, std::string> sealed;  // secret params, sealed to this site's key
  MSGPACK_DEFINE_MAP(id, workflow, hash, source, params, state, created, started, finished,
                     deadline, cancel_requested, timed_out, message, request, priority, trigger,
                     compensating, outcome, sealed);

  RunState run_state() const { return static_cast<RunState>(state); }
};

// State keys: "run/<run>" -> RunRecord, "task/<run>/<task>" -> TaskRecord,
// "out/<run>/<task>/<attempt>" -> output tail.
std::string RunKey(const std::string& run);
std::string TaskKey(const std::string& run, const std::string& task);
std::string TaskPrefix(const std::string& run);
std::string OutputKey(const std::string& run, const std::string& task, int attempt);

}  // namespace outpost
