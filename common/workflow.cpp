#include "common/workflow.h"

#include <set>

#include "common/cron.h"
#include "common/expr.h"
#include "common/template.h"

#include <sodium.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <functional>
#include <fstream>
#include <set>
#include <sstream>

namespace outpost {
namespace {

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

// Collects validation errors with their position.
class Problems {
 public:
  explicit Problems(std::string_view file) : file_(file) {}
  void Add(const YAML::Mark& mark, const std::string& task, const std::string& reason) {
    std::ostringstream os;
    os << file_;
    if (!mark.is_null()) os << ":" << mark.line + 1 << ":" << mark.column + 1;
    os << ": ";
    if (!task.empty()) os << "task '" << task << "': ";
    os << reason;
    lines_.push_back(os.str());
  }
  bool empty() const { return lines_.empty(); }
  Status ToStatus() const {
    std::string all;
    for (const auto& l : lines_) {
      if (!all.empty()) all += "\n";
      all += l;
    }
    return Status::InvalidArgument(all);
  }

 private:
  std::string file_;
  std::vector<std::string> lines_;
};

const char* KindName(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: return "a scalar";
    case YAML::NodeType::Null: return "empty";
    default: return "undefined";
  }
}

struct Ctx {
  Problems* p;
  std::string task;

  bool Scalar(const YAML::Node& n, const std::string& key, std::string* out) {
    if (!n.IsScalar()) {
      p->Add(n.Mark(), task, "'" + key + "' must be a string, got " + KindName(n));
      return false;
    }
    *out = n.Scalar();
    return true;
  }
  bool Int(const YAML::Node& n, const std::string& key, int lo, int hi, int* out) {
    long long v = 0;
    if (!n.IsScalar() || !YAML::convert<long long>::decode(n, v) || v < lo || v > hi) {
      p->Add(n.Mark(), task,
             "'" + key + "' must be an integer from " + std::to_string(lo) + " to " +
                 std::to_string(hi) + ", got '" + (n.IsScalar() ? n.Scalar() : KindName(n)) +
                 "'");
      return false;
    }
    *out = static_cast<int>(v);
    return true;
  }
  bool Number(const YAML::Node& n, const std::string& key, double lo, double hi, double* out) {
    double v = 0;
    if (!n.IsScalar() || !YAML::convert<double>::decode(n, v) || !(v >= lo && v <= hi)) {
      p->Add(n.Mark(), task,
             "'" + key + "' must be a number from " + std::to_string(lo) + " to " +
                 std::to_string(hi));
      return false;
    }
    *out = v;
    return true;
  }
  bool Duration(const YAML::Node& n, const std::string& key, DurationMs* out) {
    std::string s;
    if (!Scalar(n, key, &s)) return false;
    auto d = ParseDuration(s);
    if (!d.ok()) {
      p->Add(n.Mark(), task, "'" + key + "': " + d.status().message());
      return false;
    }
    *out = *d;
    return true;
  }
  bool StringList(const YAML::Node& n, const std::string& key, std::vector<std::string>* out) {
    if (!n.IsSequence()) {
      p->Add(n.Mark(), task, "'" + key + "' must be a list of strings, got " + KindName(n));
      return false;
    }
    for (const auto& item : n) {
      std::string s;
      if (!Scalar(item, key + "[]", &s)) return false;
      out->push_back(s);
    }
    return true;
  }
  // Checks every key of map `n` is in `allowed`.
  void KnownKeys(const YAML::Node& n, const std::set<std::string>& allowed, const char* where) {
    for (const auto& kv : n) {
      const std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "?";
      if (!allowed.count(k)) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        p->Add(kv.first.Mark(), task,
               "unknown key '" + k + "' in " + where + " (expected one of: " + list + ")");
      }
    }
  }
};

