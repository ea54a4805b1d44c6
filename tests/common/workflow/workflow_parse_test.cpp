// Parsing workflow files: what a valid file turns into, and one test per kind of unreadable
// value (YAML syntax, unknown keys, wrong kinds, spellings, durations, names), each checking
// the message a user sees.
#include <gtest/gtest.h>

#include "common/workflow/template.h"
#include "common/workflow/workflow.h"
#include "tests/common/workflow/workflow_errors.h"

namespace outpost {
namespace {

using testing::ErrorOf;

TEST(WorkflowParseTest, ParsesAFullDefinition) {
  auto d = ParseWorkflow(R"(
name: full
timeout: 1h30m
params: {region: eu, token: ~}
tasks:
  - id: a
    run: [echo, hi]
    env: {X: "1"}
    workdir: /tmp
    timeout: 500ms
    retry: {max: 3, backoff: 2s, factor: 3, max_backoff: 1m, jitter: true}
  - id: b
    shell: echo b
    needs: a
    when: always
)", "wf.yaml");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->name, "full");
  EXPECT_EQ(d->timeout, 90 * 60 * 1000);
  ASSERT_EQ(d->tasks.size(), 2u);
  const auto& a = d->tasks[0];
  EXPECT_EQ(a.run, std::vector<std::string>({"echo", "hi"}));
  EXPECT_EQ(a.timeout, 500);
  EXPECT_EQ(a.retry.max, 3);
  EXPECT_EQ(a.retry.backoff.initial, 2000);
  EXPECT_EQ(a.retry.backoff.factor, 3.0);
  EXPECT_EQ(a.retry.backoff.max, 60000);
  EXPECT_TRUE(a.retry.backoff.full_jitter);
  EXPECT_EQ(a.env[0], std::make_pair(std::string("X"), std::string("1")));
  EXPECT_EQ(d->tasks[1].needs, std::vector<std::string>({"a"}));
  EXPECT_EQ(d->tasks[1].when, When::kAlways);
  EXPECT_EQ(d->tasks[1].line, 12);
  EXPECT_EQ(d->hash.size(), 32u);
  auto params = d->ResolveParams({{"token", "t"}});
  ASSERT_TRUE(params.ok());
  EXPECT_EQ((*params)["region"], "eu");
}

TEST(WorkflowParseTest, KeepsThePositionsValidationNeeds) {
  auto d = ParseWorkflow(R"(name: p
schedule: {cron: '@daily', timezone: UTC}
params:
  n: {type: bool, default: yes}
tasks:
  - id: a
    shell: echo a
    trigger: all_done
  - {id: b, run: [x], needs: [a], for_each: [1, 2], parallelism: 2}
)", "wf.yaml");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->schedule->cron_pos.line, 2);
  EXPECT_EQ(d->schedule->cron_pos.col, 18);
  EXPECT_EQ(d->schedule->timezone_pos.col, 38);
  EXPECT_EQ(d->params[0].default_pos.line, 4);
  EXPECT_EQ(*d->params[0].default_value, "true");  // normalized
  const TaskDef& a = d->tasks[0];
  EXPECT_EQ(a.line, 6);
  EXPECT_EQ(a.col, 5);
  EXPECT_EQ(a.pos.shell.line, 7);
  EXPECT_EQ(a.pos.shell.col, 12);
  EXPECT_EQ(a.pos.trigger.line, 8);
  EXPECT_EQ(a.pos.run.line, 0);  // not given
  EXPECT_EQ(a.pos.when.line, 0);
  const TaskDef& b = d->tasks[1];
  EXPECT_EQ(b.line, 9);
  EXPECT_EQ(b.pos.run.line, 9);
  EXPECT_EQ(b.pos.for_each.line, 9);
  EXPECT_EQ(b.pos.parallelism.line, 9);
  EXPECT_EQ(b.for_each.parallelism, 2);
}

TEST(WorkflowParseTest, SameSourceSameHash) {
  const char* y = "name: w\ntasks:\n  - {id: t, run: [x]}\n";
  EXPECT_EQ(ParseWorkflow(y, "a")->hash, ParseWorkflow(y, "b")->hash);
  EXPECT_NE(ParseWorkflow(y, "a")->hash,
            ParseWorkflow("name: w\ntasks:\n  - {id: t, run: [y]}\n", "a")->hash);
}

TEST(WorkflowParseTest, YamlSyntaxErrorNamesFileAndLine) {
  EXPECT_EQ(ErrorOf("name: w\ntasks: [\n  {id: a\n"),
            "wf.yaml:4:1: YAML syntax: end of map flow not found");
}

TEST(WorkflowParseTest, UnknownKeyIsNamedWithItsLine) {
  std::string e = ErrorOf("name: w\ntasks:\n  - id: a\n    run: [x]\n    retires: 3\n");
  EXPECT_NE(e.find("wf.yaml:5:5: task 'a': unknown key 'retires' in task"), std::string::npos) << e;
  e = ErrorOf("name: w\nschedul: x\ntasks:\n  - {id: a, run: [x]}\n");
  EXPECT_NE(e.find("wf.yaml:2:1: unknown key 'schedul' in workflow"), std::string::npos) << e;
}

TEST(WorkflowParseTest, WrongTypeIsReported) {
  std::string e = ErrorOf("name: w\ntasks:\n  - id: a\n    run: [x]\n    retry: {max: lots}\n");
  EXPECT_NE(
      e.find("wf.yaml:5:18: task 'a': 'retry.max' must be an integer from 0 to 1000, got 'lots'"),
      std::string::npos)
      << e;
  e = ErrorOf("name: w\ntasks:\n  - id: a\n    run: echo hi\n");
  EXPECT_NE(e.find("'run' must be a list (argv); use 'shell' for a command line"),
            std::string::npos)
      << e;
  e = ErrorOf("name: w\ntasks:\n  - id: a\n    shell: [x]\n");
  EXPECT_NE(e.find("task 'a': 'shell' must be a string, got a list"), std::string::npos) << e;
  e = ErrorOf("name: w\ntasks: {a: 1}\n");
  EXPECT_NE(e.find("'tasks' must be a non-empty list"), std::string::npos) << e;
}

TEST(WorkflowParseTest, BadDurationIsExplained) {
  std::string e = ErrorOf("name: w\ntasks:\n  - {id: a, run: [x], timeout: 10 minutes}\n");
  EXPECT_NE(e.find("wf.yaml:3:32: task 'a': 'timeout': bad duration '10 minutes'"),
            std::string::npos)
      << e;
  e = ErrorOf("name: w\ntimeout: 5x\ntasks:\n  - {id: a, run: [x]}\n");
  EXPECT_NE(e.find("unit must be ms, s, m, h or d"), std::string::npos) << e;
  e = ErrorOf("name: w\ntasks:\n  - {id: a, run: [x], timeout: 0s}\n");
  EXPECT_NE(e.find("must be positive"), std::string::npos) << e;
}

TEST(WorkflowParseTest, MissingPiecesAreNamed) {
  EXPECT_NE(ErrorOf("tasks:\n  - {id: a, run: [x]}\n").find("workflow has no 'name'"),
            std::string::npos);
  EXPECT_NE(ErrorOf("name: w\n").find("workflow has no 'tasks'"), std::string::npos);
  EXPECT_NE(ErrorOf("name: w\ntasks:\n  - {run: [x]}\n").find("task has no 'id'"),
            std::string::npos);
  EXPECT_NE(ErrorOf("- a\n- b\n").find("a workflow file must be a map, got a list"),
            std::string::npos);
}

TEST(WorkflowParseTest, BadWhenAndNamesAreRejected) {
  std::string e = ErrorOf("name: w\ntasks:\n  - {id: a, run: [x], when: sometimes}\n");
  EXPECT_NE(
      e.find("'when' must be success, failure, always or a condition; condition \"sometimes\": "
             "unknown value 'sometimes'"),
      std::string::npos)
      << e;
  e = ErrorOf("name: 'bad name'\ntasks:\n  - {id: 'a b', run: [x]}\n");
  EXPECT_NE(e.find("workflow name 'bad name' must be"), std::string::npos) << e;
  EXPECT_NE(e.find("task id 'a b' must be"), std::string::npos) << e;
}

TEST(WorkflowParseTest, MissingFileIsNotFound) {
  auto d = LoadWorkflowFile("/nonexistent/wf.yaml");
  EXPECT_EQ(d.status().code(), Code::kNotFound);
  EXPECT_NE(d.status().message().find("/nonexistent/wf.yaml"), std::string::npos);
}

TEST(DurationTest, ParsesUnitsAndSums) {
  EXPECT_EQ(*ParseDuration("250ms"), 250);
  EXPECT_EQ(*ParseDuration("30s"), 30000);
  EXPECT_EQ(*ParseDuration("1h30m"), 5400000);
  EXPECT_EQ(*ParseDuration("1d"), 86400000);
  EXPECT_FALSE(ParseDuration("").ok());
  EXPECT_FALSE(ParseDuration("10").ok());
  EXPECT_FALSE(ParseDuration("-5s").ok());
  EXPECT_FALSE(ParseDuration("99999999999s").ok());
}

TEST(WorkflowParseTest, BadTriggerIsNamed) {
  std::string e = ErrorOf(R"(
name: t
tasks:
  - id: a
    run: [a]
    trigger: most_success
)");
  EXPECT_NE(
      e.find("'trigger' must be all_success, all_done, one_success, one_failed or none_failed"),
      std::string::npos)
      << e;
}

TEST(WorkflowParseTest, WhenConditionsAreParsed) {
  auto ok = ParseWorkflow(R"(
name: t
params: {mode: full}
tasks:
  - id: check
    run: [check]
  - id: fix
    run: [fix]
    needs: [check]
    when: tasks.check.outputs.healthy == 'no' && (params.mode != 'dry' || not site.name == "x")
)", "wf.yaml");
  EXPECT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(
      ok->tasks[1].when_expr,
      "tasks.check.outputs.healthy == 'no' && (params.mode != 'dry' || not site.name == \"x\")");
  std::string e = ErrorOf(R"(
name: t
tasks:
  - id: a
    run: [a]
    when: tasks.a.outputs.x = 'y'
)");
  EXPECT_NE(e.find("'when' must be success, failure, always or a condition"), std::string::npos)
      << e;
  e = ErrorOf(R"(
name: t
tasks:
  - id: a
    run: [a]
    when: params.nope == '1' or (site.name == 'x'
)");
  EXPECT_NE(e.find("missing ')'"), std::string::npos) << e;
}

TEST(WorkflowParseTest, ApprovalTasksAreRead) {
  std::string e = ErrorOf("name: w\ntasks:\n  - {id: gate, type: manual}\n");
  EXPECT_NE(e.find("'type' must be command or approval"), std::string::npos) << e;
  auto ok =
      ParseWorkflow("name: w\ntasks:\n  - {id: gate, type: approval, timeout: 1h}\n", "w.yaml");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_TRUE(ok->tasks[0].approval);
}

}  // namespace
}  // namespace outpost

namespace outpost {
namespace {

using testing::ErrorOf;

// A few hundred bytes of aliases of aliases expand to a billion nodes: refused at once,
// before anything walks them (an outsider's 9-level file took 29 s, 10 levels did not end).
TEST(WorkflowParseTest, AliasesThatExpandWithoutBoundAreRefused) {
  std::string y = "name: lol\na0: &a0 [x,x,x,x,x,x,x,x,x,x]\n";
  for (int i = 1; i < 12; ++i) {
    y += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) y += (k ? ",*a" : "*a") + std::to_string(i - 1);
    y += "]\n";
  }
  y += "tasks:\n  - {id: t, run: [\"true\"]}\n";
  const std::string e = ErrorOf(y);
  EXPECT_NE(e.find("expands to more than 1000000 nodes"), std::string::npos) << e;
  EXPECT_NE(e.find("wf.yaml:1:1"), std::string::npos) << e;
  // Aliases that stay small are YAML like any other.
  auto ok = ParseWorkflow("name: w\ntasks:\n  - {id: a, run: &r [x], retry: &m {max: 2}}\n"
                          "  - {id: b, run: *r, retry: *m}\n",
                          "wf.yaml");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->tasks.size(), 2u);
}

TEST(WorkflowParseTest, ASecondDocumentIsRefusedNotIgnored) {
  const std::string e = ErrorOf("name: w\ntasks:\n  - {id: a, run: [x]}\n---\nname: v\ntasks: []\n");
  EXPECT_NE(e.find("a workflow file holds one YAML document"), std::string::npos) << e;
  EXPECT_NE(e.find("wf.yaml:5:1:"), std::string::npos) << e;  // its first line
}

}  // namespace
}  // namespace outpost

