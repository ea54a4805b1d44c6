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

// A key of a map node, or an undefined (false) node. yaml-cpp's own lookup builds a
// stringstream for every absent key, and its iterators are not cheap either: the keys of
// the map looked at last are indexed once (parsing asks many keys of one map in a row).
YAML::Node Get(const YAML::Node& map, std::string_view key) {
  struct Index {
    YAML::Node map{YAML::NodeType::Undefined};
    std::vector<std::pair<std::string, YAML::Node>> keys;
  };
  thread_local Index last;
  if (!map.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  if (!last.map.IsDefined() || !last.map.is(map)) {
    last.map.reset(map);  // not operator=, which would rewrite the cached node
    last.keys.clear();
    for (auto it = map.begin(); it != map.end(); ++it) {
      if (it->first.IsScalar()) last.keys.emplace_back(it->first.Scalar(), it->second);
    }
  }
  for (const auto& [k, v] : last.keys) {
    if (k == key) return v;  // the first, as yaml-cpp (duplicates are refused anyway)
  }
  return YAML::Node(YAML::NodeType::Undefined);
}


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
  if (Get(n, "max")) rd.Int(Get(n, "max"), "retry.max", 0, 1000, &r->max);
  if (Get(n, "backoff")) rd.Duration(Get(n, "backoff"), "retry.backoff", &r->backoff.initial);
  if (Get(n, "factor")) rd.Number(Get(n, "factor"), "retry.factor", 1.0, 100.0, &r->backoff.factor);
  if (Get(n, "max_backoff")) rd.Duration(Get(n, "max_backoff"), "retry.max_backoff", &r->backoff.max);
  if (Get(n, "jitter")) {
    bool j = false;
    if (!Get(n, "jitter").IsScalar() || !YAML::convert<bool>::decode(Get(n, "jitter"), j)) {
      rd.Add(Get(n, "jitter"), "'retry.jitter' must be true or false");
    }
    r->backoff.full_jitter = j;
  }
}

// `id`, then `type`, `run` and `shell`: what the task does.
void ParseIdAndCommand(Reader& rd, const YAML::Node& n, TaskDef* t) {
  if (!Get(n, "id")) {
    rd.Add(n, "task has no 'id'");
  } else if (rd.Scalar(Get(n, "id"), "id", &t->id) && !IsName(t->id, 63)) {
    rd.Add(Get(n, "id"), "task id '" + t->id + "' must be 1-63 letters, digits, '-', '_' or '.'");
  }
  rd.task = t->id;
  rd.KnownKeys(n,
               {"id", "type", "run", "shell", "needs", "when", "trigger", "timeout", "retry", "env",
                "workdir", "for_each", "parallelism", "compensate", "queue", "output_cap",
                "keep_children"},
               "task");
  if (Get(n, "type")) {
    rd.Choice<bool>(Get(n, "type"), "type", {{"command", false}, {"approval", true}}, &t->approval);
  }
  if (const auto run = Get(n, "run")) {
    if (run.IsScalar()) {
      rd.Add(run, "'run' must be a list (argv); use 'shell' for a command line");
    } else if (rd.StringList(run, "run", &t->run) && t->run.empty()) {
      rd.Add(run, "'run' must not be empty");
    }
  }
  if (const auto shell = Get(n, "shell")) {
    if (rd.Scalar(shell, "shell", &t->shell) && t->shell.empty()) {
      rd.Add(shell, "'shell' must not be empty");
    }
  }
  if (const auto keep = Get(n, "keep_children")) {
    rd.Choice<bool>(keep, "keep_children", {{"true", true}, {"false", false}}, &t->keep_children);
  }
}

