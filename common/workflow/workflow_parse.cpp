// Workflow parsing: the yaml-cpp adapter that reads a workflow file into the structs of
// workflow.h, reporting what makes a value unreadable at its FILE:LINE:COL and keeping the
// positions validation needs (SourcePos). The only source file that uses yaml-cpp (with its
// value readers in workflow_yaml.h); its exceptions stop here.
#include <yaml-cpp/yaml.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/workflow/expr.h"
#include "common/workflow/template.h"
#include "common/workflow/workflow_internal.h"
#include "common/workflow/workflow_yaml.h"

namespace outpost::workflow_internal {
namespace {

void ParseRetry(Reader& rd, const YAML::Node& n, RetryPolicy* r) {
  if (n.IsScalar()) {  // `retry: 3` shorthand
    rd.Int(n, "retry", 0, 1000, &r->max);
    return;
  }
  if (!n.IsMap()) {
    rd.Add(n, std::string("'retry' must be a map or a count, got ") + KindName(n));
    return;
  }
  rd.KnownKeys(n, {"max", "backoff", "factor", "max_backoff", "jitter"}, "retry");
  if (n["max"]) rd.Int(n["max"], "retry.max", 0, 1000, &r->max);
  if (n["backoff"]) rd.Duration(n["backoff"], "retry.backoff", &r->backoff.initial);
  if (n["factor"]) rd.Number(n["factor"], "retry.factor", 1.0, 100.0, &r->backoff.factor);
  if (n["max_backoff"]) rd.Duration(n["max_backoff"], "retry.max_backoff", &r->backoff.max);
  if (n["jitter"]) {
    bool j = false;
    if (!n["jitter"].IsScalar() || !YAML::convert<bool>::decode(n["jitter"], j)) {
      rd.Add(n["jitter"], "'retry.jitter' must be true or false");
    }
    r->backoff.full_jitter = j;
  }
}

// `id`, then `type`, `run` and `shell`: what the task does.
void ParseIdAndCommand(Reader& rd, const YAML::Node& n, TaskDef* t) {
  if (!n["id"]) {
    rd.Add(n, "task has no 'id'");
  } else if (rd.Scalar(n["id"], "id", &t->id) && !IsName(t->id, 63)) {
    rd.Add(n["id"], "task id '" + t->id + "' must be 1-63 letters, digits, '-', '_' or '.'");
  }
  rd.task = t->id;
  rd.KnownKeys(n,
               {"id", "type", "run", "shell", "needs", "when", "trigger", "timeout", "retry", "env",
                "workdir", "for_each", "parallelism", "compensate", "queue", "output_cap",
                "keep_children"},
               "task");
  if (n["type"]) {
    rd.Choice<bool>(n["type"], "type", {{"command", false}, {"approval", true}}, &t->approval);
  }
  if (const auto run = n["run"]) {
    if (run.IsScalar()) {
      rd.Add(run, "'run' must be a list (argv); use 'shell' for a command line");
    } else if (rd.StringList(run, "run", &t->run) && t->run.empty()) {
      rd.Add(run, "'run' must not be empty");
    }
  }
  if (const auto shell = n["shell"]) {
    if (rd.Scalar(shell, "shell", &t->shell) && t->shell.empty()) {
      rd.Add(shell, "'shell' must not be empty");
    }
  }
  if (const auto keep = n["keep_children"]) {
    rd.Choice<bool>(keep, "keep_children", {{"true", true}, {"false", false}}, &t->keep_children);
  }
}

// `trigger` and `when`: when the task may start.
void ParseTriggerAndWhen(Reader& rd, const YAML::Node& n, TaskDef* t) {
  if (const auto trigger = n["trigger"]) {
    Trigger tr = Trigger::kAllSuccess;
    if (rd.Choice<Trigger>(trigger, "trigger",
                           {{"all_success", Trigger::kAllSuccess},
                            {"all_done", Trigger::kAllDone},
                            {"one_success", Trigger::kOneSuccess},
                            {"one_failed", Trigger::kOneFailed},
                            {"none_failed", Trigger::kNoneFailed}},
                           &tr)) {
      t->trigger = tr;
    }
  }
  const auto when = n["when"];
  if (!when) return;
  std::string w;
  if (!rd.Scalar(when, "when", &w)) return;
  const Options<When> keywords = {
      {"success", When::kSuccess}, {"failure", When::kFailure}, {"always", When::kAlways}};
  if (Lookup(keywords, w, &t->when)) return;
  if (auto e = ParseExpr(w); e.ok()) {
    t->when_expr = w;
  } else {
    rd.Add(when, "'when' must be success, failure, always or a condition; " + e.status().message());
  }
}

void ParseEnv(Reader& rd, const YAML::Node& env, TaskDef* t) {
  if (!env.IsMap()) {
    rd.Add(env, std::string("'env' must be a map, got ") + KindName(env));
    return;
  }
  for (const auto& kv : env) {
    std::string k, v;
    if (!rd.Scalar(kv.first, "env key", &k) || !rd.Scalar(kv.second, "env." + k, &v)) continue;
    if (k.empty() || k.find('=') != std::string::npos) {
      rd.Add(kv.first, "env name '" + k + "' is not valid");
    } else {
      t->env.emplace_back(k, v);
    }
  }
}

void ParseForEach(Reader& rd, const YAML::Node& fe, ForEach* f) {
  f->present = true;
  if (fe.IsSequence()) {
    rd.StringList(fe, "for_each", &f->items);
  } else if (fe.IsScalar()) {
    f->expr = fe.Scalar();
    if (!HasTemplate(f->expr)) {
      rd.Add(fe,
             "'for_each' must be a list, a template such as \"{{ tasks.ID.outputs.KEY }}\", or "
             "{lines_of: TASK}");
    }
  } else if (fe.IsMap()) {
    rd.KnownKeys(fe, {"lines_of"}, "for_each");
    if (!fe["lines_of"]) {
      rd.Add(fe, "'for_each' map needs 'lines_of: TASK'");
    } else {
      rd.Scalar(fe["lines_of"], "for_each.lines_of", &f->lines_of);
    }
  } else {
    rd.Add(fe, std::string("'for_each' must be a list, a template or a map, got ") + KindName(fe));
  }
}

void ParseCompensate(Reader& rd, const YAML::Node& comp, TaskDef* t) {
  if (comp.IsScalar()) {
    t->compensate_shell = comp.Scalar();
    if (t->compensate_shell.empty()) rd.Add(comp, "'compensate' must not be empty");
  } else if (comp.IsSequence()) {
    if (rd.StringList(comp, "compensate", &t->compensate_run) && t->compensate_run.empty()) {
      rd.Add(comp, "'compensate' must not be empty");
    }
  } else {
    rd.Add(comp, std::string("'compensate' must be a command line or an argv list, got ") +
                     KindName(comp));
  }
}

// Where the keys validation relates to each other were given.
TaskDef::KeyPositions KeyPositionsOf(const YAML::Node& n) {
  auto at = [&n](const char* key) { return n[key] ? At(n[key]) : SourcePos{}; };
  return {at("run"),  at("shell"),   at("retry"),    at("env"),         at("workdir"),
          at("when"), at("trigger"), at("for_each"), at("parallelism"), at("compensate")};
}

// `n` is a map; its problems are reported against the task's id once that is read.
void ParseTask(Problems* p, const YAML::Node& n, TaskDef* t) {
  Reader rd{p, ""};
  t->line = n.Mark().line + 1;
  t->col = n.Mark().column + 1;
  t->pos = KeyPositionsOf(n);
  ParseIdAndCommand(rd, n, t);
  if (const auto needs = n["needs"]) {
    if (needs.IsScalar()) {
      t->needs.push_back(needs.Scalar());
      t->needs_pos.push_back(At(needs));
    } else {
      rd.StringList(needs, "needs", &t->needs);
      if (needs.IsSequence()) {
        for (const auto& e : needs) t->needs_pos.push_back(At(e));
      }
    }
  }
  ParseTriggerAndWhen(rd, n, t);
  if (n["timeout"]) rd.Duration(n["timeout"], "timeout", &t->timeout);
  if (n["retry"]) ParseRetry(rd, n["retry"], &t->retry);
  if (n["env"]) ParseEnv(rd, n["env"], t);
  if (n["workdir"]) rd.Scalar(n["workdir"], "workdir", &t->workdir);
  if (n["for_each"]) ParseForEach(rd, n["for_each"], &t->for_each);
  if (n["parallelism"]) rd.Int(n["parallelism"], "parallelism", 1, 10000, &t->for_each.parallelism);
  if (n["compensate"]) ParseCompensate(rd, n["compensate"], t);
  if (int cap = 0; n["output_cap"] && rd.Int(n["output_cap"], "output_cap", 1024, 16 << 20, &cap)) {
    t->output_cap = static_cast<size_t>(cap);
  }
  if (n["queue"] && rd.Scalar(n["queue"], "queue", &t->queue) && !IsName(t->queue, 63)) {
    rd.Add(n["queue"], "queue name '" + t->queue + "' is not valid");
  }
}

void ParseSchedule(Reader& rd, const YAML::Node& n, ScheduleDef* s) {
  if (n.IsScalar()) {
    s->cron = n.Scalar();
    s->cron_pos = At(n);
    return;
  }
  if (!n.IsMap()) {
    rd.Add(n, std::string("'schedule' must be a cron line or a map, got ") + KindName(n));
    return;
  }
  rd.KnownKeys(n, {"cron", "timezone", "catch_up", "catch_up_max", "overlap", "grace"}, "schedule");
  if (!n["cron"]) {
    rd.Add(n, "'schedule' needs 'cron'");
  } else {
    s->cron_pos = At(n["cron"]);
    rd.Scalar(n["cron"], "schedule.cron", &s->cron);
  }
  if (n["timezone"]) {
    s->timezone_pos = At(n["timezone"]);
    rd.Scalar(n["timezone"], "schedule.timezone", &s->timezone);
  }
  using CatchUp = ScheduleDef::CatchUp;
  using Overlap = ScheduleDef::Overlap;
  if (n["catch_up"]) {
    rd.Choice<CatchUp>(
        n["catch_up"], "schedule.catch_up",
        {{"skip", CatchUp::kSkip}, {"latest", CatchUp::kLatest}, {"all", CatchUp::kAll}},
        &s->catch_up);
  }
  if (n["catch_up_max"]) {
    rd.Int(n["catch_up_max"], "schedule.catch_up_max", 1, 1000, &s->catch_up_max);
  }
  if (n["overlap"]) {
    rd.Choice<Overlap>(
        n["overlap"], "schedule.overlap",
        {{"skip", Overlap::kSkip}, {"queue", Overlap::kQueue}, {"allow", Overlap::kAllow}},
        &s->overlap);
  }
  if (n["grace"]) rd.Duration(n["grace"], "schedule.grace", &s->grace);
}

// Typed: {type: string|int|number|bool, default: X, choices: [...], description: ...}
void ParseTypedParam(Reader& rd, const YAML::Node& v, ParamDef* pd) {
  const std::string key = "params." + pd->name;
  rd.KnownKeys(v, {"type", "default", "choices", "description"}, "param '" + pd->name + "'");
  const Options<ParamDef::Type> types = {{"string", ParamDef::Type::kString},
                                         {"int", ParamDef::Type::kInt},
                                         {"number", ParamDef::Type::kNumber},
                                         {"bool", ParamDef::Type::kBool}};
  std::string type = "string";
  if (v["type"]) rd.Scalar(v["type"], key + ".type", &type);
  if (!Lookup(types, type, &pd->type)) {
    rd.Add(v["type"], "param '" + pd->name + "': type must be " + Alternatives(types) + ", got '" +
                          type + "'");
  }
  if (v["choices"]) rd.StringList(v["choices"], key + ".choices", &pd->choices);
  if (std::string ignored; v["description"]) {
    rd.Scalar(v["description"], key + ".description", &ignored);
  }
  std::string d;
  if (v["default"] && !v["default"].IsNull() && rd.Scalar(v["default"], key + ".default", &d)) {
    // Kept normalized when it fits; validation reports a default that does not.
    auto checked = pd->Check(d);
    pd->default_value = checked.ok() ? *checked : d;
    pd->default_pos = At(v["default"]);
  }
}

void ParseParams(Reader& rd, const YAML::Node& n, std::vector<ParamDef>* params) {
  if (!n.IsMap()) {
    rd.Add(n, "'params' must be a map of name: default");
    return;
  }
  for (const auto& kv : n) {
    ParamDef pd;
    if (!rd.Scalar(kv.first, "param name", &pd.name)) continue;
    if (!IsName(pd.name, 63)) rd.Add(kv.first, "param name '" + pd.name + "' is not valid");
    const YAML::Node& v = kv.second;
    if (v.IsScalar()) {
      pd.default_value = v.Scalar();
    } else if (v.IsMap()) {
      ParseTypedParam(rd, v, &pd);
    } else if (!v.IsNull()) {
      rd.Add(v, "param '" + pd.name +
                    "' must be a default value, empty (required) or a map with type");
    }
    params->push_back(pd);
  }
}

void ParseTasks(Reader& rd, const YAML::Node& n, std::vector<TaskDef>* tasks) {
  if (!n.IsSequence() || n.size() == 0) {
    rd.Add(n, "'tasks' must be a non-empty list");
    return;
  }
  for (const auto& tn : n) {
    if (!tn.IsMap()) {
      rd.Add(tn, std::string("each task must be a map, got ") + KindName(tn));
      continue;
    }
    TaskDef t;
    ParseTask(rd.problems, tn, &t);
    tasks->push_back(std::move(t));
  }
}

void ParseRoot(Problems* p, const YAML::Node& root, WorkflowDef* def) {
  Reader rd{p, ""};
  rd.KnownKeys(
      root,
      {"name", "description", "timeout", "params", "tasks", "schedule", "concurrency", "priority"},
      "workflow");
  if (root["schedule"]) ParseSchedule(rd, root["schedule"], &def->schedule.emplace());
  if (root["concurrency"]) rd.Int(root["concurrency"], "concurrency", 1, 10000, &def->concurrency);
  if (root["priority"]) rd.Int(root["priority"], "priority", -1000, 1000, &def->priority);
  if (!root["name"]) {
    rd.Add(root, "workflow has no 'name'");
  } else if (rd.Scalar(root["name"], "name", &def->name) && !IsName(def->name, 63)) {
    rd.Add(root["name"],
           "workflow name '" + def->name + "' must be 1-63 letters, digits, '-', '_' or '.'");
  }
  if (std::string ignored; root["description"]) {
    rd.Scalar(root["description"], "description", &ignored);
  }
  if (root["timeout"]) rd.Duration(root["timeout"], "timeout", &def->timeout);
  if (root["params"]) ParseParams(rd, root["params"], &def->params);
  if (!root["tasks"]) {
    rd.Add(root, "workflow has no 'tasks'");
  } else {
    ParseTasks(rd, root["tasks"], &def->tasks);
  }
}

// YAML allows a key twice in a mapping and yaml-cpp keeps the first: a second `run:` or
// `timeout:` would be silently ignored. Every mapping in the file is checked, nested ones
// too (bounded depth: the file is at most 1 MiB and yaml-cpp bounds its own nesting).
void RefuseDuplicateKeys(const YAML::Node& n, Problems* p, int depth) {
  if (depth > 64) return;
  if (n.IsMap()) {
    std::map<std::string, SourcePos> seen;
    for (auto it = n.begin(); it != n.end(); ++it) {
      if (it->first.IsScalar()) {
        const std::string key = it->first.Scalar();
        auto [where, fresh] = seen.emplace(key, At(it->first));
        if (!fresh) {
          p->Add(At(it->first), "",
                 "duplicate key '" + key + "' (first at line " + std::to_string(where->second.line) +
                     ", column " + std::to_string(where->second.col) + ")");
        }
      }
      RefuseDuplicateKeys(it->second, p, depth + 1);
    }
  } else if (n.IsSequence()) {
    for (const auto& e : n) RefuseDuplicateKeys(e, p, depth + 1);
  }
}

}  // namespace

bool ReadWorkflowYaml(std::string_view yaml, WorkflowDef* def, Problems* p) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    p->Add(At(e.mark), "", "YAML syntax: " + e.msg);
    return false;
  }
  if (!root.IsMap()) {
    p->Add(At(root), "", std::string("a workflow file must be a map, got ") + KindName(root));
    return false;
  }
  try {
    RefuseDuplicateKeys(root, p, 0);
    ParseRoot(p, root, def);
  } catch (const YAML::Exception& e) {
    p->Add(At(e.mark), "", std::string("YAML: ") + e.msg);
    return false;
  }
  return true;
}

}  // namespace outpost::workflow_internal