void ParseRetry(Ctx& c, const YAML::Node& n, RetryPolicy* r) {
  if (n.IsScalar()) {  // `retry: 3` shorthand
    c.Int(n, "retry", 0, 1000, &r->max);
    return;
  }
  if (!n.IsMap()) {
    c.p->Add(n.Mark(), c.task, std::string("'retry' must be a map or a count, got ") + KindName(n));
    return;
  }
  c.KnownKeys(n, {"max", "backoff", "factor", "max_backoff", "jitter"}, "retry");
  if (n["max"]) c.Int(n["max"], "retry.max", 0, 1000, &r->max);
  if (n["backoff"]) c.Duration(n["backoff"], "retry.backoff", &r->backoff.initial);
  if (n["factor"]) c.Number(n["factor"], "retry.factor", 1.0, 100.0, &r->backoff.factor);
  if (n["max_backoff"]) c.Duration(n["max_backoff"], "retry.max_backoff", &r->backoff.max);
  if (n["jitter"]) {
    bool j = false;
    if (!n["jitter"].IsScalar() || !YAML::convert<bool>::decode(n["jitter"], j)) {
      c.p->Add(n["jitter"].Mark(), c.task, "'retry.jitter' must be true or false");
    }
    r->backoff.full_jitter = j;
  }
}