namespace outpost {
namespace {

using testing::ErrorOf;

// Tasks read params, artifacts and upstream outputs from variables: names that would make
// the same variable are refused, not merged.
TEST(WorkflowParseTest, NamesThatWouldShareAVariableAreRefused) {
  std::string e = ErrorOf("name: w\nparams:\n  a-b: 1\n  a_b: 2\ntasks:\n  - {id: t, run: [x]}\n");
  EXPECT_NE(e.find("params 'a-b' and 'a_b' would both be $OUTPOST_PARAM_A_B"), std::string::npos) << e;
  EXPECT_NE(e.find("wf.yaml:4:3"), std::string::npos) << e;
  e = ErrorOf("name: w\nartifacts:\n  fw.bin: " + std::string(64, 'a') + "\n  fw-bin: " +
              std::string(64, 'b') + "\ntasks:\n  - {id: t, run: [x]}\n");
  EXPECT_NE(e.find("would both be $OUTPOST_ARTIFACT_FW_BIN"), std::string::npos) << e;
  auto out = ParseOutputs("a-b=1\nx=2\na.b=3\n");
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("output line 3: key 'a.b' and 'a-b' (line 1)"), std::string::npos)
      << out.status().message();
  EXPECT_TRUE(ParseOutputs("a=1\na=2\n").ok());  // the same key again: the last value
}

}  // namespace
}  // namespace outpost

