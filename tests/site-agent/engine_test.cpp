// Engine tests: plain values in, plain values out, time from a ManualClock.
#include "site-agent/engine.h"

#include <gtest/gtest.h>

#include "tests/site-agent/test_defs.h"
#include <signal.h>

#include <algorithm>

#include "common/workflow/template.h"

namespace outpost {
namespace {

using testing_defs::Def;

class EngineTest : public ::testing::Test {
 protected:
  EngineTest() : rng_(42), engine_(clock_, &rng_, EngineOptions{4, 5000, "test-site", {{"zone", "b"}}, {}, {}}) {}

  void Start(const std::string& yaml, const std::string& id = "r1",
             std::map<std::string, std::string> params = {}) {
    fx_ = Effects();
    ASSERT_TRUE(engine_.StartRun(Def(yaml), id, params, &fx_).ok());
    Absorb();
  }
  // Records started processes as running.
  void Absorb() {
    for (auto& s : fx_.starts) running_.push_back(s);
    for (auto& r : fx_.finished_runs) finished_.push_back(r);
  }
  std::vector<std::string> RunningTasks() const {
    std::vector<std::string> out;
    for (const auto& s : running_) out.push_back(s.key.task);
    std::sort(out.begin(), out.end());
    return out;
  }
  void Exit(const std::string& task, int code, int sig = 0) {
    auto it = std::find_if(running_.begin(), running_.end(),
                           [&](const StartProcess& s) { return s.key.task == task; });
    ASSERT_NE(it, running_.end()) << "task " << task << " is not running";
    AttemptKey key = it->key;
    running_.erase(it);
    fx_ = Effects();
    ExitInfo ex;
    ex.exit_code = sig ? -1 : code;
    ex.signal = sig;
    engine_.OnExit(key, ex, &fx_);
    Absorb();
  }
  void AdvanceTo(TimeMs t) {
    clock_.Set(t);
    fx_ = Effects();
    engine_.Tick(&fx_);
    Absorb();
  }
  std::string TaskState(const std::string& task, const std::string& run = "r1") {
    const TaskRecord* t = engine_.FindTask(run, task);
    return t ? TaskStateName(t->task_state()) : "gone";
  }
  std::string RunStateOf(const std::string& run = "r1") {
    const RunRecord* r = engine_.FindRun(run);
    return r ? RunStateName(r->run_state()) : "gone";
  }
  bool HasEvent(EventType t, const std::string& task = "") const {
    for (const auto& e : fx_.events) {
      if (e.type == static_cast<uint8_t>(t) && (task.empty() || e.task == task)) return true;
    }
    return false;
  }

