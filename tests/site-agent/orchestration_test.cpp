// Fan-out, compensation, queues and priority in the engine, under a ManualClock.
#include <gtest/gtest.h>

#include "tests/site-agent/test_defs.h"
#include <signal.h>

#include <algorithm>

#include "site-agent/engine.h"

namespace outpost {
namespace {

using testing_defs::Def;

class Orchestration : public ::testing::Test {
 protected:
  explicit Orchestration(int max_parallel = 4, std::map<std::string, int> queues = {})
      : rng_(7), engine_(clock_, &rng_, EngineOptions{max_parallel, 5000, "gw-1", {}, queues, {}}) {}

  Status Start(const std::string& yaml, const std::string& id = "r1", StartOptions o = {}) {
    fx_ = Effects();
    Status s = engine_.StartRun(Def(yaml), id, {}, &fx_, o);
    Absorb();
    return s;
  }
  void Absorb() {
    for (auto& s : fx_.starts) running_.push_back(s);
    for (auto& e : fx_.events) events_.push_back(e);
  }
  const StartProcess* Running(const std::string& task, const std::string& run = "r1") const {
    for (const auto& s : running_) {
      if (s.key.task == task && s.key.run == run) return &s;
    }
    return nullptr;
  }
  std::vector<std::string> RunningTasks() const {
    std::vector<std::string> out;
    for (const auto& s : running_) out.push_back(s.key.task);
    std::sort(out.begin(), out.end());
    return out;
  }
  void Exit(const std::string& task, int code, const std::string& stdout_text = "",
            std::map<std::string, std::string> outputs = {}, const std::string& run = "r1") {
    auto it = std::find_if(running_.begin(), running_.end(), [&](const StartProcess& s) {
      return s.key.task == task && s.key.run == run;
    });
    ASSERT_NE(it, running_.end()) << "task " << task << " of " << run << " is not running";
    AttemptKey key = it->key;
    running_.erase(it);
    fx_ = Effects();
    ExitInfo ex;
    ex.exit_code = code;
    ex.output = stdout_text;
    ex.outputs = std::move(outputs);
    engine_.OnExit(key, ex, &fx_);
    Absorb();
  }
  std::string State(const std::string& task, const std::string& run = "r1") const {
    const TaskRecord* t = engine_.FindTask(run, task);
    return t ? TaskStateName(t->task_state()) : "gone";
  }
  std::string RunState(const std::string& run = "r1") const {
    const RunRecord* r = engine_.FindRun(run);
    return r ? RunStateName(r->run_state()) : "gone";
  }