namespace outpost {
namespace {

using testing::ErrorOf;

TEST(WorkflowParseTest, ChoicesMustBeValuesOfTheType) {
  std::string e = ErrorOf("name: w\nparams:\n  n: {type: int, choices: [1, 2, x]}\ntasks:\n  - {id: t, run: [x]}\n");
  EXPECT_NE(e.find("choice of param 'n' must be an int, got 'x'"), std::string::npos) << e;
  e = ErrorOf("name: w\nparams:\n  n: {choices: []}\ntasks:\n  - {id: t, run: [x]}\n");
  EXPECT_NE(e.find("choices must name at least one value"), std::string::npos) << e;
}

TEST(WorkflowParseTest, AStateComparedWithSomethingThatIsNoStateIsRefused) {
  const std::string base = "name: w\ntasks:\n  - {id: c, run: [x]}\n  - id: d\n    run: [x]\n    needs: [c]\n";
  const std::string e = ErrorOf(base + "    when: \"tasks.c.state == 'succeded'\"\n");
  EXPECT_NE(e.find("'succeded', which is not a task state"), std::string::npos) << e;
  EXPECT_TRUE(ParseWorkflow(base + "    when: \"tasks.c.state != 'skipped' && 'failed' != tasks.c.state\"\n",
                            "wf.yaml")
                  .ok());
}

}  // namespace
}  // namespace outpost