  ManualClock clock_;
  Rng rng_;
  Engine engine_;
  Effects fx_;
  std::vector<StartProcess> running_;
  std::vector<std::string> finished_;
};

constexpr char kDiamond[] = R"(
name: diamond
tasks:
  - {id: a, run: [x]}
  - {id: b, run: [x], needs: [a]}
  - {id: c, run: [x], needs: [a]}
  - {id: d, run: [x], needs: [b, c]}
)";

TEST_F(EngineTest, RunsTheDagInDependencyOrder) {
  Start(kDiamond);
  EXPECT_EQ(RunningTasks(), std::vector<std::string>({"a"}));
  EXPECT_TRUE(HasEvent(EventType::kRunCreated));
  Exit("a", 0);
  EXPECT_EQ(RunningTasks(), std::vector<std::string>({"b", "c"}));
  Exit("b", 0);
  EXPECT_EQ(RunningTasks(), std::vector<std::string>({"c"}));  // d still needs c
  Exit("c", 0);
  EXPECT_EQ(RunningTasks(), std::vector<std::string>({"d"}));
  Exit("d", 0);
  EXPECT_EQ(RunStateOf(), "succeeded");
  EXPECT_EQ(finished_, std::vector<std::string>({"r1"}));
  EXPECT_TRUE(HasEvent(EventType::kRunFinished));
}

TEST_F(EngineTest, AttemptsCarryIdentityInTheirEnvironment) {
  Start("name: w\nparams: {region: eu}\ntasks:\n  - {id: t, shell: 'echo hi', env: {A: b}}\n");
  ASSERT_EQ(running_.size(), 1u);
  const auto& sp = running_[0];
  EXPECT_EQ(sp.argv, std::vector<std::string>({"/bin/sh", "-c", "echo hi"}));
  auto has = [&](const std::string& k, const std::string& v) {
    return std::find(sp.env.begin(), sp.env.end(), std::make_pair(k, v)) != sp.env.end();
  };
  EXPECT_TRUE(has("A", "b"));
  EXPECT_TRUE(has("OUTPOST_RUN_ID", "r1"));
  EXPECT_TRUE(has("OUTPOST_TASK_ID", "t"));
  EXPECT_TRUE(has("OUTPOST_ATTEMPT", "1"));
  EXPECT_TRUE(has("OUTPOST_PARAM_REGION", "eu"));
}

TEST_F(EngineTest, NeverRunsMoreThanMaxParallel) {
  std::string yaml = "name: wide\ntasks:\n";
  for (int i = 0; i < 10; ++i) yaml += "  - {id: t" + std::to_string(i) + ", run: [x]}\n";
  Start(yaml);
  EXPECT_EQ(running_.size(), 4u);
  EXPECT_EQ(engine_.running_attempts(), 4);
  int done = 0;
  while (!running_.empty()) {
    Exit(running_.front().key.task, 0);
    ++done;
    EXPECT_LE(running_.size(), 4u);
  }
  EXPECT_EQ(done, 10);
  EXPECT_EQ(RunStateOf(), "succeeded");
}

TEST_F(EngineTest, ConcurrencyLimitIsSharedAcrossRuns) {
  std::string yaml = "name: w\ntasks:\n  - {id: a, run: [x]}\n  - {id: b, run: [x]}\n  - {id: c, run: [x]}\n";
  Start(yaml, "r1");
  Start(yaml, "r2");
  EXPECT_EQ(running_.size(), 4u);
  Exit("a", 0);
  EXPECT_EQ(running_.size(), 4u);
}

TEST_F(EngineTest, RetryTimingFollowsTheBackoffExactly) {
  const TimeMs t0 = clock_.Now();
  Start(R"(
name: r
tasks:
  - id: t
    run: [x]
    retry: {max: 3, backoff: 1s, factor: 2, max_backoff: 3s}
)");
  Exit("t", 1);
  EXPECT_EQ(TaskState("t"), "pending");
  EXPECT_EQ(engine_.FindTask("r1", "t")->retry_at, t0 + 1000);
  EXPECT_EQ(engine_.NextDeadline(), t0 + 1000);
  AdvanceTo(t0 + 999);
  EXPECT_TRUE(running_.empty());
  AdvanceTo(t0 + 1000);
  ASSERT_EQ(running_.size(), 1u);
  EXPECT_EQ(running_[0].key.attempt, 2);
  Exit("t", 1);
  EXPECT_EQ(engine_.FindTask("r1", "t")->retry_at, t0 + 1000 + 2000);
  AdvanceTo(t0 + 3000);
  Exit("t", 1);
  EXPECT_EQ(engine_.FindTask("r1", "t")->retry_at, t0 + 3000 + 3000);  // capped at 3s
  AdvanceTo(t0 + 6000);
  EXPECT_EQ(running_[0].key.attempt, 4);
  Exit("t", 1);  // 1 + 3 retries used up
  EXPECT_EQ(TaskState("t"), "failed");
  EXPECT_EQ(RunStateOf(), "failed");
  EXPECT_EQ(engine_.FindTask("r1", "t")->attempts, 4);
}

TEST_F(EngineTest, TimeoutSendsTermThenKillAfterGrace) {
  const TimeMs t0 = clock_.Now();
  Start("name: w\ntasks:\n  - {id: t, run: [sleep, '100'], timeout: 10s}\n");
  EXPECT_EQ(engine_.NextDeadline(), t0 + 10000);
  AdvanceTo(t0 + 10000);
  ASSERT_EQ(fx_.kills.size(), 1u);
  EXPECT_EQ(fx_.kills[0].signal, SIGTERM);
  EXPECT_EQ(fx_.kills[0].key.task, "t");
  EXPECT_TRUE(HasEvent(EventType::kTimeoutKill, "t"));
  AdvanceTo(t0 + 14999);
  EXPECT_TRUE(fx_.kills.empty());
  AdvanceTo(t0 + 15000);
  ASSERT_EQ(fx_.kills.size(), 1u);
  EXPECT_EQ(fx_.kills[0].signal, SIGKILL);
  Exit("t", 0, SIGKILL);
  EXPECT_EQ(TaskState("t"), "failed");
  EXPECT_NE(engine_.FindTask("r1", "t")->message.find("timed out"), std::string::npos);
}

TEST_F(EngineTest, TimedOutAttemptThatExitsZeroStillFails) {
  const TimeMs t0 = clock_.Now();
  Start("name: w\ntasks:\n  - {id: t, run: [x], timeout: 1s}\n");
  AdvanceTo(t0 + 1000);
  Exit("t", 0);  // trapped TERM and exited 0
  EXPECT_EQ(TaskState("t"), "failed");
}

TEST_F(EngineTest, WhenConditionsDecideWhatRunsAfterAFailure) {
  Start(R"(
name: w
tasks:
  - {id: build, run: [x]}
  - {id: deploy, run: [x], needs: [build]}
  - {id: notify, run: [x], needs: [deploy]}
  - {id: alert, run: [x], needs: [build], when: failure}
  - {id: cleanup, run: [x], needs: [build], when: always}
)");
  Exit("build", 2);
  EXPECT_EQ(TaskState("deploy"), "skipped");
  EXPECT_EQ(TaskState("notify"), "skipped");  // skips propagate
  EXPECT_EQ(RunningTasks(), std::vector<std::string>({"alert", "cleanup"}));
  Exit("alert", 0);
  Exit("cleanup", 0);
  EXPECT_EQ(RunStateOf(), "failed");
}

TEST_F(EngineTest, FailureHandlerIsSkippedWhenAllSucceeded) {
  Start("name: w\ntasks:\n  - {id: a, run: [x]}\n  - {id: h, run: [x], needs: [a], when: failure}\n");
  Exit("a", 0);
  EXPECT_EQ(TaskState("h"), "skipped");
  EXPECT_EQ(RunStateOf(), "succeeded");
}

TEST_F(EngineTest, CancelKillsRunningAndCancelsPending) {
  const TimeMs t0 = clock_.Now();
  Start(kDiamond);
  Exit("a", 0);
  fx_ = Effects();
  ASSERT_TRUE(engine_.Cancel("r1", "operator", &fx_).ok());
  EXPECT_TRUE(HasEvent(EventType::kCancelRequested));
  EXPECT_EQ(fx_.kills.size(), 2u);  // b and c
  EXPECT_EQ(TaskState("d"), "cancelled");
  EXPECT_EQ(RunStateOf(), "running");  // waits for b and c to die
  // Cancel is idempotent.
  Effects again;
  ASSERT_TRUE(engine_.Cancel("r1", "operator", &again).ok());
  EXPECT_TRUE(again.kills.empty());
  Exit("b", -1, SIGTERM);
  AdvanceTo(t0 + 5000);  // c ignored TERM: escalate
  ASSERT_EQ(fx_.kills.size(), 1u);
  EXPECT_EQ(fx_.kills[0].signal, SIGKILL);
  Exit("c", -1, SIGKILL);
  EXPECT_EQ(TaskState("b"), "cancelled");
  EXPECT_EQ(TaskState("c"), "cancelled");
  EXPECT_EQ(RunStateOf(), "cancelled");
}

TEST_F(EngineTest, CancelDuringRetryBackoffEndsTheRun) {
  Start("name: w\ntasks:\n  - {id: t, run: [x], retry: {max: 5, backoff: 1m}}\n");
  Exit("t", 1);
  fx_ = Effects();
  ASSERT_TRUE(engine_.Cancel("r1", "operator", &fx_).ok());
  Absorb();
  EXPECT_EQ(TaskState("t"), "cancelled");
  EXPECT_EQ(RunStateOf(), "cancelled");
  EXPECT_EQ(engine_.NextDeadline(), 0);
}

TEST_F(EngineTest, WorkflowTimeoutCancelsAndFailsTheRun) {
  const TimeMs t0 = clock_.Now();
  Start("name: w\ntimeout: 1m\ntasks:\n  - {id: a, run: [x]}\n  - {id: b, run: [x], needs: [a]}\n");
  AdvanceTo(t0 + 60000);
  EXPECT_EQ(fx_.kills.size(), 1u);
  EXPECT_EQ(TaskState("b"), "cancelled");
  Exit("a", -1, SIGTERM);
  EXPECT_EQ(RunStateOf(), "failed");
  EXPECT_EQ(engine_.FindRun("r1")->message, "workflow timeout");
}

TEST_F(EngineTest, SpawnFailureCountsAsAFailedAttempt) {
  Start("name: w\ntasks:\n  - {id: t, run: [nope]}\n");
  fx_ = Effects();
  ExitInfo ex;
  ex.spawn_error = "nope: No such file or directory";
  engine_.OnExit(running_[0].key, ex, &fx_);
  EXPECT_TRUE(HasEvent(EventType::kAttemptSpawnFailed, "t"));
  EXPECT_EQ(TaskState("t"), "failed");
}

TEST_F(EngineTest, StaleExitsAreIgnoredAndCounted) {
  Start("name: w\ntasks:\n  - {id: t, run: [x]}\n");
  Effects fx;
  engine_.OnExit({"r1", "t", 7}, ExitInfo{}, &fx);
  engine_.OnExit({"nope", "t", 1}, ExitInfo{}, &fx);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_EQ(engine_.counters().stale_exits, 2u);
  EXPECT_EQ(TaskState("t"), "running");
}

TEST_F(EngineTest, UnknownOrMissingParamsAreRejected) {
  Effects fx;
  auto def = Def("name: w\nparams: {need: ~}\ntasks:\n  - {id: t, run: [x]}\n");
  EXPECT_FALSE(engine_.StartRun(def, "r1", {}, &fx).ok());
  EXPECT_FALSE(engine_.StartRun(def, "r1", {{"need", "1"}, {"other", "2"}}, &fx).ok());
  EXPECT_TRUE(engine_.StartRun(def, "r1", {{"need", "1"}}, &fx).ok());
  EXPECT_FALSE(engine_.StartRun(def, "r1", {{"need", "1"}}, &fx).ok());  // same id twice
}

TEST_F(EngineTest, RestoreMarksRunningAttemptsInterruptedAndRetriesThem) {
  const TimeMs t0 = clock_.Now();
  const char* yaml = R"(
name: w
tasks:
  - {id: a, run: [x]}
  - {id: b, run: [x], needs: [a], retry: {max: 1, backoff: 2s}}
  - {id: c, run: [x], needs: [a]}
)";
  Start(yaml);
  Exit("a", 0);
  // Snapshot the records as the store would hold them, then "crash".
  RunRecord run = *engine_.FindRun("r1");
  std::vector<TaskRecord> tasks = {*engine_.FindTask("r1", "a"), *engine_.FindTask("r1", "b"),
                                   *engine_.FindTask("r1", "c")};
  Rng rng2(1);
  Engine fresh(clock_, &rng2, EngineOptions{4, 5000, "test-site", {{"zone", "b"}}, {}, {}});
  Effects fx;
  ASSERT_TRUE(fresh.Restore(run, tasks, &fx).ok());
  // b has a retry left: waits for its backoff; c has none: failed.
  EXPECT_EQ(fresh.counters().attempts_interrupted, 2u);
  EXPECT_EQ(TaskStateName(fresh.FindTask("r1", "a")->task_state()), std::string("succeeded"));
  EXPECT_EQ(fresh.FindTask("r1", "b")->task_state(), TaskState::kWaiting);
  EXPECT_EQ(fresh.FindTask("r1", "b")->retry_at, t0 + 2000);
  EXPECT_EQ(fresh.FindTask("r1", "c")->task_state(), TaskState::kFailed);
  EXPECT_TRUE(fx.starts.empty());  // nothing reruns a, nothing starts before the backoff
  int interrupted = 0;
  for (const auto& e : fx.events) {
    interrupted += e.type == static_cast<uint8_t>(EventType::kAttemptInterrupted);
  }
  EXPECT_EQ(interrupted, 2);
  clock_.Set(t0 + 2000);
  Effects fx2;
  fresh.Tick(&fx2);
  ASSERT_EQ(fx2.starts.size(), 1u);
  EXPECT_EQ(fx2.starts[0].key.task, "b");
  EXPECT_EQ(fx2.starts[0].key.attempt, 2);
}

