// Workflow definitions: the public entry points (ParseWorkflow, LoadWorkflowFile) that run
// the parser and then the validator, and what needs neither: enum names, param checks and
// resolution, durations, and the source hash.
#include "common/workflow/workflow.h"

#include "common/trust.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/workflow/tz.h"
#include "common/workflow/workflow_internal.h"

namespace outpost {

namespace workflow_internal {

bool IsName(std::string_view s, size_t max_len) {
  if (s.empty() || s.size() > max_len) return false;
  if (!std::isalnum(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return false;
    }
  }
  return true;
}

void Problems::Add(SourcePos pos, const std::string& task, const std::string& reason) {
  std::ostringstream os;
  os << file_;
  if (pos.line > 0) os << ":" << pos.line << ":" << pos.col;
  os << ": ";
  if (!task.empty()) os << "task '" << task << "': ";
  os << reason;
  lines_.push_back(os.str());
}

Status Problems::ToStatus() const {
  std::string all;
  for (const auto& l : lines_) {
    if (!all.empty()) all += "\n";
    all += l;
  }
  return Status::InvalidArgument(all);
}

}  // namespace workflow_internal

const char* TriggerName(Trigger t) {
  switch (t) {
    case Trigger::kAllSuccess: return "all_success";
    case Trigger::kAllDone: return "all_done";
    case Trigger::kOneSuccess: return "one_success";
    case Trigger::kOneFailed: return "one_failed";
    case Trigger::kNoneFailed: return "none_failed";
  }
  return "?";
}

const char* ParamTypeName(ParamDef::Type t) {
  switch (t) {
    case ParamDef::Type::kString: return "string";
    case ParamDef::Type::kInt: return "int";
    case ParamDef::Type::kNumber: return "number";
    case ParamDef::Type::kBool: return "bool";
  }
  return "?";
}

Result<std::string> ParamDef::Check(const std::string& value) const {
  std::string v = value;
  auto bad = [&](const std::string& want) {
    return Status::InvalidArgument("param '" + name + "' must be " + want + ", got '" + value +
                                   "'");
  };
  switch (type) {
    case Type::kString:
      break;
    case Type::kInt: {
      // Digits with an optional '-', as a user writes an integer: not "+3", not "007".
      const size_t i = (!v.empty() && v[0] == '-') ? 1 : 0;
      if (i == v.size() || v.size() > 19) return bad("an int");
      if (v.size() - i > 1 && v[i] == '0') return bad("an int (no leading zeros)");
      for (size_t k = i; k < v.size(); ++k) {
        if (!std::isdigit(static_cast<unsigned char>(v[k]))) return bad("an int");
      }
      errno = 0;
      std::strtoll(v.c_str(), nullptr, 10);
      if (errno == ERANGE) return bad("an int (a 64-bit signed integer)");
      if (v == "-0") v = "0";
      break;
    }
    case Type::kNumber: {
      // A decimal number: [-]digits[.digits][e[-+]digits]. Not nan, inf, hex or "+3".
      size_t k = (!v.empty() && v[0] == '-') ? 1 : 0;
      if (k + 1 < v.size() && v[k] == '0' && std::isdigit(static_cast<unsigned char>(v[k + 1]))) {
        return bad("a number (no leading zeros)");
      }
      auto digits = [&] {
        const size_t from = k;
        while (k < v.size() && std::isdigit(static_cast<unsigned char>(v[k]))) ++k;
        return k - from;
      };
      size_t n = digits();
      if (k < v.size() && v[k] == '.') {
        ++k;
        n += digits();
      }
      if (n == 0) return bad("a number");
      if (k < v.size() && (v[k] == 'e' || v[k] == 'E')) {
        ++k;
        if (k < v.size() && (v[k] == '-' || v[k] == '+')) ++k;
        if (digits() == 0) return bad("a number");
      }
      if (k != v.size() || v.size() > 64) return bad("a number");
      errno = 0;
      const double d = std::strtod(v.c_str(), nullptr);
      if (errno == ERANGE || !std::isfinite(d)) return bad("a finite number");
      break;
    }
    case Type::kBool:
      if (v == "true" || v == "yes" || v == "on" || v == "1") v = "true";
      else if (v == "false" || v == "no" || v == "off" || v == "0") v = "false";
      else return bad("a bool (true/false, yes/no, on/off or 1/0, in lower case)");
      break;
  }
  // Numbers are one of the choices by value (1 is 1.0); the rest by their normalized text
  // (the parser keeps bool choices as true/false).
  auto same = [&](const std::string& ch) {
    if (type != Type::kNumber) return ch == v;
    char* end = nullptr;
    const double c = std::strtod(ch.c_str(), &end);
    return end == ch.c_str() + ch.size() && c == std::strtod(v.c_str(), nullptr);
  };
  if (!choices.empty() && std::find_if(choices.begin(), choices.end(), same) == choices.end()) {
    std::string list;
    for (const auto& ch : choices) list += (list.empty() ? "" : ", ") + ch;
    return bad("one of " + list);
  }
  return v;
}

const char* CatchUpName(ScheduleDef::CatchUp c) {
  switch (c) {
    case ScheduleDef::CatchUp::kSkip: return "skip";
    case ScheduleDef::CatchUp::kLatest: return "latest";
    case ScheduleDef::CatchUp::kAll: return "all";
  }
  return "?";
}

const char* OverlapName(ScheduleDef::Overlap o) {
  switch (o) {
    case ScheduleDef::Overlap::kSkip: return "skip";
    case ScheduleDef::Overlap::kQueue: return "queue";
    case ScheduleDef::Overlap::kAllow: return "allow";
  }
  return "?";
}

const char* WhenName(When w) {
  switch (w) {
    case When::kSuccess: return "success";
    case When::kFailure: return "failure";
    case When::kAlways: return "always";
  }
  return "?";
}

const TaskDef* WorkflowDef::FindTask(std::string_view id) const {
  if (task_index.size() == tasks.size() && !tasks.empty()) {
    auto it = task_index.find(id);
    return it == task_index.end() || it->second >= tasks.size() ? nullptr : &tasks[it->second];
  }
  for (const auto& t : tasks) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

void WorkflowDef::IndexTasks() {
  task_index.clear();
  for (size_t i = 0; i < tasks.size(); ++i) task_index.emplace(tasks[i].id, i);
  if (task_index.size() != tasks.size()) task_index.clear();  // duplicate ids: scan instead
}

Result<std::map<std::string, std::string>> WorkflowDef::ResolveParams(
    const std::map<std::string, std::string>& given) const {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : given) {
    const ParamDef* pd = nullptr;
    for (const auto& p : params) {
      if (p.name == k) pd = &p;
    }
    if (!pd) return Status::InvalidArgument("workflow '" + name + "' has no param '" + k + "'");
    auto checked = pd->Check(v);
    if (!checked.ok()) return checked.status().WithContext("workflow '" + name + "'");
    out[k] = *checked;
  }
  for (const auto& p : params) {
    if (out.count(p.name)) continue;
    if (!p.default_value) {
      return Status::InvalidArgument("workflow '" + name + "' needs param '" + p.name + "'");
    }
    out[p.name] = *p.default_value;
  }
  return out;
}

std::string EnvVarName(std::string_view prefix, std::string_view name) {
  std::string out(prefix);
  for (char c : name) {
    const unsigned char u = static_cast<unsigned char>(c);
    out += std::isalnum(u) ? static_cast<char>(std::toupper(u)) : '_';
  }
  return out;
}

Result<DurationMs> ParseDuration(std::string_view text) {
  if (text.empty()) return Status::InvalidArgument("empty duration");
  DurationMs total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    long long n = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      n = n * 10 + (text[i] - '0');
      if (n > 1'000'000'000LL) {
        return Status::InvalidArgument("duration '" + std::string(text) + "' is too large");
      }
      ++i;
    }
    if (i == start) {
      return Status::InvalidArgument("bad duration '" + std::string(text) +
                                     "' (use e.g. 500ms, 30s, 5m, 2h, 1d, 1h30m)");
    }
    size_t ustart = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    std::string_view unit = text.substr(ustart, i - ustart);
    DurationMs mult;
    if (unit == "ms") mult = 1;
    else if (unit == "s") mult = 1000;
    else if (unit == "m") mult = 60'000;
    else if (unit == "h") mult = 3'600'000;
    else if (unit == "d") mult = 86'400'000;
    else {
      return Status::InvalidArgument("bad duration '" + std::string(text) +
                                     "': unit must be ms, s, m, h or d");
    }
    total += n * mult;
  }
  if (total <= 0) {
    return Status::InvalidArgument("duration '" + std::string(text) + "' must be positive");
  }
  return total;
}