void ParseTask(Problems* p, const YAML::Node& n, TaskDef* t) {
  Ctx c{p, ""};
  t->line = n.Mark().line + 1;
  if (!n.IsMap()) {
    p->Add(n.Mark(), "", std::string("each task must be a map, got ") + KindName(n));
    return;
  }
  if (!n["id"]) {
    p->Add(n.Mark(), "", "task has no 'id'");
  } else if (c.Scalar(n["id"], "id", &t->id) && !IsName(t->id, 63)) {
    p->Add(n["id"].Mark(), "",
           "task id '" + t->id + "' must be 1-63 letters, digits, '-', '_' or '.'");
  }
  c.task = t->id;
  c.KnownKeys(n, {"id", "type", "run", "shell", "needs", "when", "trigger", "timeout", "retry", "env",
                 "workdir", "for_each", "parallelism", "compensate", "queue", "output_cap"},
              "task");
  const bool has_run = static_cast<bool>(n["run"]), has_shell = static_cast<bool>(n["shell"]);
  if (n["type"]) {
    std::string type;
    if (c.Scalar(n["type"], "type", &type)) {
      if (type == "approval") {
        t->approval = true;
      } else if (type != "command") {
        p->Add(n["type"].Mark(), t->id, "'type' must be command or approval, got '" + type + "'");
      }
    }
  }
  if (t->approval) {
    if (has_run || has_shell || n["retry"] || n["env"] || n["workdir"]) {
      p->Add(n.Mark(), t->id,
             "an approval task runs no process: no 'run', 'shell', 'retry', 'env' or 'workdir'");
    }
  } else if (has_run == has_shell) {
    p->Add(n.Mark(), t->id, "needs exactly one of 'run' (argv list) or 'shell' (command line)");
  }
  if (has_run) {
    if (n["run"].IsScalar()) {
      p->Add(n["run"].Mark(), t->id,
             "'run' must be a list (argv); use 'shell' for a command line");
    } else if (c.StringList(n["run"], "run", &t->run) && t->run.empty()) {
      p->Add(n["run"].Mark(), t->id, "'run' must not be empty");
    }
  }
  if (has_shell && c.Scalar(n["shell"], "shell", &t->shell) && t->shell.empty()) {
    p->Add(n["shell"].Mark(), t->id, "'shell' must not be empty");
  }
  if (n["needs"]) {
    if (n["needs"].IsScalar()) {
      t->needs.push_back(n["needs"].Scalar());
    } else {
      c.StringList(n["needs"], "needs", &t->needs);
    }
  }
  if (n["trigger"]) {
    std::string tr;
    if (c.Scalar(n["trigger"], "trigger", &tr)) {
      if (tr == "all_success") t->trigger = Trigger::kAllSuccess;
      else if (tr == "all_done") t->trigger = Trigger::kAllDone;
      else if (tr == "one_success") t->trigger = Trigger::kOneSuccess;
      else if (tr == "one_failed") t->trigger = Trigger::kOneFailed;
      else if (tr == "none_failed") t->trigger = Trigger::kNoneFailed;
      else p->Add(n["trigger"].Mark(), t->id,
                  "'trigger' must be all_success, all_done, one_success, one_failed or none_failed, got '" + tr + "'");
    }
    if (n["when"]) {
      p->Add(n["trigger"].Mark(), t->id, "use either 'when' or 'trigger', not both");
    }
  }
  if (n["when"]) {
    std::string w;
    if (c.Scalar(n["when"], "when", &w)) {
      if (w == "success") t->when = When::kSuccess;
      else if (w == "failure") t->when = When::kFailure;
      else if (w == "always") t->when = When::kAlways;
      else if (auto e = ParseExpr(w); e.ok()) t->when_expr = w;
      else p->Add(n["when"].Mark(), t->id,
                  "'when' must be success, failure, always or a condition; " + e.status().message());
    }
  }
  if (n["timeout"]) c.Duration(n["timeout"], "timeout", &t->timeout);
  if (n["retry"]) ParseRetry(c, n["retry"], &t->retry);
  if (n["env"]) {
    if (!n["env"].IsMap()) {
      p->Add(n["env"].Mark(), t->id, std::string("'env' must be a map, got ") + KindName(n["env"]));
    } else {
      for (const auto& kv : n["env"]) {
        std::string k, v;
        if (c.Scalar(kv.first, "env key", &k) && c.Scalar(kv.second, "env." + k, &v)) {
          if (k.empty() || k.find('=') != std::string::npos) {
            p->Add(kv.first.Mark(), t->id, "env name '" + k + "' is not valid");
          } else {
            t->env.emplace_back(k, v);
          }
        }
      }
    }
  }
  if (n["workdir"]) c.Scalar(n["workdir"], "workdir", &t->workdir);
  if (const auto fe = n["for_each"]) {
    t->for_each.present = true;
    if (fe.IsSequence()) {
      c.StringList(fe, "for_each", &t->for_each.items);
    } else if (fe.IsScalar()) {
      t->for_each.expr = fe.Scalar();
      if (!HasTemplate(t->for_each.expr)) {
        p->Add(fe.Mark(), t->id, "'for_each' must be a list, a template such as "
                                 "\"{{ tasks.ID.outputs.KEY }}\", or {lines_of: TASK}");
      }
    } else if (fe.IsMap()) {
      c.KnownKeys(fe, {"lines_of"}, "for_each");
      if (!fe["lines_of"]) {
        p->Add(fe.Mark(), t->id, "'for_each' map needs 'lines_of: TASK'");
      } else {
        c.Scalar(fe["lines_of"], "for_each.lines_of", &t->for_each.lines_of);
      }
    } else {
      p->Add(fe.Mark(), t->id, std::string("'for_each' must be a list, a template or a map, got ") +
                                   KindName(fe));
    }
    if (t->approval) p->Add(fe.Mark(), t->id, "an approval task cannot fan out");
  }
  if (n["parallelism"]) {
    c.Int(n["parallelism"], "parallelism", 1, 10000, &t->for_each.parallelism);
    if (!n["for_each"]) p->Add(n["parallelism"].Mark(), t->id, "'parallelism' needs 'for_each'");
  }
  if (const auto comp = n["compensate"]) {
    if (comp.IsScalar()) {
      t->compensate_shell = comp.Scalar();
      if (t->compensate_shell.empty()) p->Add(comp.Mark(), t->id, "'compensate' must not be empty");
    } else if (comp.IsSequence()) {
      if (c.StringList(comp, "compensate", &t->compensate_run) && t->compensate_run.empty()) {
        p->Add(comp.Mark(), t->id, "'compensate' must not be empty");
      }
    } else {
      p->Add(comp.Mark(), t->id,
             std::string("'compensate' must be a command line or an argv list, got ") + KindName(comp));
    }
    if (t->approval) p->Add(comp.Mark(), t->id, "an approval task has nothing to compensate");
  }
  if (n["output_cap"]) {
    int cap = 0;
    if (c.Int(n["output_cap"], "output_cap", 1024, 16 * 1024 * 1024, &cap)) t->output_cap = static_cast<size_t>(cap);
  }
  if (n["queue"] && c.Scalar(n["queue"], "queue", &t->queue) && !IsName(t->queue, 63)) {
    p->Add(n["queue"].Mark(), t->id, "queue name '" + t->queue + "' is not valid");
  }
}