TEST_F(EngineTest, RestoreOfPendingTasksQueuesThem) {
  Start(kDiamond);
  RunRecord run = *engine_.FindRun("r1");
  std::vector<TaskRecord> tasks;  // only the header was stored
  Rng rng2(1);
  Engine fresh(clock_, &rng2, EngineOptions{4, 5000, "test-site", {{"zone", "b"}}, {}, {}});
  Effects fx;
  ASSERT_TRUE(fresh.Restore(run, tasks, &fx).ok());
  ASSERT_EQ(fx.starts.size(), 1u);
  EXPECT_EQ(fx.starts[0].key.task, "a");
}

TEST_F(EngineTest, ForgetDropsFinishedRuns) {
  Start("name: w\ntasks:\n  - {id: t, run: [x]}\n");
  Exit("t", 0);
  engine_.Forget("r1");
  EXPECT_EQ(engine_.active_runs(), 0u);
  EXPECT_EQ(engine_.FindRun("r1"), nullptr);
}

TEST_F(EngineTest, OutputsFlowIntoDownstreamTemplates) {
  Start(R"(
name: t
params: {version: "2.1"}
tasks:
  - id: build
    run: [make]
  - id: ship
    run: [ship, "{{ tasks.build.outputs.artifact }}", "v{{ params.version }}", "{{ site.name }}"]
    env: {ZONE: "{{ site.labels.zone }}"}
    needs: [build]
)");
  ASSERT_EQ(RunningTasks(), std::vector<std::string>{"build"});
  AttemptKey key = running_[0].key;
  running_.clear();
  fx_ = Effects();
  ExitInfo ex;
  ex.exit_code = 0;
  ex.outputs = {{"artifact", "app-2.1.tar"}};
  engine_.OnExit(key, ex, &fx_);
  Absorb();
  EXPECT_EQ(engine_.FindTask("r1", "build")->outputs.at("artifact"), "app-2.1.tar");
  ASSERT_EQ(running_.size(), 1u);
  EXPECT_EQ(running_[0].argv,
            (std::vector<std::string>{"ship", "app-2.1.tar", "v2.1", "test-site"}));
  auto zone = std::find(running_[0].env.begin(), running_[0].env.end(),
                        std::pair<std::string, std::string>{"ZONE", "b"});
  EXPECT_NE(zone, running_[0].env.end());
}

