// Templates in a task's `run`, `shell`, `env` values and `workdir`:
//   {{ params.NAME }}            a run parameter
//   {{ site.name }}              this site's name
//   {{ site.labels.KEY }}        one of this site's labels
//   {{ tasks.ID.outputs.KEY }}   an output an upstream task published (key=value lines
//                                written to the file named by $OUTPOST_OUTPUT)
//   {{ item }}                   the item of this instance of a for_each task
// Parsed and checked when a workflow is validated (an unknown param or a task that is not
// upstream is an error, not an empty string); rendered when an attempt starts. A value
// that does not exist at that point (a label the site lacks, an output the task did not
// publish) fails the task with a message naming it — never an empty substitution.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace outpost {

struct TemplateRef {
  enum class Kind { kParam, kSiteName, kSiteLabel, kTaskOutput, kItem } kind = Kind::kParam;
  std::string name;  // param, label key, or task id
  std::string key;   // output key (kTaskOutput)
  std::string text;  // the reference as written, for messages
};

struct TemplatePiece {
  std::string literal;  // used when !is_ref
  bool is_ref = false;
  TemplateRef ref;
};

// Splits `text` into literals and references; a malformed or unknown reference is an error.
Result<std::vector<TemplatePiece>> ParseTemplate(std::string_view text);
bool HasTemplate(std::string_view text);

struct TemplateContext {
  const std::map<std::string, std::string>* params = nullptr;
  std::string site_name;
  const std::map<std::string, std::string>* site_labels = nullptr;
  // Outputs of a task in this run, or nullptr if it published none (or is unknown).
  std::function<const std::map<std::string, std::string>*(const std::string& task)> outputs;
  const std::string* item = nullptr;  // set for an instance of a for_each task
};

Result<std::string> RenderTemplate(std::string_view text, const TemplateContext& ctx);

// For a `shell:` command: no value can change how the shell parses it. Each reference
// becomes a variable, VAR_PREFIX + its index (appended to *env with the value), and the
// text refers to it as "${VAR}" where it stands unquoted, ${VAR} inside "...", and
// '"${VAR}"' inside '...' — so it expands to exactly the value, as one word, and is never
// parsed as shell. (In a here-document body, use the OUTPOST_PARAM_* variables instead.)
Result<std::string> RenderShellTemplate(std::string_view text, const TemplateContext& ctx,
                                        const std::string& var_prefix,
                                        std::vector<std::pair<std::string, std::string>>* env);

// Parses the key=value lines a task wrote to $OUTPOST_OUTPUT: keys are letters, digits,
// '_', '-', '.'; blank lines and lines starting with '#' are skipped; anything else is an
// error naming the line. At most 256 keys and 64 KiB.
Result<std::map<std::string, std::string>> ParseOutputs(std::string_view text);

}  // namespace outpost
