// Workflow definitions: the YAML file format, parsed and validated.
//
// Validation happens before a definition is accepted anywhere (CLI, agent, later the hub)
// and reports every problem it finds as "FILE:LINE:COL: [task 'ID': ]reason", one a line,
// so a user can fix the file in one pass. A definition is identified by its name and the
// BLAKE2b hash of its source text; a run keeps the source it started with.
//
// Parsing (workflow_parse.cpp, the only user of yaml-cpp) and the rules checked over the
// parsed structs (workflow_validate.cpp) are separate steps; workflow_internal.h has both.
//
// The file reference is docs/workflows.md.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/random.h"
#include "common/status.h"

namespace outpost {

// Where a value sits in its file (1-based), kept by the parser so that validation can point
// at it; line 0: not given (as in a definition built in code).
struct SourcePos {
  int line = 0;
  int col = 0;
};

enum class When { kSuccess, kFailure, kAlways };
const char* WhenName(When w);

// When a task may start, from its upstream tasks' final states (as in Airflow):
//   all_success  every upstream succeeded (the default)
//   all_done     every upstream is final, whatever the outcome
//   one_success  as soon as one upstream succeeded (skipped if none did)
//   one_failed   as soon as one upstream failed (skipped if none did)
//   none_failed  every upstream is final and none failed (skipped ones are fine)
enum class Trigger { kAllSuccess, kAllDone, kOneSuccess, kOneFailed, kNoneFailed };
const char* TriggerName(Trigger t);

struct RetryPolicy {
  int max = 0;  // further attempts after the first
  BackoffPolicy backoff;
};

// Fan-out: one instance of the task per item, each with its own state, retries and logs,
// and `{{ item }}` in its templates. Items come from a static list, from a template that
// renders to a list (split on whitespace and commas, e.g. an upstream output), or from
// the lines an upstream task printed.
struct ForEach {
  std::vector<std::string> items;  // static list
  std::string expr;                // template rendered when the task is decided
  std::string lines_of;            // task id whose stdout lines are the items
  int parallelism = 0;             // instances running at once; 0: no cap
  bool present = false;
};

struct TaskDef {
  std::string id;
  std::vector<std::string> run;  // argv, or empty when `shell` is used
  std::string shell;             // run with /bin/sh -c
  std::vector<std::string> needs;
  When when = When::kSuccess;
  std::optional<Trigger> trigger;  // set: decides instead of `when`
  bool approval = false;  // type: approval — waits for `run approve`, runs no process
  std::string when_expr;  // a condition (common/expr.h), checked once all upstream are final
  DurationMs timeout = 0;  // 0: none
  RetryPolicy retry;
  std::vector<std::pair<std::string, std::string>> env;
  std::string workdir;
  ForEach for_each;
  // Saga compensation: run (argv) or shell, started when the run fails after this task
  // succeeded; compensations run one at a time, latest-finished task first.
  std::vector<std::string> compensate_run;
  std::string compensate_shell;
  std::string queue;  // named queue from the agent config; empty: the default queue
  size_t output_cap = 0;  // bytes of output kept for this task; 0: the agent's --output-cap
  // Processes the task leaves behind are killed when it ends, unless it means to start a
  // daemon (keep_children: true).
  bool keep_children = false;
  std::vector<SourcePos> needs_pos;  // where each of `needs` was given (parsed files)
  int line = 0;       // 1-based line of the task in its file
  int col = 0;        // and its column
  // Where keys that validation relates to each other were given (line 0: not given).
  struct KeyPositions {
    SourcePos run, shell, retry, env, workdir, when, trigger, for_each, parallelism, compensate;
  } pos;