TEST_F(EngineTest, AMissingOutputFailsTheTaskWithoutAnAttempt) {
  Start(R"(
name: t
tasks:
  - id: build
    run: [make]
  - id: ship
    run: [ship, "{{ tasks.build.outputs.artifact }}"]
    needs: [build]
    retry: 3
)");
  Exit("build", 0);  // published nothing
  EXPECT_EQ(TaskState("ship"), "failed");
  EXPECT_EQ(engine_.FindTask("r1", "ship")->attempts, 0);
  EXPECT_NE(engine_.FindTask("r1", "ship")->message.find("did not publish output 'artifact'"),
            std::string::npos);
  EXPECT_EQ(RunStateOf(), "failed");
}

TEST_F(EngineTest, InvalidOutputsFailTheAttempt) {
  Start(R"(
name: t
tasks:
  - id: build
    run: [make]
)");
  AttemptKey key = running_[0].key;
  running_.clear();
  fx_ = Effects();
  ExitInfo ex;
  ex.exit_code = 0;
  ex.output_error = "output line 1 is not key=value";
  engine_.OnExit(key, ex, &fx_);
  EXPECT_EQ(TaskState("build"), "failed");
  EXPECT_NE(engine_.FindTask("r1", "build")->message.find("invalid $OUTPOST_OUTPUT"),
            std::string::npos);
}

