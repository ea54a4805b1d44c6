// Workflow internals shared by the parser (workflow_parse.cpp) and the validator
// (workflow_validate.cpp), which ParseWorkflow (workflow.cpp) runs one after the other into
// one list of problems: the parser's first, then the validator's. Not for use outside
// common/workflow and its tests.
//
// The parser reports what makes a value unreadable: YAML syntax, unknown or missing keys,
// wrong kinds, misspelt choices, numbers out of range, bad durations, malformed names and
// ids, empty commands, and `when` conditions that do not parse. The validator checks the
// rules over the parsed structs, without YAML: which keys go together (run or shell, when
// or trigger, approval tasks, fan-out), schedules, param defaults against their type,
// unique task ids, dependencies, cycles, and the references in templates and conditions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/workflow/workflow.h"

namespace outpost::workflow_internal {

// Letters, digits, '-', '_' and '.', starting with a letter or digit, at most `max_len`.
bool IsName(std::string_view s, size_t max_len);

// Collects problems, one a line, as "FILE:LINE:COL: [task 'ID': ]reason" (no LINE:COL
// when the position is not known).
class Problems {
 public:
  explicit Problems(std::string_view file) : file_(file) {}
  void Add(SourcePos pos, const std::string& task, const std::string& reason);
  bool empty() const { return lines_.empty(); }
  Status ToStatus() const;

 private:
  std::string file_;
  std::vector<std::string> lines_;
};

// Reads `yaml` into `def` (all but source and hash), adding every problem of form to
// `problems`. Returns false when there is nothing to validate: the text is not YAML, not a
// map, or yaml-cpp gave up part way.
bool ReadWorkflowYaml(std::string_view yaml, WorkflowDef* def, Problems* problems);

// Checks every rule over `def`, adding what breaks one to `problems`. Cycles and templates
// are only checked when `problems` is still empty: with a task missing or misnamed their
// messages would mislead.
void ValidateWorkflow(const WorkflowDef& def, Problems* problems);

}  // namespace outpost::workflow_internal