  bool has_compensate() const { return !compensate_run.empty() || !compensate_shell.empty(); }
};

// A schedule fired from the site's own clock (common/cron.h).
struct ScheduleDef {
  enum class CatchUp { kSkip, kLatest, kAll };
  enum class Overlap { kSkip, kQueue, kAllow };
  std::string cron;
  std::string timezone = "UTC";
  CatchUp catch_up = CatchUp::kSkip;
  int catch_up_max = 10;     // kAll: at most this many missed ticks are run
  Overlap overlap = Overlap::kSkip;
  DurationMs grace = 60'000;  // a tick later than this counts as missed
  SourcePos cron_pos, timezone_pos;  // where they were given, for validation
};
const char* CatchUpName(ScheduleDef::CatchUp c);
const char* OverlapName(ScheduleDef::Overlap o);

struct ParamDef {
  enum class Type { kString, kInt, kNumber, kBool };
  std::string name;
  std::optional<std::string> default_value;  // nullopt: required
  Type type = Type::kString;
  std::vector<std::string> choices;  // non-empty: the value must be one of them
  SourcePos default_pos;             // where a typed default was given, for validation
  // A secret: sealed to the site by outpostctl, given to tasks only as the variable
  // OUTPOST_PARAM_<NAME>, never templated, logged or recorded (docs/security.md).
  bool secret = false;
  SourcePos secret_pos;
  // Checks `value` against type and choices; returns it normalized (bools as true/false).
  Result<std::string> Check(const std::string& value) const;
};
const char* ParamTypeName(ParamDef::Type t);
// An environment variable's name: `prefix` and `name` upper-cased, with every character
// that cannot be in a variable name as '_'.
std::string EnvVarName(std::string_view prefix, std::string_view name);
// The variable a task reads param `name` from: OUTPOST_PARAM_<NAME>.
inline std::string ParamEnvName(std::string_view name) { return EnvVarName("OUTPOST_PARAM_", name); }
// The variable a task reads artifact `name`'s path from: OUTPOST_ARTIFACT_<NAME>.
inline std::string ArtifactEnvName(std::string_view name) {
  return EnvVarName("OUTPOST_ARTIFACT_", name);
}
// What a secret param's value is in params, events and views: never the value.
inline constexpr char kSecretPlaceholder[] = "[secret]";

struct WorkflowDef {
  std::string name;
  DurationMs timeout = 0;  // whole run; 0: none
  std::optional<ScheduleDef> schedule;
  int concurrency = 0;  // active runs of this workflow at once on a site; 0: no limit
  int priority = 0;     // default run priority (higher first within a queue)
  std::vector<ParamDef> params;
  std::vector<TaskDef> tasks;
  // Artifacts by name -> content digest (BLAKE2b-256 hex); tasks see each at
  // $OUTPOST_ARTIFACT_<NAME>, a read-only file in the site's artifact cache.
  std::map<std::string, std::string> artifacts;
  std::string source;  // the YAML text as given
  std::string hash;    // hex BLAKE2b-128 of source

  // Task by id: through `task_index` (built by ParseWorkflow, or by IndexTasks for a
  // definition made in code) when it covers every task, else a scan.
  const TaskDef* FindTask(std::string_view id) const;
  void IndexTasks();
  std::map<std::string, size_t, std::less<>> task_index;
  // Resolves user-supplied params against the definition: unknown names and missing
  // required params are errors; defaults fill the rest.
  Result<std::map<std::string, std::string>> ResolveParams(
      const std::map<std::string, std::string>& given) const;
};

// Parses and validates `yaml`; `filename` only labels error messages. What the parser could
// not read is reported first, then the rules the definition breaks.
Result<WorkflowDef> ParseWorkflow(std::string_view yaml, std::string_view filename);
Result<WorkflowDef> LoadWorkflowFile(const std::string& path);
// Loads the zone of `def`'s schedule (if it has one) from this machine's zone database: an
// error naming `filename`, the schedule and the zone if it cannot be loaded. Reads files
// (the zone), so the sans-I/O parse leaves it to the drivers: LoadWorkflowFile and the
// agent's WorkflowParser call it.
Status CheckScheduleZone(const WorkflowDef& def, std::string_view filename);

// "250ms", "30s", "5m", "2h", "1d", and sums like "1h30m". Zero or negative is rejected.
Result<DurationMs> ParseDuration(std::string_view text);

std::string HexHash(std::string_view data);

}  // namespace outpost