void ParseSchedule(Ctx& c, const YAML::Node& n, ScheduleDef* s) {
  if (n.IsScalar()) {
    s->cron = n.Scalar();
  } else if (!n.IsMap()) {
    c.p->Add(n.Mark(), "", std::string("'schedule' must be a cron line or a map, got ") + KindName(n));
    return;
  } else {
    c.KnownKeys(n, {"cron", "timezone", "catch_up", "catch_up_max", "overlap", "grace"}, "schedule");
    if (!n["cron"]) c.p->Add(n.Mark(), "", "'schedule' needs 'cron'");
    else c.Scalar(n["cron"], "schedule.cron", &s->cron);
    if (n["timezone"] && c.Scalar(n["timezone"], "schedule.timezone", &s->timezone)) {
      const std::string& tz = s->timezone;
      bool ok = !tz.empty() && tz.size() < 64 && tz.find("..") == std::string::npos && tz[0] != '/';
      for (char ch : tz) {
        ok = ok && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '/' || ch == '_' ||
                    ch == '-' || ch == '+');
      }
      if (!ok) c.p->Add(n["timezone"].Mark(), "", "'schedule.timezone' '" + tz + "' is not a zone name");
    }
    std::string v;
    if (n["catch_up"] && c.Scalar(n["catch_up"], "schedule.catch_up", &v)) {
      if (v == "skip") s->catch_up = ScheduleDef::CatchUp::kSkip;
      else if (v == "latest") s->catch_up = ScheduleDef::CatchUp::kLatest;
      else if (v == "all") s->catch_up = ScheduleDef::CatchUp::kAll;
      else c.p->Add(n["catch_up"].Mark(), "", "'schedule.catch_up' must be skip, latest or all, got '" + v + "'");
    }
    if (n["catch_up_max"]) c.Int(n["catch_up_max"], "schedule.catch_up_max", 1, 1000, &s->catch_up_max);
    if (n["overlap"] && c.Scalar(n["overlap"], "schedule.overlap", &v)) {
      if (v == "skip") s->overlap = ScheduleDef::Overlap::kSkip;
      else if (v == "queue") s->overlap = ScheduleDef::Overlap::kQueue;
      else if (v == "allow") s->overlap = ScheduleDef::Overlap::kAllow;
      else c.p->Add(n["overlap"].Mark(), "", "'schedule.overlap' must be skip, queue or allow, got '" + v + "'");
    }
    if (n["grace"]) c.Duration(n["grace"], "schedule.grace", &s->grace);
  }
  if (!s->cron.empty()) {
    if (auto spec = ParseCron(s->cron); !spec.ok()) {
      c.p->Add((n.IsMap() ? n["cron"] : n).Mark(), "", "'schedule.cron': " + spec.status().message());
    }
  }
}