namespace outpost {
namespace {

using testing::ErrorOf;

TEST(WorkflowParseTest, TaskIdsThatWouldShareAnOutputVariableAreRefused) {
  const std::string e = ErrorOf("name: w\ntasks:\n  - {id: a-b, run: [x]}\n  - {id: a_b, run: [x]}\n");
  EXPECT_NE(e.find("task ids 'a-b' (line 3) and 'a_b' would both be OUTPOST_OUTPUT_A_B_*"),
            std::string::npos)
      << e;
}

// Bool choices are kept as true/false, as given values are; numbers compare by value.
TEST(WorkflowParseTest, ChoicesCompareAsTheTypeDoes) {
  auto d = ParseWorkflow("name: w\nparams:\n  p: {type: bool, choices: [yes], default: 'on'}\n"
                         "  n: {type: number, choices: ['1.0', '2.5']}\ntasks:\n  - {id: t, run: [x]}\n",
                         "wf.yaml");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  auto ok = d->ResolveParams({{"p", "yes"}, {"n", "1"}});
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->at("p"), "true");
  EXPECT_FALSE(d->ResolveParams({{"p", "no"}, {"n", "1"}}).ok());
  EXPECT_FALSE(d->ResolveParams({{"p", "yes"}, {"n", "3"}}).ok());
}

}  // namespace
}  // namespace outpost