// `trigger` and `when`: when the task may start.
void ParseTriggerAndWhen(Reader& rd, const YAML::Node& n, TaskDef* t) {
  if (const auto trigger = Get(n, "trigger")) {
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
  const auto when = Get(n, "when");
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
    if (!Get(fe, "lines_of")) {
      rd.Add(fe, "'for_each' map needs 'lines_of: TASK'");
    } else {
      rd.Scalar(Get(fe, "lines_of"), "for_each.lines_of", &f->lines_of);
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
// One pass over the task's keys: yaml-cpp builds a stringstream for every lookup of an
// absent key, which made positions cost more than the rest of parsing a large file.
TaskDef::KeyPositions KeyPositionsOf(const YAML::Node& n) {
  TaskDef::KeyPositions k;
  const std::pair<const char*, SourcePos*> wanted[] = {
      {"run", &k.run},   {"shell", &k.shell},       {"retry", &k.retry},
      {"env", &k.env},   {"workdir", &k.workdir},   {"when", &k.when},
      {"trigger", &k.trigger}, {"for_each", &k.for_each}, {"parallelism", &k.parallelism},
      {"compensate", &k.compensate}};
  for (auto it = n.begin(); it != n.end(); ++it) {
    if (!it->first.IsScalar()) continue;
    const std::string& key = it->first.Scalar();
    for (const auto& [name, pos] : wanted) {
      if (key == name) *pos = At(it->second);
    }
  }
  return k;
}

// `n` is a map; its problems are reported against the task's id once that is read.
void ParseTask(Problems* p, const YAML::Node& n, TaskDef* t) {
  Reader rd{p, ""};
  t->line = n.Mark().line + 1;
  t->col = n.Mark().column + 1;
  t->pos = KeyPositionsOf(n);
  ParseIdAndCommand(rd, n, t);
  if (const auto needs = Get(n, "needs")) {
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
  if (Get(n, "timeout")) rd.Duration(Get(n, "timeout"), "timeout", &t->timeout);
  if (Get(n, "retry")) ParseRetry(rd, Get(n, "retry"), &t->retry);
  if (Get(n, "env")) ParseEnv(rd, Get(n, "env"), t);
  if (Get(n, "workdir")) rd.Scalar(Get(n, "workdir"), "workdir", &t->workdir);
  if (Get(n, "for_each")) ParseForEach(rd, Get(n, "for_each"), &t->for_each);
  if (Get(n, "parallelism")) rd.Int(Get(n, "parallelism"), "parallelism", 1, 10000, &t->for_each.parallelism);
  if (Get(n, "compensate")) ParseCompensate(rd, Get(n, "compensate"), t);
  if (int cap = 0; Get(n, "output_cap") && rd.Int(Get(n, "output_cap"), "output_cap", 1024, 16 << 20, &cap)) {
    t->output_cap = static_cast<size_t>(cap);
  }
  if (Get(n, "queue") && rd.Scalar(Get(n, "queue"), "queue", &t->queue) && !IsName(t->queue, 63)) {
    rd.Add(Get(n, "queue"), "queue name '" + t->queue + "' is not valid");
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
  if (!Get(n, "cron")) {
    rd.Add(n, "'schedule' needs 'cron'");
  } else {
    s->cron_pos = At(Get(n, "cron"));
    rd.Scalar(Get(n, "cron"), "schedule.cron", &s->cron);
  }
  if (Get(n, "timezone")) {
    s->timezone_pos = At(Get(n, "timezone"));
    rd.Scalar(Get(n, "timezone"), "schedule.timezone", &s->timezone);
  }
  using CatchUp = ScheduleDef::CatchUp;
  using Overlap = ScheduleDef::Overlap;
  if (Get(n, "catch_up")) {
    rd.Choice<CatchUp>(
        Get(n, "catch_up"), "schedule.catch_up",
        {{"skip", CatchUp::kSkip}, {"latest", CatchUp::kLatest}, {"all", CatchUp::kAll}},
        &s->catch_up);
  }
  if (Get(n, "catch_up_max")) {
    rd.Int(Get(n, "catch_up_max"), "schedule.catch_up_max", 1, 1000, &s->catch_up_max);
  }
  if (Get(n, "overlap")) {
    rd.Choice<Overlap>(
        Get(n, "overlap"), "schedule.overlap",
        {{"skip", Overlap::kSkip}, {"queue", Overlap::kQueue}, {"allow", Overlap::kAllow}},
        &s->overlap);
  }
  if (Get(n, "grace")) rd.Duration(Get(n, "grace"), "schedule.grace", &s->grace);
}

// Typed: {type: string|int|number|bool, default: X, choices: [...], description: ...}
void ParseTypedParam(Reader& rd, const YAML::Node& v, ParamDef* pd) {
  const std::string key = "params." + pd->name;
  rd.KnownKeys(v, {"type", "default", "choices", "description", "secret"}, "param '" + pd->name + "'");
  if (Get(v, "secret")) {
    rd.Choice<bool>(Get(v, "secret"), key + ".secret", {{"true", true}, {"false", false}}, &pd->secret);
    pd->secret_pos = At(Get(v, "secret"));
  }
  const Options<ParamDef::Type> types = {{"string", ParamDef::Type::kString},
                                         {"int", ParamDef::Type::kInt},
                                         {"number", ParamDef::Type::kNumber},
                                         {"bool", ParamDef::Type::kBool}};
  std::string type = "string";
  if (Get(v, "type")) rd.Scalar(Get(v, "type"), key + ".type", &type);
  if (!Lookup(types, type, &pd->type)) {
    rd.Add(Get(v, "type"), "param '" + pd->name + "': type must be " + Alternatives(types) + ", got '" +
                          type + "'");
  }
  if (Get(v, "choices")) {
    rd.StringList(Get(v, "choices"), key + ".choices", &pd->choices);
    if (pd->choices.empty()) {
      rd.Add(Get(v, "choices"), "param '" + pd->name + "': choices must name at least one value "
                                "(leave 'choices' out to allow any)");
    }
    // Each choice must be a value of the param's type, or no value could ever be given.
    // Kept normalized (a bool choice `yes` is `true`), as given values are compared.
    ParamDef typed = *pd;
    typed.choices.clear();
    for (auto& c : pd->choices) {
      if (auto ok = typed.Check(c); !ok.ok()) {
        rd.Add(Get(v, "choices"), "choice of " + ok.status().message());
      } else {
        c = *ok;
      }
    }
  }
  if (std::string ignored; Get(v, "description")) {
    rd.Scalar(Get(v, "description"), key + ".description", &ignored);
  }
  std::string d;
  if (Get(v, "default") && !Get(v, "default").IsNull() && rd.Scalar(Get(v, "default"), key + ".default", &d)) {
    // Kept normalized when it fits; validation reports a default that does not.
    auto checked = pd->Check(d);
    pd->default_value = checked.ok() ? *checked : d;
    pd->default_pos = At(Get(v, "default"));
  }
}

void ParseParams(Reader& rd, const YAML::Node& n, std::vector<ParamDef>* params) {
  if (!n.IsMap()) {
    rd.Add(n, "'params' must be a map of name: default");
    return;
  }
  std::map<std::string, std::string> vars;  // variable -> the param given it
  for (const auto& kv : n) {
    ParamDef pd;
    if (!rd.Scalar(kv.first, "param name", &pd.name)) continue;
    if (!IsName(pd.name, 63)) rd.Add(kv.first, "param name '" + pd.name + "' is not valid");
    // Tasks read params from variables: two names that make the same variable would
    // silently become one value.
    const std::string var = ParamEnvName(pd.name);
    if (auto [it, fresh] = vars.emplace(var, pd.name); !fresh) {
      rd.Add(kv.first, "params '" + it->second + "' and '" + pd.name + "' would both be $" + var +
                           " in a task's environment: rename one");
    }
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

// artifacts: {NAME: DIGEST}: files stored at the hub by content (outpostctl artifact push)
// that every task of the workflow sees at $OUTPOST_ARTIFACT_<NAME>.
void ParseArtifacts(Reader& rd, const YAML::Node& n, std::map<std::string, std::string>* out) {
  if (!n.IsMap()) {
    rd.Add(n, "'artifacts' must be a map of name: digest (outpostctl artifact push prints it)");
    return;
  }
  std::map<std::string, std::string> vars;  // variable -> the artifact given it
  for (const auto& kv : n) {
    std::string name, digest;
    if (!rd.Scalar(kv.first, "artifact name", &name)) continue;
    if (!IsName(name, 63)) {
      rd.Add(kv.first, "artifact name '" + name + "' must be 1-63 letters, digits, '-', '_' or '.'");
      continue;
    }
    const std::string var = ArtifactEnvName(name);
    if (auto [it, fresh] = vars.emplace(var, name); !fresh) {
      rd.Add(kv.first, "artifacts '" + it->second + "' and '" + name + "' would both be $" + var +
                           " in a task's environment: rename one");
    }
    if (!rd.Scalar(kv.second, "artifacts." + name, &digest)) continue;
    if (digest.rfind("blake2b:", 0) == 0) digest = digest.substr(8);
    bool hex = digest.size() == 64;
    for (char c : digest) hex = hex && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    if (!hex) {
      rd.Add(kv.second, "artifact '" + name + "': '" + digest +
                            "' is not a content digest (64 lowercase hex digits, as outpostctl "
                            "artifact push prints)");
      continue;
    }
    (*out)[name] = digest;
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
      {"name", "description", "timeout", "params", "tasks", "schedule", "concurrency", "priority",
       "artifacts"},
      "workflow");
  if (Get(root, "artifacts")) ParseArtifacts(rd, Get(root, "artifacts"), &def->artifacts);
  if (Get(root, "schedule")) ParseSchedule(rd, Get(root, "schedule"), &def->schedule.emplace());
  if (Get(root, "concurrency")) rd.Int(Get(root, "concurrency"), "concurrency", 1, 10000, &def->concurrency);
  if (Get(root, "priority")) rd.Int(Get(root, "priority"), "priority", -1000, 1000, &def->priority);
  if (!Get(root, "name")) {
    rd.Add(root, "workflow has no 'name'");
  } else if (rd.Scalar(Get(root, "name"), "name", &def->name) && !IsName(def->name, 63)) {
    rd.Add(Get(root, "name"),
           "workflow name '" + def->name + "' must be 1-63 letters, digits, '-', '_' or '.'");
  }
  if (std::string ignored; Get(root, "description")) {
    rd.Scalar(Get(root, "description"), "description", &ignored);
  }
  if (Get(root, "timeout")) rd.Duration(Get(root, "timeout"), "timeout", &def->timeout);
  if (Get(root, "params")) ParseParams(rd, Get(root, "params"), &def->params);
  if (!Get(root, "tasks")) {
    rd.Add(root, "workflow has no 'tasks'");
  } else {
    ParseTasks(rd, Get(root, "tasks"), &def->tasks);
  }
}

// Nodes the file may expand to. Aliases (`*a`) share a node, so a few hundred bytes of
// aliases of aliases expand to billions ("a billion laughs"): every walk of the document
// would take that long, on the agent's loop. A 1 MiB file without aliases has fewer than
// a million nodes, so the bound costs an honest file nothing.
constexpr uint64_t kMaxExpandedNodes = 1'000'000;

// YAML allows a key twice in a mapping and yaml-cpp keeps the first: a second `run:` or
// `timeout:` would be silently ignored. Every mapping in the file is checked, nested ones
// too (bounded depth: the file is at most 1 MiB and yaml-cpp bounds its own nesting), and
// the nodes visited are counted against kMaxExpandedNodes (*budget); false when spent.
bool RefuseDuplicateKeys(const YAML::Node& n, Problems* p, int depth, uint64_t* budget) {
  if (*budget == 0) return false;
  --*budget;
  if (depth > 64) return true;
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
      if (!RefuseDuplicateKeys(it->second, p, depth + 1, budget)) return false;
    }
  } else if (n.IsSequence()) {
    for (const auto& e : n) {
      if (!RefuseDuplicateKeys(e, p, depth + 1, budget)) return false;
    }
  }
  return true;
}

}  // namespace

bool ReadWorkflowYaml(std::string_view yaml, WorkflowDef* def, Problems* p) {
  YAML::Node root;
  try {
    std::vector<YAML::Node> docs = YAML::LoadAll(std::string(yaml));
    if (docs.size() > 1) {
      // A second document would be ignored: what its author wrote there would not run.
      p->Add(At(docs[1]), "", "a workflow file holds one YAML document; a second one starts here");
      return false;
    }
    if (!docs.empty()) root = docs[0];
  } catch (const YAML::Exception& e) {
    p->Add(At(e.mark), "", "YAML syntax: " + e.msg);
    return false;
  }
  if (!root.IsMap()) {
    p->Add(At(root), "", std::string("a workflow file must be a map, got ") + KindName(root));
    return false;
  }
  try {
    uint64_t budget = kMaxExpandedNodes;
    if (!RefuseDuplicateKeys(root, p, 0, &budget)) {
      p->Add(At(root), "",
             "the document expands to more than " + std::to_string(kMaxExpandedNodes) +
                 " nodes (aliases of aliases?); nothing else was checked");
      return false;
    }
    ParseRoot(p, root, def);
  } catch (const YAML::Exception& e) {
    p->Add(At(e.mark), "", std::string("YAML: ") + e.msg);
    return false;
  }
  return true;
}

}  // namespace outpost::workflow_internal
