// Workflow validation: the rules a definition must follow, checked over the plain structs
// of workflow.h — which keys go together, schedules, param defaults, unique ids,
// dependencies, cycles, and the references in templates and `when` conditions. Positions
// come from the parser (SourcePos); there is no YAML here.
#include <algorithm>
#include <cctype>
#include <functional>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <string>
#include <string_view>
#include <vector>

#include "common/workflow/cron.h"
#include "common/workflow/expr.h"
#include "common/workflow/template.h"
#include "common/workflow/workflow_internal.h"

namespace outpost::workflow_internal {
namespace {

// Whether a key was given: in the file, or (in a definition built in code) by its value.
bool Given(SourcePos pos, bool has_value) { return pos.line > 0 || has_value; }


// A key's position when it was given in a file, else the task's ("line N: " then says where).
SourcePos KeyPos(const TaskDef& t, SourcePos key) {
  return key.line > 0 ? key : SourcePos{t.line, t.col};
}

// Where need i of t was given: its own position in a parsed file, else the task's.
SourcePos NeedPos(const TaskDef& t, size_t i) {
  if (i < t.needs_pos.size() && t.needs_pos[i].line > 0) return t.needs_pos[i];
  return {t.line, t.col};
}

bool IsZoneName(const std::string& tz) {
  bool ok = !tz.empty() && tz.size() < 64 && tz.find("..") == std::string::npos && tz[0] != '/';
  for (char ch : tz) {
    ok = ok && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '/' || ch == '_' ||
                ch == '-' || ch == '+');
  }
  return ok;
}

void CheckSchedule(const ScheduleDef& s, Problems* p) {
  if (!IsZoneName(s.timezone)) {
    p->Add(s.timezone_pos, "", "'schedule.timezone' '" + s.timezone + "' is not a zone name");
  }
  if (s.cron.empty()) return;
  if (auto spec = ParseCron(s.cron); !spec.ok()) {
    p->Add(s.cron_pos, "", "'schedule.cron': " + spec.status().message());
  }
}

void CheckParamDefaults(const std::vector<ParamDef>& params, Problems* p) {
  for (const auto& pd : params) {
    if (pd.secret && (pd.default_value || pd.type != ParamDef::Type::kString || !pd.choices.empty())) {
      p->Add(pd.secret_pos, "",
             "param '" + pd.name + "' is secret: it is a string, with no default and no choices "
             "(its value is sealed to the site when a run starts)");
    }
    if (!pd.default_value) continue;
    if (auto checked = pd.Check(*pd.default_value); !checked.ok()) {
      p->Add(pd.default_pos, "", "default of " + checked.status().message());
    }
  }
}

// Which keys of a task go together: a process or an approval, `when` or `trigger`, fan-out.
void CheckTaskKeys(const TaskDef& t, Problems* p) {
  const TaskDef::KeyPositions& k = t.pos;
  const SourcePos at{t.line, t.col};
  const bool has_run = Given(k.run, !t.run.empty());
  const bool has_shell = Given(k.shell, !t.shell.empty());
  if (t.approval) {
    if (has_run || has_shell || Given(k.retry, t.retry.max > 0) || Given(k.env, !t.env.empty()) ||
        Given(k.workdir, !t.workdir.empty())) {
      p->Add(at, t.id,
             "an approval task runs no process: no 'run', 'shell', 'retry', 'env' or 'workdir'");
    }
  } else if (has_run == has_shell) {
    p->Add(at, t.id, "needs exactly one of 'run' (argv list) or 'shell' (command line)");
  }
  const bool has_when = Given(k.when, t.when != When::kSuccess || !t.when_expr.empty());
  if (Given(k.trigger, t.trigger.has_value()) && has_when) {
    p->Add(k.trigger, t.id, "use either 'when' or 'trigger', not both");
  }
  if (t.for_each.present && t.approval) {
    p->Add(k.for_each, t.id, "an approval task cannot fan out");
  }
  if (Given(k.parallelism, t.for_each.parallelism != 0) && !t.for_each.present) {
    p->Add(k.parallelism, t.id, "'parallelism' needs 'for_each'");
  }
  if (Given(k.compensate, t.has_compensate()) && t.approval) {
    p->Add(k.compensate, t.id, "an approval task has nothing to compensate");
  }
}

// Every task's own rules, then unique ids; returns the tasks that make up the graph (the
// first of each id).
std::vector<const TaskDef*> CheckTasks(const std::vector<TaskDef>& tasks, Problems* p) {
  std::vector<const TaskDef*> graph;
  std::map<std::string, int> first_line;
  // Downstream tasks read outputs as OUTPOST_OUTPUT_<TASK>_<KEY>: two ids that make the
  // same <TASK> (build-a, build_a) would give their outputs one name.
  std::map<std::string, const TaskDef*> var_of;
  for (const auto& t : tasks) {
    CheckTaskKeys(t, p);
    if (t.id.empty()) continue;
    const auto [it, fresh] = first_line.emplace(t.id, t.line);
    if (fresh) {
      graph.push_back(&t);
      const auto [v, new_var] = var_of.emplace(EnvVarName("", t.id), &t);
      if (!new_var) {
        p->Add({t.line, t.col}, t.id,
               "task ids '" + v->second->id + "' (line " + std::to_string(v->second->line) +
                   ") and '" + t.id + "' would both be OUTPOST_OUTPUT_" + v->first +
                   "_* for downstream tasks: rename one");
      }
    } else {
      p->Add({t.line, t.col}, t.id,
             "duplicate task id (first defined on line " + std::to_string(it->second) + ")");
    }
  }
  return graph;
}

void CheckNeeds(const std::vector<const TaskDef*>& graph, Problems* p) {
  std::set<std::string> ids;
  for (const TaskDef* t : graph) ids.insert(t->id);
  for (const TaskDef* t : graph) {
    for (const auto& dep : t->needs) {
      const size_t i = static_cast<size_t>(&dep - t->needs.data());
      const SourcePos at = NeedPos(*t, i);
      if (!ids.count(dep)) {
        p->Add(at, t->id, "needs unknown task '" + dep + "'");
      } else if (dep == t->id) {
        p->Add(at, t->id, "needs itself");
      }
    }
  }
}

// Depth-first search for a cycle, iterative (a 20,000-task chain is 20,000 deep); returns
// it as "a -> b -> a", or "" if none. O(tasks + edges).
std::string FindCycle(const WorkflowDef& def) {
  const size_t n = def.tasks.size();
  std::unordered_map<std::string_view, size_t> index;
  for (size_t i = 0; i < n; ++i) index.emplace(def.tasks[i].id, i);
  std::vector<uint8_t> color(n, 0);  // 0 white, 1 on the path, 2 done
  std::vector<std::pair<size_t, size_t>> path;  // (task, next need to look at)
  for (size_t root = 0; root < n; ++root) {
    if (color[root] != 0) continue;
    path.push_back({root, 0});
    color[root] = 1;
    while (!path.empty()) {
      auto& [task, next] = path.back();
      const auto& needs = def.tasks[task].needs;
      if (next == needs.size()) {
        color[task] = 2;
        path.pop_back();
        continue;
      }
      auto dep = index.find(needs[next++]);
      if (dep == index.end()) continue;
      if (color[dep->second] == 1) {
        // Each edge with the line where it is written: "a -> b (line 7) -> a (line 3)".
        std::string found;
        size_t k = 0;
        while (path[k].first != dep->second) ++k;
        found = def.tasks[path[k].first].id;
        for (; k < path.size(); ++k) {
          const TaskDef& from = def.tasks[path[k].first];
          const size_t need = path[k].second - 1;  // the need followed out of `from`
          const std::string& to = k + 1 < path.size() ? def.tasks[path[k + 1].first].id
                                                      : def.tasks[dep->second].id;
          found += " -> " + to + " (line " + std::to_string(NeedPos(from, need).line) + ")";
        }
        return found;
      }
      if (color[dep->second] == 0) {
        color[dep->second] = 1;
        path.push_back({dep->second, 0});
      }
    }
  }
  return "";
}

// Whether `target` is upstream of `t` (needed by it, directly or not). A direct need is
// answered at once; otherwise a search from t that stops at the target.
bool IsUpstream(const WorkflowDef& def, const TaskDef& t, const std::string& target) {
  if (std::find(t.needs.begin(), t.needs.end(), target) != t.needs.end()) return true;
  std::unordered_set<std::string_view> seen;
  std::vector<std::string_view> todo(t.needs.begin(), t.needs.end());
  while (!todo.empty()) {
    const std::string_view id = todo.back();
    todo.pop_back();
    if (id == target) return true;
    if (!seen.insert(id).second) continue;
    if (const TaskDef* d = def.FindTask(id)) todo.insert(todo.end(), d->needs.begin(), d->needs.end());
  }
  return false;
}

// What a template or condition in one task may refer to.
struct Scope {
  const WorkflowDef& def;
  const TaskDef& task;
  const std::set<std::string>& params;  // declared params
  const std::set<std::string>& secrets;  // declared secret params
  bool upstream(const std::string& id) const { return IsUpstream(def, task, id); }
};

// `tasks.ID.state == 'succeded'` (a typo) would never be equal: the task would be skipped
// every time, silently. A state compared with a literal must name a state.
void CheckStateLiterals(const Expr& e, const TaskDef& t, Problems* p) {
  if (!e) return;
  if (e->op != ExprNode::Op::kEq && e->op != ExprNode::Op::kNe) {
    CheckStateLiterals(e->left, t, p);
    CheckStateLiterals(e->right, t, p);
    return;
  }
  static const std::set<std::string> kStates = {"pending",   "running",   "succeeded",
                                                "failed",    "skipped",   "cancelled",
                                                "awaiting_approval"};
  auto check = [&](const ExprValue& state, const ExprValue& other) {
    if (!state.task_state || other.is_ref || kStates.count(other.literal)) return;
    p->Add(KeyPos(t, t.pos.when), t.id,
           "'when' compares " + state.ref.text + " with '" + other.literal +
               "', which is not a task state (pending, running, succeeded, failed, skipped, "
               "cancelled, awaiting_approval): it would never be equal");
  };
  check(e->a, e->b);
  check(e->b, e->a);
}

void CheckWhenRefs(const Scope& s, Problems* p) {
  const TaskDef& t = s.task;
  if (t.when_expr.empty()) return;
  auto e = ParseExpr(t.when_expr);
  std::vector<ExprValue> refs;
  if (e.ok()) {
    ExprRefs(*e, &refs);
    CheckStateLiterals(*e, t, p);
  }
  for (const auto& v : refs) {
    const TemplateRef& r = v.ref;
    const std::string text = "'when' " + r.text;
    const SourcePos at = KeyPos(t, t.pos.when);
    if (r.kind == TemplateRef::Kind::kItem) {
      p->Add(at, t.id, text + " is only defined in the commands of a for_each task");
    } else if (r.kind == TemplateRef::Kind::kParam && !s.params.count(r.name)) {
      p->Add(at, t.id, text + ": no param '" + r.name + "' is declared");
    } else if (r.kind == TemplateRef::Kind::kParam && s.secrets.count(r.name)) {
      p->Add(at, t.id, text + ": param '" + r.name + "' is secret; a task reads it from $" +
                           ParamEnvName(r.name) + ", never through a template or condition");
    } else if (r.kind == TemplateRef::Kind::kTaskOutput && !s.upstream(r.name)) {
      p->Add(at, t.id,
             text + ": task '" + r.name + "' is not upstream of '" + t.id + "' (add it to needs)");
    }
  }
}

// One text of a task with templates in it.
struct Text {
  std::string_view text;
  bool compensation;  // the task's own outputs are readable too
  bool item_ok;       // {{ item }} is defined
  SourcePos at;       // the key it was given under
};

void CheckTextRefs(const Scope& s, const Text& x, Problems* p) {
  const TaskDef& t = s.task;
  const SourcePos at = KeyPos(t, x.at);
  auto pieces = ParseTemplate(x.text);
  if (!pieces.ok()) {
    p->Add(at, t.id, pieces.status().message());
    return;
  }
  for (const auto& piece : *pieces) {
    if (!piece.is_ref) continue;
    const TemplateRef& r = piece.ref;
    if (r.kind == TemplateRef::Kind::kParam && !s.params.count(r.name)) {
      p->Add(at, t.id, r.text + ": no param '" + r.name + "' is declared");
    } else if (r.kind == TemplateRef::Kind::kParam && s.secrets.count(r.name)) {
      p->Add(at, t.id, r.text + ": param '" + r.name + "' is secret; a task reads it from $" +
                           ParamEnvName(r.name) + " (a value pasted into a command would show in ps)");
    } else if (r.kind == TemplateRef::Kind::kItem && !x.item_ok) {
      p->Add(at, t.id, r.text + " is only defined in the commands of a for_each task");
    } else if (r.kind == TemplateRef::Kind::kTaskOutput && !s.def.FindTask(r.name)) {
      p->Add(at, t.id, r.text + ": no task '" + r.name + "'");
    } else if (r.kind == TemplateRef::Kind::kTaskOutput &&
               !(x.compensation && r.name == t.id) && !s.upstream(r.name)) {
      p->Add(at, t.id,
             r.text + ": task '" + r.name + "' is not upstream of '" + t.id +
                 "' (add it to needs)");
    }
  }
}

// Every {{ ... }} in run, shell, env values, workdir, compensate and for_each must parse;
// params must be declared; tasks.ID must be upstream of the task that uses it (its value
// exists only once that task finished) — a compensation may also read its own task's.
void CheckTemplates(const WorkflowDef& def, Problems* p) {
  std::set<std::string> params, secrets;
  for (const auto& pd : def.params) {
    params.insert(pd.name);
    if (pd.secret) secrets.insert(pd.name);
  }
  for (const auto& t : def.tasks) {
    const Scope s{def, t, params, secrets};
    CheckWhenRefs(s, p);
    if (!t.for_each.lines_of.empty() && !s.upstream(t.for_each.lines_of)) {
      p->Add(KeyPos(t, t.pos.for_each), t.id,
             "for_each.lines_of: task '" + t.for_each.lines_of +
                 "' is not upstream of '" + t.id + "' (add it to needs)");
    }
    const bool fan_out = t.for_each.present;
    const auto& k = t.pos;
    std::vector<Text> texts;
    for (const auto& r : t.run) texts.push_back({r, false, fan_out, k.run});
    texts.push_back({t.shell, false, fan_out, k.shell});
    texts.push_back({t.workdir, false, fan_out, k.workdir});
    for (const auto& [key, v] : t.env) texts.push_back({v, false, fan_out, k.env});
    for (const auto& r : t.compensate_run) texts.push_back({r, true, fan_out, k.compensate});
    texts.push_back({t.compensate_shell, true, fan_out, k.compensate});
    texts.push_back({t.for_each.expr, false, false, k.for_each});
    for (const Text& x : texts) {
      if (HasTemplate(x.text)) CheckTextRefs(s, x, p);
    }
  }
}

}  // namespace

void ValidateWorkflow(const WorkflowDef& def, Problems* p) {
  if (def.schedule) CheckSchedule(*def.schedule, p);
  CheckParamDefaults(def.params, p);
  CheckNeeds(CheckTasks(def.tasks, p), p);
  if (p->empty()) {
    std::string cycle = FindCycle(def);
    if (!cycle.empty()) {
      // Reported at the task where the cycle was entered.
      const TaskDef* first = def.FindTask(cycle.substr(0, cycle.find(' ')));
      p->Add(first ? SourcePos{first->line, first->col} : SourcePos{}, "",
             "dependency cycle: " + cycle);
    }
  }
  if (p->empty()) CheckTemplates(def, p);
}

}  // namespace outpost::workflow_internal