std::string HexHash(std::string_view data) { return Blake2bHex(data, 16); }

Result<WorkflowDef> ParseWorkflow(std::string_view yaml, std::string_view filename) {
  workflow_internal::Problems problems(filename);
  WorkflowDef def;
  if (workflow_internal::ReadWorkflowYaml(yaml, &def, &problems)) {
    def.IndexTasks();
    workflow_internal::ValidateWorkflow(def, &problems);
  }
  if (!problems.empty()) return problems.ToStatus();
  def.source = std::string(yaml);
  def.hash = HexHash(yaml);
  return def;
}

Result<WorkflowDef> LoadWorkflowFile(const std::string& path) {
  // A directory, a device or a huge file is refused by what it is, before it is read.
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) {
    return Status::NotFound("cannot read workflow file '" + path + "'");
  }
  if (!std::filesystem::is_regular_file(st)) {
    return Status::InvalidArgument("workflow file '" + path + "' is not a regular file");
  }
  const auto size = std::filesystem::file_size(path, ec);
  if (ec || size > (1 << 20)) {
    return Status::InvalidArgument("workflow file '" + path + "' is larger than 1 MiB");
  }
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in && !in.eof()) return Status::IoError("cannot read workflow file '" + path + "'");
  OUTPOST_ASSIGN_OR_RETURN(WorkflowDef def, ParseWorkflow(text, path));
  OUTPOST_RETURN_IF_ERROR(CheckScheduleZone(def, path));
  return def;
}

// The schedule's zone is read where the definition is checked: a zone this machine cannot
// load is the file's error (FILE:LINE:COL), not a surprise when the schedule is set.
Status CheckScheduleZone(const WorkflowDef& def, std::string_view filename) {
  if (!def.schedule) return Status::Ok();
  auto tz = TimeZone::Load(def.schedule->timezone);
  if (tz.ok()) return Status::Ok();
  const SourcePos& at = def.schedule->timezone_pos;
  return Status::InvalidArgument(std::string(filename) + ":" + std::to_string(at.line) + ":" +
                                 std::to_string(at.col) + ": schedule '" + def.schedule->cron +
                                 "': " + tz.status().message());
}

}  // namespace outpost