TEST(TemplateTest, OutputsParseAndRefuseGarbage) {
  auto ok = ParseOutputs("a=1\n# comment\n\nb.c-d_e=x=y\r\nempty=\n");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->at("a"), "1");
  EXPECT_EQ(ok->at("b.c-d_e"), "x=y");
  EXPECT_EQ(ok->at("empty"), "");
  EXPECT_FALSE(ParseOutputs("just text\n").ok());
  EXPECT_FALSE(ParseOutputs("sp ace=1\n").ok());
  EXPECT_FALSE(ParseOutputs(std::string(70 * 1024, 'a')).ok());
}

TEST_F(EngineTest, TriggerRulesDecideFromUpstreamStates) {
  Start(R"(
name: t
tasks:
  - id: a
    run: [a]
  - id: b
    run: [b]
  - id: any_ok
    run: [x]
    needs: [a, b]
    trigger: one_success
  - id: any_failed
    run: [x]
    needs: [a, b]
    trigger: one_failed
  - id: none_failed
    run: [x]
    needs: [a, b]
    trigger: none_failed
  - id: done
    run: [x]
    needs: [a, b]
    trigger: all_done
  - id: all_ok
    run: [x]
    needs: [a, b]
    trigger: all_success
)");
  ASSERT_EQ(RunningTasks(), (std::vector<std::string>{"a", "b"}));
  Exit("b", 0);
  // one_success fires as soon as b succeeded, while a still runs.
  EXPECT_EQ(RunningTasks(), (std::vector<std::string>{"a", "any_ok"}));
  EXPECT_EQ(TaskState("none_failed"), "pending");
  Exit("a", 2);
  EXPECT_EQ(TaskState("none_failed"), "skipped");
  EXPECT_EQ(TaskState("all_ok"), "skipped");
  EXPECT_EQ(RunningTasks(), (std::vector<std::string>{"any_failed", "any_ok", "done"}));
  for (const char* t : {"any_ok", "any_failed", "done"}) Exit(t, 0);
  EXPECT_EQ(RunStateOf(), "failed");  // a failed
}

