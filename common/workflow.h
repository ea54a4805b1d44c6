// Workflow definitions: the YAML file format, parsed and validated.
//
// Validation happens before a definition is accepted anywhere (CLI, agent, later the hub)
// and reports every problem it finds as "FILE:LINE:COL: [task 'ID': ]reason", one a line,
// so a user can fix the file in one pass. A definition is identified by its name and the
// BLAKE2b hash of its source text; a run keeps the source it started with.
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
  int line = 0;  // 1-based line of the task in its file
};

struct ParamDef {
  std::string name;
  std::optional<std::string> default_value;  // nullopt: required
};

struct WorkflowDef {
  std::string name;
  DurationMs timeout = 0;  // whole run; 0: none
  std::vector<ParamDef> params;
  std::vector<TaskDef> tasks;
  std::string source;  // the YAML text as given
  std::string hash;    // hex BLAKE2b-128 of source

  const TaskDef* FindTask(std::string_view id) const;
  // Resolves user-supplied params against the definition: unknown names and missing
  // required params are errors; defaults fill the rest.
  Result<std::map<std::string, std::string>> ResolveParams(
      const std::map<std::string, std::string>& given) const;
};

// Parses and validates `yaml`; `filename` only labels error messages.
Result<WorkflowDef> ParseWorkflow(std::string_view yaml, std::string_view filename);
Result<WorkflowDef> LoadWorkflowFile(const std::string& path);

// "250ms", "30s", "5m", "2h", "1d", and sums like "1h30m". Zero or negative is rejected.
Result<DurationMs> ParseDuration(std::string_view text);

std::string HexHash(std::string_view data);

}  // namespace outpost