  ManualClock clock_;
  Rng rng_;
  Engine engine_;
  Effects fx_;
  std::vector<StartProcess> running_;
  std::vector<Event> events_;
};

TEST_F(Orchestration, StaticFanOutRespectsParallelismAndFansIn) {
  ASSERT_TRUE(Start(R"(
name: fan
tasks:
  - id: ping
    for_each: [dev-a, dev-b, dev-c, dev-d, dev-e]
    parallelism: 2
    run: [ping, -c1, "{{ item }}"]
  - id: report
    needs: [ping]
    run: [echo, "{{ tasks.ping.outputs.count }} devices"]
)").ok());
  EXPECT_EQ(State("ping"), "running");
  EXPECT_EQ(RunningTasks(), (std::vector<std::string>{"ping[0]", "ping[1]"}));
  EXPECT_EQ(Running("ping[1]")->argv, (std::vector<std::string>{"ping", "-c1", "dev-b"}));
  bool item_env = false;
  for (const auto& [k, v] : Running("ping[0]")->env) item_env = item_env || (k == "OUTPOST_ITEM" && v == "dev-a");
  EXPECT_TRUE(item_env);
  Exit("ping[0]", 0);
  EXPECT_EQ(RunningTasks(), (std::vector<std::string>{"ping[1]", "ping[2]"}));
  Exit("ping[1]", 0);
  Exit("ping[2]", 0);
  Exit("ping[3]", 0);
  EXPECT_EQ(State("report"), "pending");
  Exit("ping[4]", 0);
  EXPECT_EQ(State("ping"), "succeeded");
  ASSERT_NE(Running("report"), nullptr);
  EXPECT_EQ(Running("report")->argv[1], "5 devices");
  Exit("report", 0);
  EXPECT_EQ(RunState(), "succeeded");
}

TEST_F(Orchestration, EachInstanceRetriesOnItsOwnAndAFailedOneFailsTheFanOut) {
  ASSERT_TRUE(Start(R"(
name: fan
tasks:
  - id: flash
    for_each: [a, b]
    retry: {max: 1, backoff: 1s}
    run: [flash, "{{ item }}"]
  - id: cleanup
    needs: [flash]
    trigger: all_done
    run: [cleanup]
)").ok());
  Exit("flash[0]", 1);
  EXPECT_EQ(State("flash[0]"), "pending");  // waiting for its retry
  Exit("flash[1]", 0);
  EXPECT_EQ(State("flash[1]"), "succeeded");
  clock_.Advance(2000);
  fx_ = Effects();
  engine_.Tick(&fx_);
  Absorb();
  ASSERT_NE(Running("flash[0]"), nullptr);
  EXPECT_EQ(Running("flash[0]")->key.attempt, 2);
  Exit("flash[0]", 3);
  EXPECT_EQ(State("flash[0]"), "failed");
  EXPECT_EQ(State("flash"), "failed");
  EXPECT_EQ(engine_.FindTask("r1", "flash")->message, "1 of 2 instance(s) failed");
  EXPECT_EQ(engine_.FindTask("r1", "flash")->outputs.at("succeeded"), "1");
  Exit("cleanup", 0);
  EXPECT_EQ(RunState(), "failed");
}

TEST_F(Orchestration, DynamicFanOutOverAnUpstreamOutputAndOverItsLines) {
  ASSERT_TRUE(Start(R"(
name: fan
tasks:
  - id: discover
    shell: "list-devices"
  - id: by_output
    needs: [discover]
    for_each: "{{ tasks.discover.outputs.devices }}"
    run: [probe, "{{ item }}"]
  - id: by_lines
    needs: [discover]
    for_each: {lines_of: discover}
    run: [probe-line, "{{ item }}"]
)").ok());
  Exit("discover", 0, "sensor-1\n  sensor-2 \n\nsensor-3\n", {{"devices", "plc-1, plc-2"}});
  EXPECT_EQ(engine_.FindTask("r1", "by_output")->instances, 2);
  EXPECT_EQ(engine_.FindTask("r1", "by_lines")->instances, 3);
  EXPECT_EQ(Running("by_output[1]")->argv[1], "plc-2");
  EXPECT_EQ(Running("by_lines[1]")->argv[1], "sensor-2");
  // The engine runs at most 4 at once; all five instances finish.
  for (int round = 0; round < 3 && !running_.empty(); ++round) {
    auto names = RunningTasks();
    for (const auto& n : names) Exit(n, 0);
  }
  EXPECT_EQ(RunState(), "succeeded");
}

TEST_F(Orchestration, AnEmptyFanOutSucceedsAndTooManyItemsFail) {
  ASSERT_TRUE(Start(R"(
name: fan
tasks:
  - id: discover
    run: [list]
  - id: each
    needs: [discover]
    for_each: "{{ tasks.discover.outputs.devices }}"
    run: [probe, "{{ item }}"]
)").ok());
  Exit("discover", 0, "", {{"devices", ""}});
  EXPECT_EQ(State("each"), "succeeded");
  EXPECT_EQ(RunState(), "succeeded");

  std::string many;
  for (int i = 0; i <= kMaxFanOut; ++i) many += "d" + std::to_string(i) + "\n";
  ASSERT_TRUE(Start(R"(
name: fan2
tasks:
  - id: discover
    run: [list]
  - id: each
    needs: [discover]
    for_each: {lines_of: discover}
    run: [probe, "{{ item }}"]
)", "r2").ok());
  Exit("discover", 0, many, {}, "r2");
  EXPECT_EQ(State("each", "r2"), "failed");
  EXPECT_NE(engine_.FindTask("r2", "each")->message.find("1001 items"), std::string::npos);
}

TEST_F(Orchestration, CancelStopsAFanOutAndItsPendingInstances) {
  ASSERT_TRUE(Start(R"(
name: fan
tasks:
  - id: each
    for_each: [a, b, c]
    parallelism: 1
    run: [work, "{{ item }}"]
)").ok());
  fx_ = Effects();
  ASSERT_TRUE(engine_.Cancel("r1", "operator", &fx_).ok());
  Absorb();
  ASSERT_EQ(fx_.kills.size(), 1u);
  EXPECT_EQ(fx_.kills[0].key.task, "each[0]");
  EXPECT_EQ(State("each[1]"), "cancelled");
  Exit("each[0]", -1);
  EXPECT_EQ(State("each"), "cancelled");
  EXPECT_EQ(RunState(), "cancelled");
}

constexpr char kCanary[] = R"(
name: canary
tasks:
  - id: snapshot
    run: [snapshot]
    compensate: [restore-snapshot, "{{ tasks.snapshot.outputs.id }}"]
  - id: deploy
    needs: [snapshot]
    run: [deploy]
    compensate: "rollback --to {{ tasks.deploy.outputs.previous }}"
  - id: notify
    needs: [deploy]
    run: [notify]
  - id: verify
    needs: [notify]
    run: [verify]
)";

TEST_F(Orchestration, AFailedRunCompensatesSucceededTasksInReverseOrder) {
  ASSERT_TRUE(Start(kCanary).ok());
  clock_.Advance(10);
  Exit("snapshot", 0, "", {{"id", "snap-7"}});
  clock_.Advance(10);
  Exit("deploy", 0, "", {{"previous", "1.4.2"}});
  Exit("notify", 0);  // no compensate: nothing to undo
  Exit("verify", 1);
  EXPECT_EQ(RunState(), "running");
  EXPECT_TRUE(engine_.FindRun("r1")->compensating);
  // One at a time: the deploy (finished last) first.
  EXPECT_EQ(RunningTasks(), (std::vector<std::string>{"compensate:deploy"}));
  // The output reaches the shell as a variable, never as shell text.
  EXPECT_EQ(Running("compensate:deploy")->argv,
            (std::vector<std::string>{"/bin/sh", "-c", "rollback --to \"${OUTPOST_V0}\""}));
  EXPECT_NE(std::find(Running("compensate:deploy")->env.begin(), Running("compensate:deploy")->env.end(),
                      std::pair<std::string, std::string>{"OUTPOST_V0", "1.4.2"}),
            Running("compensate:deploy")->env.end());
  // A cancel does not stop compensations.
  fx_ = Effects();
  EXPECT_FALSE(engine_.Cancel("r1", "impatient", &fx_).ok());
  Exit("compensate:deploy", 0);
  EXPECT_EQ(Running("compensate:snapshot")->argv,
            (std::vector<std::string>{"restore-snapshot", "snap-7"}));
  Exit("compensate:snapshot", 0);
  EXPECT_EQ(RunState(), "compensated");
  EXPECT_FALSE(engine_.FindRun("r1")->compensating);  // finished: its state says how
  bool started = false;
  for (const auto& e : events_) {
    if (e.type == static_cast<uint8_t>(EventType::kCompensationStarted)) {
      started = true;
      EXPECT_EQ(e.message, "run failed; compensating deploy, snapshot");
    }
  }
  EXPECT_TRUE(started);
}

TEST_F(Orchestration, AFailedCompensationEndsCompensationFailedAfterTheRest) {
  ASSERT_TRUE(Start(kCanary).ok());
  Exit("snapshot", 0, "", {{"id", "s"}});
  clock_.Advance(5);
  Exit("deploy", 0, "", {{"previous", "1"}});
  Exit("notify", 1);
  EXPECT_EQ(State("verify"), "skipped");
  Exit("compensate:deploy", 2);
  // The rest still runs: best effort, then the run says what happened.
  Exit("compensate:snapshot", 0);
  EXPECT_EQ(RunState(), "compensation_failed");
}

TEST_F(Orchestration, CancelCascadesThenCompensates) {
  ASSERT_TRUE(Start(kCanary).ok());
  Exit("snapshot", 0, "", {{"id", "s1"}});
  ASSERT_NE(Running("deploy"), nullptr);
  fx_ = Effects();
  ASSERT_TRUE(engine_.Cancel("r1", "operator", &fx_).ok());
  Absorb();
  ASSERT_EQ(fx_.kills.size(), 1u);
  EXPECT_EQ(fx_.kills[0].signal, SIGTERM);
  EXPECT_EQ(State("notify"), "cancelled");
  Exit("deploy", -1);
  EXPECT_EQ(State("deploy"), "cancelled");  // never succeeded: nothing to undo
  EXPECT_EQ(RunningTasks(), (std::vector<std::string>{"compensate:snapshot"}));
  Exit("compensate:snapshot", 0);
  EXPECT_EQ(RunState(), "compensated");
  EXPECT_EQ(engine_.FindRun("r1")->outcome, "cancelled");
}

TEST_F(Orchestration, CompensationsOfFanOutInstancesUseTheirItems) {
  ASSERT_TRUE(Start(R"(
name: fan
tasks:
  - id: install
    for_each: [a, b]
    run: [install, "{{ item }}"]
    compensate: [uninstall, "{{ item }}"]
  - id: check
    needs: [install]
    run: [check]
)").ok());
  clock_.Advance(1);
  Exit("install[1]", 0);
  clock_.Advance(1);
  Exit("install[0]", 0);
  Exit("check", 1);
  ASSERT_NE(Running("compensate:install[0]"), nullptr);
  EXPECT_EQ(Running("compensate:install[0]")->argv[1], "a");
  Exit("compensate:install[0]", 0);
  EXPECT_EQ(Running("compensate:install[1]")->argv[1], "b");
  Exit("compensate:install[1]", 0);
  EXPECT_EQ(RunState(), "compensated");
}

TEST_F(Orchestration, RestoreResumesInstancesAndCompensations) {
  ASSERT_TRUE(Start(kCanary).ok());
  Exit("snapshot", 0, "", {{"id", "s1"}});
  Exit("deploy", 0, "", {{"previous", "2"}});
  Exit("notify", 0);
  Exit("verify", 1);
  ASSERT_NE(Running("compensate:deploy"), nullptr);
  // The agent dies here; a new engine resumes from the records.
  RunRecord run = *engine_.FindRun("r1");
  std::vector<TaskRecord> tasks;
  for (const char* id : {"snapshot", "deploy", "notify", "verify", "compensate:deploy", "compensate:snapshot"}) {
    tasks.push_back(*engine_.FindTask("r1", id));
  }
  Rng rng2(9);
  Engine fresh(clock_, &rng2, EngineOptions{4, 5000, "gw-1", {}, {}, {}});
  Effects fx;
  ASSERT_TRUE(fresh.Restore(run, tasks, &fx).ok());
  ASSERT_EQ(fx.starts.size(), 1u);  // the interrupted compensation runs again
  EXPECT_EQ(fx.starts[0].key.task, "compensate:deploy");
  EXPECT_EQ(fx.starts[0].key.attempt, 2);
  EXPECT_EQ(fx.starts[0].argv[2], "rollback --to \"${OUTPOST_V0}\"");
  EXPECT_NE(std::find(fx.starts[0].env.begin(), fx.starts[0].env.end(),
                      std::pair<std::string, std::string>{"OUTPOST_V0", "2"}),
            fx.starts[0].env.end());
}

TEST_F(Orchestration, RestoreResumesAFanOutWhereItStopped) {
  ASSERT_TRUE(Start(R"(
name: fan
tasks:
  - id: each
    for_each: [a, b, c, d]
    parallelism: 2
    run: [work, "{{ item }}"]
  - id: after
    needs: [each]
    run: [done]
)").ok());
  Exit("each[0]", 0);
  ASSERT_NE(Running("each[1]"), nullptr);
  ASSERT_NE(Running("each[2]"), nullptr);
  RunRecord run = *engine_.FindRun("r1");
  std::vector<TaskRecord> tasks;
  for (const char* id : {"each", "after", "each[0]", "each[1]", "each[2]", "each[3]"}) {
    tasks.push_back(*engine_.FindTask("r1", id));
  }
  std::reverse(tasks.begin(), tasks.end());  // the store's order is not the engine's
  Rng rng2(9);
  Engine fresh(clock_, &rng2, EngineOptions{4, 5000, "gw-1", {}, {}, {}});
  Effects fx;
  ASSERT_TRUE(fresh.Restore(run, tasks, &fx).ok());
  // The two interrupted instances had no retries: they failed; the last one starts.
  EXPECT_EQ(TaskStateName(fresh.FindTask("r1", "each[1]")->task_state()), std::string("failed"));
  ASSERT_EQ(fx.starts.size(), 1u);
  EXPECT_EQ(fx.starts[0].key.task, "each[3]");
  EXPECT_EQ(fx.starts[0].argv[1], "d");
  Effects fx2;
  ExitInfo ok;
  ok.exit_code = 0;
  fresh.OnExit(fx.starts[0].key, ok, &fx2);
  EXPECT_EQ(TaskStateName(fresh.FindTask("r1", "each")->task_state()), std::string("failed"));
  EXPECT_EQ(fresh.FindTask("r1", "each")->message, "2 of 4 instance(s) failed");
  EXPECT_EQ(RunStateName(fresh.FindRun("r1")->run_state()), std::string("failed"));
}

TEST_F(Orchestration, WorkflowConcurrencyRefusesExtraRuns) {
  const char* yaml = "name: once\nconcurrency: 1\ntasks:\n  - id: a\n    run: [x]\n";
  ASSERT_TRUE(Start(yaml, "r1").ok());
  Status s = Start(yaml, "r2");
  EXPECT_EQ(s.code(), Code::kResourceExhausted) << s.ToString();
  Exit("a", 0);
  EXPECT_TRUE(Start(yaml, "r3").ok());
}

class Queues : public Orchestration {
 protected:
  Queues() : Orchestration(3, {{"upload", 1}}) {}
};

TEST_F(Queues, ALongQueueDoesNotStarveAShortOneAndQueueLimitsHold) {
  std::string many = "name: bulk\ntasks:\n";
  for (int i = 0; i < 20; ++i) many += "  - id: t" + std::to_string(i) + "\n    run: [work]\n";
  ASSERT_TRUE(Start(many, "bulk").ok());
  EXPECT_EQ(running_.size(), 3u);
  ASSERT_TRUE(Start("name: up\ntasks:\n  - id: u1\n    queue: upload\n    run: [up]\n"
                    "  - id: u2\n    queue: upload\n    run: [up]\n", "up").ok());
  EXPECT_EQ(running_.size(), 3u);  // no free slot yet
  Exit("t0", 0, "", {}, "bulk");
  // The freed slot goes to the upload queue, not the next of the 17 waiting bulk tasks.
  EXPECT_NE(Running("u1", "up"), nullptr);
  Exit("t1", 0, "", {}, "bulk");
  // The upload queue holds one at a time: the slot goes back to bulk.
  EXPECT_EQ(Running("u2", "up"), nullptr);
  EXPECT_NE(Running("t3", "bulk"), nullptr);
  Exit("u1", 0, "", {}, "up");
  EXPECT_NE(Running("u2", "up"), nullptr);
}

TEST_F(Queues, HigherPriorityRunsFirstWithinAQueueAndUnknownQueuesAreRefused) {
  std::string fill = "name: fill\ntasks:\n";
  for (int i = 0; i < 3; ++i) fill += "  - id: f" + std::to_string(i) + "\n    run: [x]\n";
  ASSERT_TRUE(Start(fill, "fill").ok());
  StartOptions low, high;
  low.priority = -5;
  high.priority = 10;
  ASSERT_TRUE(Start("name: low\ntasks:\n  - id: l\n    run: [x]\n", "low", low).ok());
  ASSERT_TRUE(Start("name: high\ntasks:\n  - id: h\n    run: [x]\n", "high", high).ok());
  Exit("f0", 0, "", {}, "fill");
  EXPECT_NE(Running("h", "high"), nullptr);
  EXPECT_EQ(Running("l", "low"), nullptr);
  Status s = Start("name: q\ntasks:\n  - id: a\n    queue: gpu\n    run: [x]\n", "q");
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("queue 'gpu'"), std::string::npos);
}

class OneSlot : public Orchestration {
 protected:
  OneSlot() : Orchestration(1) {}
};

TEST_F(OneSlot, AStreamOfUrgentRunsDoesNotHoldALowPriorityRunBackForEver) {
  ASSERT_TRUE(Start("name: first\ntasks:\n  - id: t\n    run: [x]\n", "first").ok());
  StartOptions low, high;
  low.priority = -10;
  high.priority = 10;
  ASSERT_TRUE(Start("name: low\ntasks:\n  - id: t\n    run: [x]\n", "low", low).ok());
  for (int k = 0; k < 30; ++k) {
    ASSERT_TRUE(Start("name: hi\ntasks:\n  - id: t\n    run: [x]\n", "hi" + std::to_string(k), high).ok());
  }
  int urgent_before = 0;
  std::string current = "first";
  for (int step = 0; step < 40 && current != "low"; ++step) {
    Exit("t", 0, "", {}, current);
    ASSERT_EQ(running_.size(), 1u);
    current = running_[0].key.run;
    if (current != "low") ++urgent_before;
  }
  EXPECT_EQ(current, "low");
  EXPECT_LT(urgent_before, static_cast<int>(kAgeEvery));  // not all 30 went first
  EXPECT_GT(urgent_before, 0);  // but priority still counts
}

TEST(OrchestrationValidation, TypedParamsAreCheckedAtValidationAndAtStart) {
  auto d = ParseWorkflow(R"(
name: typed
params:
  host:
  port: {type: int, default: "8080"}
  ratio: {type: number, default: "0.5"}
  dry_run: {type: bool, default: "no"}
  mode: {type: string, choices: [canary, full], default: canary}
tasks:
  - id: a
    output_cap: 4096
    run: [deploy, "{{ params.host }}:{{ params.port }}", "{{ params.dry_run }}"]
)", "typed.yaml");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->tasks[0].output_cap, 4096u);
  auto ok = d->ResolveParams({{"host", "10.0.0.7"}, {"dry_run", "yes"}});
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->at("dry_run"), "true");
  EXPECT_EQ(ok->at("port"), "8080");
  auto no = d->ResolveParams({{"host", "h"}, {"dry_run", "false"}});
  ASSERT_TRUE(no.ok());
  EXPECT_EQ(no->at("dry_run"), "false");
  struct Bad {
    std::map<std::string, std::string> given;
    const char* want;
  } bad[] = {
      {{{"host", "h"}, {"port", "80a"}}, "param 'port' must be an int, got '80a'"},
      {{{"host", "h"}, {"ratio", "half"}}, "param 'ratio' must be a number"},
      {{{"host", "h"}, {"dry_run", "maybe"}}, "must be a bool"},
      {{{"host", "h"}, {"mode", "yolo"}}, "must be one of canary, full"},
      {{}, "needs param 'host'"},
  };
  for (const auto& b : bad) {
    auto r = d->ResolveParams(b.given);
    ASSERT_FALSE(r.ok()) << b.want;
    EXPECT_NE(r.status().message().find(b.want), std::string::npos) << r.status().message();
  }
  auto e = ParseWorkflow("name: w\nparams:\n  n: {type: int, default: x}\n  m: {type: float}\n"
                         "tasks:\n  - id: a\n    output_cap: 10\n    run: [x]\n",
                         "w.yaml");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("w.yaml:3:"), std::string::npos) << e.status().message();
  EXPECT_NE(e.status().message().find("default of param 'n' must be an int"), std::string::npos);
  EXPECT_NE(e.status().message().find("type must be string, int, number or bool, got 'float'"),
            std::string::npos);
  EXPECT_NE(e.status().message().find("'output_cap' must be an integer from 1024"), std::string::npos);
}

TEST(OrchestrationValidation, NewKeysAreCheckedWithTheirLine) {
  struct Case {
    const char* yaml;
    const char* want;
  } cases[] = {
      {"name: w\ntasks:\n  - id: a\n    run: [x, '{{ item }}']\n", "only defined in the commands of a for_each task"},
      {"name: w\ntasks:\n  - id: a\n    parallelism: 2\n    run: [x]\n", "'parallelism' needs 'for_each'"},
      {"name: w\ntasks:\n  - id: a\n    for_each: [x]\n    when: \"item == 'x'\"\n    run: [x]\n",
       "'when' item is only defined in the commands"},
      {"name: w\ntasks:\n  - id: a\n    for_each: plain\n    run: [x]\n", "'for_each' must be a list, a template"},
      {"name: w\ntasks:\n  - id: a\n    run: [x]\n  - id: b\n    for_each: {lines_of: a}\n    run: [x]\n",
       "for_each.lines_of: task 'a' is not upstream"},
      {"name: w\ntasks:\n  - id: a\n    type: approval\n    compensate: undo\n", "nothing to compensate"},
      {"name: w\nschedule: '61 * * * *'\ntasks:\n  - id: a\n    run: [x]\n", "'schedule.cron'"},
      {"name: w\nschedule: {cron: '@daily', catch_up: maybe}\ntasks:\n  - id: a\n    run: [x]\n",
       "must be skip, latest or all"},
      {"name: w\nschedule: {cron: '@daily', overlap: replace}\ntasks:\n  - id: a\n    run: [x]\n",
       "must be skip, queue or allow"},
      {"name: w\nschedule: {cron: '@daily', timezone: '../../etc/passwd'}\ntasks:\n  - id: a\n    run: [x]\n",
       "is not a zone name"},
      {"name: w\nconcurrency: 0\ntasks:\n  - id: a\n    run: [x]\n", "'concurrency' must be an integer"},
      {"name: w\ntasks:\n  - id: a\n    queue: 'bad name'\n    run: [x]\n", "queue name 'bad name' is not valid"},
  };
  for (const auto& c : cases) {
    auto d = ParseWorkflow(c.yaml, "wf.yaml");
    ASSERT_FALSE(d.ok()) << c.yaml;
    EXPECT_NE(d.status().message().find(c.want), std::string::npos) << d.status().message();
    EXPECT_NE(d.status().message().find("wf.yaml"), std::string::npos);
  }
}

}  // namespace
}  // namespace outpost