TEST_F(EngineTest, OneFailedIsSkippedWhenEverythingSucceeded) {
  Start(R"(
name: t
tasks:
  - id: a
    run: [a]
  - id: alert
    run: [page]
    needs: [a]
    trigger: one_failed
)");
  Exit("a", 0);
  EXPECT_EQ(TaskState("alert"), "skipped");
  EXPECT_EQ(RunStateOf(), "succeeded");
}

TEST_F(EngineTest, WhenConditionsReadOutputsParamsAndStates) {
  Start(R"(
name: t
params: {mode: full}
tasks:
  - id: check
    run: [check]
  - id: restart
    run: [restart]
    needs: [check]
    when: tasks.check.outputs.healthy == 'no' && params.mode != "dry-run"
  - id: report
    run: [report]
    needs: [check]
    when: tasks.check.state == 'succeeded' and (tasks.check.outputs.healthy == 'yes' or site.labels.zone == 'b')
  - id: never
    run: [x]
    needs: [check]
    when: not (site.name == 'test-site')
  - id: broken
    run: [x]
    needs: [check]
    when: tasks.check.outputs.missing == 'x'
)", "r1", {});
  AttemptKey key = running_[0].key;
  running_.clear();
  fx_ = Effects();
  ExitInfo ex;
  ex.exit_code = 0;
  ex.outputs = {{"healthy", "no"}};
  engine_.OnExit(key, ex, &fx_);
  Absorb();
  EXPECT_EQ(RunningTasks(), (std::vector<std::string>{"report", "restart"}));
  EXPECT_EQ(TaskState("never"), "skipped");
  EXPECT_NE(engine_.FindTask("r1", "never")->message.find("is false"), std::string::npos);
  EXPECT_EQ(TaskState("broken"), "failed");
  EXPECT_NE(engine_.FindTask("r1", "broken")->message.find("did not publish output 'missing'"),
            std::string::npos);
}

