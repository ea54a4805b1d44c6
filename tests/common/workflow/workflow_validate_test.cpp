// Validating workflow definitions: one test per rule a parsed definition can break (keys
// that go together, unique ids, dependencies, cycles, templates, conditions), each checking
// the message a user sees, and the same rules over definitions built in code.
#include <gtest/gtest.h>

#include <algorithm>

#include "common/workflow/workflow.h"
#include "tests/common/workflow/workflow_errors.h"
#include "common/workflow/workflow_internal.h"

namespace outpost {
namespace {

using testing::ErrorOf;

// Validates a definition built in code; "" when it breaks no rule.
std::string Validate(const WorkflowDef& def) {
  workflow_internal::Problems problems("wf.yaml");
  workflow_internal::ValidateWorkflow(def, &problems);
  return problems.empty() ? "" : problems.ToStatus().message();
}

TaskDef Task(const std::string& id, std::vector<std::string> needs = {}) {
  TaskDef t;
  t.id = id;
  t.run = {"echo", id};
  t.needs = std::move(needs);
  return t;
}

ParamDef Param(const std::string& name, const std::string& default_value,
               ParamDef::Type type = ParamDef::Type::kString) {
  ParamDef p;
  p.name = name;
  p.default_value = default_value;
  p.type = type;
  return p;
}

TEST(WorkflowValidateTest, RunOrShellIsRequired) {
  EXPECT_NE(ErrorOf("name: w\ntasks:\n  - {id: a}\n").find("needs exactly one of 'run'"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf("name: w\ntasks:\n  - {id: a, run: [x], shell: y}\n").find("needs exactly one of"),
      std::string::npos);
}

TEST(WorkflowValidateTest, DuplicateTaskIdPointsAtBothLines) {
  std::string e = ErrorOf("name: w\ntasks:\n  - {id: a, run: [x]}\n  - {id: a, run: [y]}\n");
  EXPECT_NE(e.find("wf.yaml:4:5: task 'a': duplicate task id (first defined on line 3)"),
            std::string::npos)
      << e;
}

TEST(WorkflowValidateTest, UnknownDependencyIsNamed) {
  std::string e = ErrorOf("name: w\ntasks:\n  - {id: a, run: [x], needs: [bild]}\n");
  // FILE:LINE:COL of the need itself.
  EXPECT_NE(e.find("wf.yaml:3:31: task 'a': needs unknown task 'bild'"), std::string::npos) << e;
}

TEST(WorkflowValidateTest, CycleIsPrinted) {
  std::string e = ErrorOf(R"(name: w
tasks:
  - {id: a, run: [x], needs: [c]}
  - {id: b, run: [x], needs: [a]}
  - {id: c, run: [x], needs: [b]}
  - {id: d, run: [x]}
)");
  // At the task where it starts, each edge with the line it is written on.
  EXPECT_NE(e.find("wf.yaml:3:5: dependency cycle: a -> c (line 3) -> b (line 5) -> a (line 4)"),
            std::string::npos)
      << e;
  e = ErrorOf("name: w\ntasks:\n  - {id: a, run: [x], needs: [a]}\n");
  EXPECT_NE(e.find("wf.yaml:3:31: task 'a': needs itself"), std::string::npos) << e;
}

TEST(WorkflowValidateTest, ReportsEveryProblemAtOnce) {
  std::string e =
      ErrorOf("name: w\ntasks:\n  - {id: a, run: [x], timeout: soon}\n  - {id: b, runn: [x]}\n");
  EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 2) << e;  // three lines
  // What the parser could not read comes first, then the rules the definition breaks.
  EXPECT_LT(e.find("unknown key 'runn'"), e.find("needs exactly one of")) << e;
}

TEST(WorkflowValidateTest, TemplatesAreCheckedAtValidation) {
  auto ok = ParseWorkflow(R"(
name: t
params: {version: "1.0"}
tasks:
  - id: build
    run: [echo, "{{ params.version }} on {{ site.name }} in {{ site.labels.zone }}"]
  - id: ship
    shell: echo {{ tasks.build.outputs.artifact }}
    env: {V: "{{params.version}}"}
    needs: [build]
  - id: tell
    run: [echo, "{{ tasks.build.outputs.artifact }}"]
    needs: [ship]
)", "wf.yaml");
  EXPECT_TRUE(ok.ok()) << ok.status().ToString();

  std::string e = ErrorOf(R"(
name: t
tasks:
  - id: a
    run: [echo, "{{ params.missing }}"]
)");
  // FILE:LINE:COL of the key's value the template is in.
  EXPECT_NE(e.find("wf.yaml:5:10: task 'a': {{ params.missing }}: no param 'missing' is declared"),
            std::string::npos)
      << e;
  e = ErrorOf(R"(
name: t
tasks:
  - id: a
    run: [echo, hi]
  - id: b
    run: [echo, "{{ tasks.a.outputs.x }}"]
)");
  EXPECT_NE(e.find("task 'a' is not upstream of 'b' (add it to needs)"), std::string::npos) << e;
  e = ErrorOf(R"(
name: t
tasks:
  - id: b
    run: [echo, "{{ tasks.nope.outputs.x }}"]
)");
  EXPECT_NE(e.find("no task 'nope'"), std::string::npos) << e;
  e = ErrorOf(R"(
name: t
tasks:
  - id: b
    shell: echo {{ secrets.token }}
)");
  EXPECT_NE(e.find("unknown reference {{ secrets.token }}"), std::string::npos) << e;
  e = ErrorOf(R"(
name: t
tasks:
  - id: b
    shell: echo {{ params.x
)");
  EXPECT_NE(e.find("without a closing"), std::string::npos) << e;
}

TEST(WorkflowValidateTest, WhenAndTriggerExcludeEachOther) {
  std::string e = ErrorOf(R"(
name: t
tasks:
  - id: a
    run: [a]
    trigger: all_done
    when: always
)");
  EXPECT_NE(e.find("use either 'when' or 'trigger'"), std::string::npos) << e;
}

TEST(WorkflowValidateTest, WhenConditionsReadOnlyUpstreamTasks) {
  std::string e = ErrorOf(R"(
name: t
tasks:
  - id: a
    run: [a]
  - id: b
    run: [b]
    when: tasks.a.state == 'failed'
)");
  EXPECT_NE(e.find("task 'a' is not upstream of 'b'"), std::string::npos) << e;
}

TEST(WorkflowValidateTest, ApprovalTasksRunNoProcess) {
  std::string e = ErrorOf("name: w\ntasks:\n  - {id: gate, type: approval, run: [x]}\n");
  EXPECT_NE(e.find("an approval task runs no process"), std::string::npos) << e;
}

TEST(WorkflowValidateTest, ValidatesADefinitionBuiltInCode) {
  WorkflowDef def;
  def.name = "built";
  def.params.push_back(Param("v", "1"));
  def.tasks = {Task("a"), Task("b", {"a"})};
  def.tasks[1].run.push_back("{{ tasks.a.outputs.x }} {{ params.v }}");
  EXPECT_EQ(Validate(def), "");

  def.tasks[0].needs = {"b"};
  EXPECT_EQ(Validate(def), "wf.yaml: dependency cycle: a -> b (line 0) -> a (line 0)");
  def.tasks[0].needs = {"nope"};
  EXPECT_EQ(Validate(def), "wf.yaml: task 'a': needs unknown task 'nope'");
}

TEST(WorkflowValidateTest, RulesOverStructsPointAtTheirPositionsWhenKnown) {
  WorkflowDef def;
  def.name = "w";
  def.tasks = {Task("a")};
  def.tasks[0].shell = "echo too";
  EXPECT_EQ(Validate(def),
            "wf.yaml: task 'a': needs exactly one of 'run' (argv list) or 'shell' (command line)");
  def.tasks[0].line = 3;
  def.tasks[0].col = 5;
  EXPECT_EQ(Validate(def),
            "wf.yaml:3:5: task 'a': needs exactly one of 'run' (argv list) or "
            "'shell' (command line)");

  def.tasks[0].shell.clear();
  def.tasks[0].approval = true;
  def.tasks[0].for_each.items = {"x"};
  def.tasks[0].for_each.present = true;
  def.tasks[0].pos.for_each = {4, 15};
  const std::string e = Validate(def);
  EXPECT_NE(e.find("wf.yaml:3:5: task 'a': an approval task runs no process"), std::string::npos)
      << e;
  EXPECT_NE(e.find("wf.yaml:4:15: task 'a': an approval task cannot fan out"), std::string::npos)
      << e;
}

TEST(WorkflowValidateTest, SchedulesAndParamDefaultsOverStructs) {
  WorkflowDef def;
  def.name = "w";
  def.tasks = {Task("a")};
  def.schedule.emplace();
  def.schedule->cron = "61 * * * *";
  def.schedule->cron_pos = {2, 11};
  def.schedule->timezone = "../etc";
  def.params.push_back(Param("n", "x", ParamDef::Type::kInt));
  const std::string e = Validate(def);
  EXPECT_NE(e.find("wf.yaml: 'schedule.timezone' '../etc' is not a zone name\n"
                   "wf.yaml:2:11: 'schedule.cron': "),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("\nwf.yaml: default of param 'n' must be an int, got 'x'"), std::string::npos)
      << e;
}

TEST(WorkflowValidateTest, CyclesAndTemplatesWaitForACleanGraph) {
  WorkflowDef def;
  def.name = "w";
  def.tasks = {Task("a", {"b"}), Task("b", {"a"}), Task("b")};
  def.tasks[0].run.push_back("{{ params.undeclared }}");
  // The duplicate makes the graph unreliable: no cycle or template messages on top.
  EXPECT_EQ(Validate(def), "wf.yaml: task 'b': duplicate task id (first defined on line 0)");
}

}  // namespace
}  // namespace outpost

namespace outpost {
namespace {

TEST(WorkflowValidateTest, DuplicateKeysAreRefusedWithBothPositions) {
  std::string e = ErrorOf("name: w\ntasks:\n  - id: a\n    run: [x]\n    run: [y]\n");
  EXPECT_NE(e.find("wf.yaml:5:5: duplicate key 'run' (first at line 4, column 5)"),
            std::string::npos)
      << e;
  e = ErrorOf("name: w\nname: v\ntasks:\n  - {id: a, run: [x]}\n");
  EXPECT_NE(e.find("duplicate key 'name'"), std::string::npos) << e;
}

TEST(WorkflowValidateTest, ParamsMeanWhatAUserMeans) {
  for (const char* bad : {"nan", "inf", "-inf", "+3", "1e999", "0x10", " 1", ".", ".5e", "1e", "007"}) {
    std::string y = std::string("name: w\nparams:\n  n: {type: number, default: \"") + bad +
                    "\"}\ntasks:\n  - {id: a, run: [x]}\n";
    auto d = ParseWorkflow(y, "wf.yaml");
    EXPECT_FALSE(d.ok()) << "number '" << bad << "' was accepted";
  }
  for (const char* bad : {"+3", "007", "3.0", "nan", "9999999999999999999"}) {
    std::string y = std::string("name: w\nparams:\n  n: {type: int, default: \"") + bad +
                    "\"}\ntasks:\n  - {id: a, run: [x]}\n";
    EXPECT_FALSE(ParseWorkflow(y, "wf.yaml").ok()) << "int '" << bad << "' was accepted";
  }
  for (const char* good : {"-2.5", "3", "1e3", "0.25"}) {
    std::string y = std::string("name: w\nparams:\n  n: {type: number, default: \"") + good +
                    "\"}\ntasks:\n  - {id: a, run: [x]}\n";
    EXPECT_TRUE(ParseWorkflow(y, "wf.yaml").ok()) << "number '" << good << "' was refused";
  }
}

TEST(WorkflowValidateTest, LongChainsAndFanInsValidateWithoutDeepRecursion) {
  std::string y = "name: chain\ntasks:\n";
  for (int i = 0; i < 20000; ++i) {
    y += "  - {id: t" + std::to_string(i) + ", run: [x]" +
         (i ? ", needs: [t" + std::to_string(i - 1) + "]" : std::string()) + "}\n";
  }
  auto d = ParseWorkflow(y, "wf.yaml");
  ASSERT_TRUE(d.ok()) << d.status().ToString().substr(0, 300);
  EXPECT_EQ(d->tasks.size(), 20000u);
  EXPECT_EQ(d->FindTask("t19999")->needs[0], "t19998");
}

}  // namespace
}  // namespace outpost
