// What a record's templates and `when` expression see, and what its process is given.
//
// Values is the template context of a record: the run's params, the site's name and
// labels, tasks' outputs by id and, for an instance, {{ item }}. An instance sees its own
// record as tasks.ID (ID being its for_each task), and a compensation sees the record it
// undoes, so "{{ tasks.ID.outputs.KEY }}" means the same in a task and in its undo.
//
// Render turns a record into its process: argv from `run` (each element rendered) or
// `/bin/sh -c` with `shell` (`compensate_run` / `compensate_shell` for a compensation),
// then the task's env and workdir. A template naming what does not exist makes Render
// fail, and StartAttempt fails the task without a retry. AddProcessEnv adds what every
// process gets: OUTPOST_PARAM_<NAME> per param, OUTPOST_WORKFLOW, OUTPOST_RUN_ID,
// OUTPOST_TASK_ID, OUTPOST_ATTEMPT, OUTPOST_ITEM (instances and their compensations) and
// OUTPOST_COMPENSATING (the record a compensation undoes), and OUTPOST_OUTPUT_<TASK>_<KEY>
// for each output of each task it needs. In `shell`, each template value is passed as a
// variable OUTPOST_V<n> and referred to, never pasted (RenderShellTemplate).
#include <cctype>

#include "common/workflow/expr.h"
#include "common/workflow/template.h"
#include "common/workflow/workflow.h"
#include "site-agent/engine.h"

namespace outpost {

namespace {



}  // namespace

TemplateContext Engine::Values(const Active& a, size_t i) const {
  // An instance (and the compensation of one) sees its own record as tasks.ID.
  size_t self = i;
  if (a.tasks[i].task_kind() == TaskKind::kCompensation) self = a.index.at(a.tasks[i].parent);
  TemplateContext ctx;
  ctx.params = &a.rec.params;
  ctx.site_name = options_.site_name;
  ctx.site_labels = &options_.site_labels;
  ctx.outputs = [&a, self](const std::string& task) -> const std::map<std::string, std::string>* {
    if (task == a.defs[self]->id) return &a.tasks[self].outputs;
    auto it = a.index.find(task);
    return it == a.index.end() ? nullptr : &a.tasks[it->second].outputs;
  };
  if (a.tasks[self].task_kind() == TaskKind::kInstance) ctx.item = &a.tasks[self].item;
  return ctx;
}

Result<bool> Engine::EvalWhen(const Active& a, size_t i) const {
  OUTPOST_ASSIGN_OR_RETURN(auto e, ParseExpr(a.defs[i]->when_expr));
  ExprContext ctx;
  ctx.values = Values(a, i);
  ctx.task_state = [&a](const std::string& task) -> std::string {
    auto it = a.index.find(task);
    return it == a.index.end() ? "" : TaskStateName(a.tasks[it->second].task_state());
  };
  return EvalExpr(e, ctx);
}

bool Engine::Render(const Active& a, size_t i, StartProcess* sp, std::string* why) const {
  const TaskDef& td = *a.defs[i];
  TemplateContext ctx = Values(a, i);
  auto render = [&](const std::string& in, std::string* out) {
    auto r = RenderTemplate(in, ctx);
    if (!r.ok()) {
      *why = r.status().message();
      return false;
    }
    *out = std::move(r).value();
    return true;
  };
  const bool comp = a.tasks[i].task_kind() == TaskKind::kCompensation;
  const auto& run = comp ? td.compensate_run : td.run;
  const auto& shell = comp ? td.compensate_shell : td.shell;
  if (!run.empty()) {
    sp->argv.resize(run.size());
    for (size_t k = 0; k < run.size(); ++k) {
      if (!render(run[k], &sp->argv[k])) return false;
    }
  } else {
    // Values reach the shell as variables, never as shell text (RenderShellTemplate).
    auto cmd = RenderShellTemplate(shell, ctx, "OUTPOST_V", &sp->env);
    if (!cmd.ok()) {
      *why = cmd.status().message();
      return false;
    }
    sp->argv = {"/bin/sh", "-c", std::move(cmd).value()};
  }
  for (const auto& [k, v] : td.env) {
    std::string value;
    if (!render(v, &value)) return false;
    sp->env.emplace_back(k, std::move(value));
  }
  // Secret params: opened with the site's key only now, only into the environment.
  for (const auto& [name, sealed] : a.rec.sealed) {
    auto value = options_.open_secret ? options_.open_secret(sealed)
                                      : Result<std::string>(Status::FailedPrecondition("no key"));
    if (!value.ok()) {
      *why = "secret param '" + name + "' does not open on this site: " + value.status().message();
      return false;
    }
    sp->env.emplace_back(ParamEnvName(name), std::move(value).value());
  }
  // Artifacts: verified files in the site's cache, by path.
  for (const auto& [name, digest] : a.def->artifacts) {
    auto path = options_.artifact_path ? options_.artifact_path(digest)
                                       : Result<std::string>(Status::FailedPrecondition("no cache"));
    if (!path.ok()) {
      *why = "artifact '" + name + "' (" + digest + ") is not on this site: " +
             path.status().message();
      return false;
    }
    sp->env.emplace_back(ArtifactEnvName(name), std::move(path).value());
  }
  return render(td.workdir, &sp->workdir);
}

// After the task's own env (Render), as the attempt starts.
void Engine::AddProcessEnv(const Active& a, size_t i, StartProcess* sp) const {
  const auto& t = a.tasks[i];
  for (const auto& [k, v] : a.rec.params) {
    if (!a.rec.sealed.count(k)) sp->env.emplace_back(ParamEnvName(k), v);  // secrets: Render
  }
  sp->env.emplace_back("OUTPOST_WORKFLOW", a.rec.workflow);
  sp->env.emplace_back("OUTPOST_RUN_ID", a.rec.id);
  sp->env.emplace_back("OUTPOST_TASK_ID", t.id);
  sp->env.emplace_back("OUTPOST_ATTEMPT", std::to_string(t.attempts));
  if (t.task_kind() != TaskKind::kTask && !t.item.empty()) {
    sp->env.emplace_back("OUTPOST_ITEM", t.item);
  }
  if (t.task_kind() == TaskKind::kCompensation) {
    sp->env.emplace_back("OUTPOST_COMPENSATING", t.parent);
  }
  // The outputs of the tasks it needs, as OUTPOST_OUTPUT_<TASK>_<KEY>.
  for (const auto& dep : a.defs[i]->needs) {
    auto it = a.index.find(dep);
    if (it == a.index.end()) continue;
    for (const auto& [k, v] : a.tasks[it->second].outputs) {
      sp->env.emplace_back(EnvVarName("OUTPOST_OUTPUT_", dep + "_" + k), v);
    }
  }
}

}  // namespace outpost