const char* kGate = R"(
name: canary
tasks:
  - id: deploy
    run: [deploy]
  - id: gate
    type: approval
    needs: [deploy]
    timeout: 10m
  - id: rollout
    run: [rollout]
    needs: [gate]
)";

TEST_F(EngineTest, ApprovalGateWaitsForADecisionAndRecordsItsAuthor) {
  Start(kGate);
  Exit("deploy", 0);
  EXPECT_EQ(TaskState("gate"), "awaiting_approval");
  EXPECT_TRUE(HasEvent(EventType::kApprovalRequested, "gate"));
  EXPECT_TRUE(RunningTasks().empty());  // a gate runs no process and takes no slot
  fx_ = Effects();
  EXPECT_FALSE(engine_.Approve("r1", "deploy", true, "ana", &fx_).ok());  // not a waiting gate
  ASSERT_TRUE(engine_.Approve("r1", "gate", true, "ana", &fx_).ok());
  Absorb();
  EXPECT_EQ(TaskState("gate"), "succeeded");
  EXPECT_EQ(engine_.FindTask("r1", "gate")->message, "approved by ana");
  EXPECT_TRUE(HasEvent(EventType::kApprovalDecided, "gate"));
  EXPECT_EQ(RunningTasks(), std::vector<std::string>{"rollout"});
}

TEST_F(EngineTest, RejectedOrTimedOutGatesFailAndCancelEndsAWaitingGate) {
  Start(kGate, "r1");
  Exit("deploy", 0);
  fx_ = Effects();
  ASSERT_TRUE(engine_.Approve("r1", "gate", false, "ben", &fx_).ok());
  EXPECT_EQ(TaskState("gate", "r1"), "failed");
  EXPECT_EQ(engine_.FindTask("r1", "gate")->message, "rejected by ben");
  EXPECT_EQ(TaskState("rollout", "r1"), "skipped");

  Start(kGate, "r2");
  Exit("deploy", 0);
  EXPECT_EQ(engine_.NextDeadline(), clock_.Now() + 10 * 60 * 1000);
  AdvanceTo(clock_.Now() + 10 * 60 * 1000);
  EXPECT_EQ(TaskState("gate", "r2"), "failed");
  EXPECT_EQ(engine_.FindTask("r2", "gate")->message, "approval timed out");

  Start(kGate, "r3");
  Exit("deploy", 0);
  fx_ = Effects();
  ASSERT_TRUE(engine_.Cancel("r3", "operator", &fx_).ok());
  EXPECT_EQ(TaskState("gate", "r3"), "cancelled");
  EXPECT_EQ(RunStateOf("r3"), "cancelled");
}

}  // namespace
}  // namespace outpost

namespace outpost {
namespace {

TEST_F(EngineTest, ARunWhoseTasksAllEndAtStartFinishesAtOnce) {
  Start(R"(
name: nothing-to-do
params:
  go: "no"
tasks:
  - {id: only, run: [x], when: "params.go == 'yes'"}
)");
  EXPECT_TRUE(RunningTasks().empty());
  EXPECT_EQ(TaskState("only"), "skipped");
  EXPECT_EQ(RunStateOf(), "succeeded");
  EXPECT_TRUE(HasEvent(EventType::kRunFinished));
  EXPECT_EQ(finished_, std::vector<std::string>({"r1"}));
}

}  // namespace
}  // namespace outpost