// Every {{ ... }} in run, shell, env values and workdir must parse; params must be
// declared; tasks.ID must be upstream of the task that uses it (its value exists only
// once that task finished).
void CheckTemplates(const WorkflowDef& def, Problems* p) {
  std::set<std::string> params;
  for (const auto& pd : def.params) params.insert(pd.name);
  for (const auto& t : def.tasks) {
    std::set<std::string> upstream;
    std::vector<std::string> todo(t.needs.begin(), t.needs.end());
    while (!todo.empty()) {
      std::string id = todo.back();
      todo.pop_back();
      if (!upstream.insert(id).second) continue;
      if (const TaskDef* d = def.FindTask(id)) todo.insert(todo.end(), d->needs.begin(), d->needs.end());
    }
    if (!t.when_expr.empty()) {
      auto e = ParseExpr(t.when_expr);
      std::vector<ExprValue> refs;
      if (e.ok()) ExprRefs(*e, &refs);
      for (const auto& v : refs) {
        const TemplateRef& r = v.ref;
        const std::string text = "'when' " + r.text;
        if (r.kind == TemplateRef::Kind::kItem) {
          p->Add(YAML::Mark::null_mark(), t.id, "line " + std::to_string(t.line) + ": " + text +
                                                    " is only defined in the commands of a for_each task");
        } else if (r.kind == TemplateRef::Kind::kParam && !params.count(r.name)) {
          p->Add(YAML::Mark::null_mark(), t.id, "line " + std::to_string(t.line) + ": " + text +
                                                    ": no param '" + r.name + "' is declared");
        } else if (r.kind == TemplateRef::Kind::kTaskOutput && !upstream.count(r.name)) {
          p->Add(YAML::Mark::null_mark(), t.id,
                 "line " + std::to_string(t.line) + ": " + text + ": task '" + r.name +
                     "' is not upstream of '" + t.id + "' (add it to needs)");
        }
      }
    }
    const std::string where = "line " + std::to_string(t.line) + ": ";
    if (!t.for_each.lines_of.empty() && !upstream.count(t.for_each.lines_of)) {
      p->Add(YAML::Mark::null_mark(), t.id,
             where + "for_each.lines_of: task '" + t.for_each.lines_of + "' is not upstream of '" +
                 t.id + "' (add it to needs)");
    }
    // The compensation may also read what the task itself published.
    std::set<std::string> comp_upstream = upstream;
    comp_upstream.insert(t.id);
    std::vector<std::pair<std::string, bool>> texts;  // (text, is compensation)
    for (const auto& r : t.run) texts.emplace_back(r, false);
    texts.emplace_back(t.shell, false);
    texts.emplace_back(t.workdir, false);
    for (const auto& [k, v] : t.env) texts.emplace_back(v, false);
    for (const auto& r : t.compensate_run) texts.emplace_back(r, true);
    texts.emplace_back(t.compensate_shell, true);
    texts.emplace_back(t.for_each.expr, false);
    for (const auto& [text, is_comp] : texts) {
      if (!HasTemplate(text)) continue;
      auto pieces = ParseTemplate(text);
      if (!pieces.ok()) {
        p->Add(YAML::Mark::null_mark(), t.id, where + pieces.status().message());
        continue;
      }
      for (const auto& piece : *pieces) {
        if (!piece.is_ref) continue;
        const TemplateRef& r = piece.ref;
        const bool item_ok = t.for_each.present && &text != &texts.back().first;
        if (r.kind == TemplateRef::Kind::kParam && !params.count(r.name)) {
          p->Add(YAML::Mark::null_mark(), t.id, where + r.text + ": no param '" + r.name + "' is declared");
        } else if (r.kind == TemplateRef::Kind::kItem && !item_ok) {
          p->Add(YAML::Mark::null_mark(), t.id,
                 where + r.text + " is only defined in the commands of a for_each task");
        } else if (r.kind == TemplateRef::Kind::kTaskOutput && !def.FindTask(r.name)) {
          p->Add(YAML::Mark::null_mark(), t.id, where + r.text + ": no task '" + r.name + "'");
        } else if (r.kind == TemplateRef::Kind::kTaskOutput &&
                   !(is_comp ? comp_upstream : upstream).count(r.name)) {
          p->Add(YAML::Mark::null_mark(), t.id,
                 where + r.text + ": task '" + r.name + "' is not upstream of '" + t.id +
                     "' (add it to needs)");
        }
      }
    }
  }
}

// Depth-first search for a cycle; returns it as "a -> b -> a", or "" if none.
std::string FindCycle(const WorkflowDef& def) {
  std::map<std::string, const TaskDef*> by_id;
  for (const auto& t : def.tasks) by_id[t.id] = &t;
  std::map<std::string, int> color;  // 0 white, 1 on stack, 2 done
  std::vector<std::string> stack;
  std::string found;
  std::function<bool(const std::string&)> visit = [&](const std::string& id) {
    color[id] = 1;
    stack.push_back(id);
    for (const auto& dep : by_id[id]->needs) {
      if (!by_id.count(dep)) continue;
      if (color[dep] == 1) {
        auto it = std::find(stack.begin(), stack.end(), dep);
        for (; it != stack.end(); ++it) found += *it + " -> ";
        found += dep;
        return true;
      }
      if (color[dep] == 0 && visit(dep)) return true;
    }
    stack.pop_back();
    color[id] = 2;
    return false;
  };
  for (const auto& t : def.tasks) {
    if (color[t.id] == 0 && visit(t.id)) return found;
  }
  return "";
}

}  // namespace

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
    return Status::InvalidArgument("param '" + name + "' must be " + want + ", got '" + value + "'");
  };
  switch (type) {
    case Type::kString:
      break;
    case Type::kInt: {
      size_t i = (!v.empty() && (v[0] == '-' || v[0] == '+')) ? 1 : 0;
      if (i == v.size() || v.size() > 19) return bad("an int");
      for (; i < v.size(); ++i) {
        if (!std::isdigit(static_cast<unsigned char>(v[i]))) return bad("an int");
      }
      break;
    }
    case Type::kNumber: {
      char* end = nullptr;
      errno = 0;
      std::strtod(v.c_str(), &end);
      if (v.empty() || end == nullptr || *end != '\0' || errno != 0 || std::isspace(static_cast<unsigned char>(v[0]))) {
        return bad("a number");
      }
      break;
    }
    case Type::kBool:
      if (v == "true" || v == "yes" || v == "on" || v == "1") v = "true";
      else if (v == "false" || v == "no" || v == "off" || v == "0") v = "false";
      else return bad("a bool (true/false)");
      break;
  }
  if (!choices.empty() && std::find(choices.begin(), choices.end(), v) == choices.end()) {
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
  for (const auto& t : tasks) {
    if (t.id == id) return &t;
  }
  return nullptr;
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

Result<DurationMs> ParseDuration(std::string_view text) {
  if (text.empty()) return Status::InvalidArgument("empty duration");
  DurationMs total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    long long n = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      n = n * 10 + (text[i] - '0');
      if (n > 1'000'000'000LL) return Status::InvalidArgument("duration '" + std::string(text) + "' is too large");
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
  if (total <= 0) return Status::InvalidArgument("duration '" + std::string(text) + "' must be positive");
  return total;
}

std::string HexHash(std::string_view data) {
  unsigned char out[16];
  crypto_generichash(out, sizeof out, reinterpret_cast<const unsigned char*>(data.data()),
                     data.size(), nullptr, 0);
  static const char* kHex = "0123456789abcdef";
  std::string hex;
  for (unsigned char b : out) {
    hex += kHex[b >> 4];
    hex += kHex[b & 15];
  }
  return hex;
}

Result<WorkflowDef> ParseWorkflow(std::string_view yaml, std::string_view filename) {
  Problems p(filename);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    p.Add(e.mark, "", "YAML syntax: " + e.msg);
    return p.ToStatus();
  }
  WorkflowDef def;
  def.source = std::string(yaml);
  def.hash = HexHash(yaml);
  if (!root.IsMap()) {
    p.Add(root.Mark(), "", std::string("a workflow file must be a map, got ") + KindName(root));
    return p.ToStatus();
  }
  try {
    Ctx c{&p, ""};
    c.KnownKeys(root, {"name", "description", "timeout", "params", "tasks", "schedule", "concurrency",
                       "priority"},
                "workflow");
    if (root["schedule"]) {
      def.schedule.emplace();
      ParseSchedule(c, root["schedule"], &*def.schedule);
    }
    if (root["concurrency"]) c.Int(root["concurrency"], "concurrency", 1, 10000, &def.concurrency);
    if (root["priority"]) c.Int(root["priority"], "priority", -1000, 1000, &def.priority);
    if (!root["name"]) {
      p.Add(root.Mark(), "", "workflow has no 'name'");
    } else if (c.Scalar(root["name"], "name", &def.name) && !IsName(def.name, 63)) {
      p.Add(root["name"].Mark(), "",
            "workflow name '" + def.name + "' must be 1-63 letters, digits, '-', '_' or '.'");
    }
    if (root["description"]) {
      std::string ignored;
      c.Scalar(root["description"], "description", &ignored);
    }
    if (root["timeout"]) c.Duration(root["timeout"], "timeout", &def.timeout);
    if (root["params"]) {
      if (!root["params"].IsMap()) {
        p.Add(root["params"].Mark(), "", "'params' must be a map of name: default");
      } else {
        for (const auto& kv : root["params"]) {
          ParamDef pd;
          if (!c.Scalar(kv.first, "param name", &pd.name)) continue;
          if (!IsName(pd.name, 63)) p.Add(kv.first.Mark(), "", "param name '" + pd.name + "' is not valid");
          const YAML::Node& v = kv.second;
          if (v.IsScalar()) {
            pd.default_value = v.Scalar();
          } else if (v.IsMap()) {
            // Typed: {type: string|int|number|bool, default: X, choices: [...], description: ...}
            c.KnownKeys(v, {"type", "default", "choices", "description"}, ("param '" + pd.name + "'").c_str());
            std::string type = "string";
            if (v["type"]) c.Scalar(v["type"], "params." + pd.name + ".type", &type);
            if (type == "string") pd.type = ParamDef::Type::kString;
            else if (type == "int") pd.type = ParamDef::Type::kInt;
            else if (type == "number") pd.type = ParamDef::Type::kNumber;
            else if (type == "bool") pd.type = ParamDef::Type::kBool;
            else p.Add(v["type"].Mark(), "", "param '" + pd.name + "': type must be string, int, number or bool, got '" + type + "'");
            if (v["choices"]) c.StringList(v["choices"], "params." + pd.name + ".choices", &pd.choices);
            if (v["description"]) {
              std::string ignored;
              c.Scalar(v["description"], "params." + pd.name + ".description", &ignored);
            }
            if (v["default"] && !v["default"].IsNull()) {
              std::string d;
              if (c.Scalar(v["default"], "params." + pd.name + ".default", &d)) {
                auto checked = pd.Check(d);
                if (checked.ok()) pd.default_value = *checked;
                else p.Add(v["default"].Mark(), "", "default of " + checked.status().message());
              }
            }
          } else if (!v.IsNull()) {
            p.Add(v.Mark(), "", "param '" + pd.name + "' must be a default value, empty (required) or a map with type");
          }
          def.params.push_back(pd);
        }
      }
    }
    if (!root["tasks"]) {
      p.Add(root.Mark(), "", "workflow has no 'tasks'");
    } else if (!root["tasks"].IsSequence() || root["tasks"].size() == 0) {
      p.Add(root["tasks"].Mark(), "", "'tasks' must be a non-empty list");
    } else {
      std::map<std::string, int> seen;
      for (const auto& tn : root["tasks"]) {
        TaskDef t;
        ParseTask(&p, tn, &t);
        if (t.id.empty()) continue;
        if (seen.count(t.id)) {
          p.Add(tn.Mark(), t.id, "duplicate task id (first defined on line " +
                                     std::to_string(seen[t.id]) + ")");
          continue;
        }
        seen[t.id] = t.line;
        def.tasks.push_back(std::move(t));
      }
      for (const auto& t : def.tasks) {
        for (const auto& dep : t.needs) {
          if (!seen.count(dep)) {
            p.Add(YAML::Mark::null_mark(), t.id,
                  "line " + std::to_string(t.line) + ": needs unknown task '" + dep + "'");
          } else if (dep == t.id) {
            p.Add(YAML::Mark::null_mark(), t.id, "line " + std::to_string(t.line) + ": needs itself");
          }
        }
      }
      if (p.empty()) {
        std::string cycle = FindCycle(def);
        if (!cycle.empty()) p.Add(YAML::Mark::null_mark(), "", "dependency cycle: " + cycle);
      }
      if (p.empty()) CheckTemplates(def, &p);
    }
  } catch (const YAML::Exception& e) {
    p.Add(e.mark, "", std::string("YAML: ") + e.msg);
  }
  if (!p.empty()) return p.ToStatus();
  return def;
}

Result<WorkflowDef> LoadWorkflowFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read workflow file '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (ss.str().size() > (1 << 20)) {
    return Status::InvalidArgument("workflow file '" + path + "' is larger than 1 MiB");
  }
  return ParseWorkflow(ss.str(), path);
}

}  // namespace outpost
