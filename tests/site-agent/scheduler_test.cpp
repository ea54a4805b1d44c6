// Schedules on a site across a simulated week: the real engine, scheduler and RocksDB
// store of an agent, time from a ManualClock, task processes that take a set time. The
// agent is "down" (everything destroyed, the store closed) for part of the week and
// comes back from what it had persisted, as after a crash or a power cut.
#include "site-agent/scheduler.h"

#include <gtest/gtest.h>

#include "tests/site-agent/test_defs.h"
#include <unistd.h>

#include <filesystem>

#include "common/workflow/cron.h"
#include "site-agent/agent_store.h"

namespace outpost {
namespace {

std::shared_ptr<const WorkflowDef> Def(const std::string& yaml) { return testing_defs::Def(yaml, "backup.yaml"); }

TimeMs At(const char* iso) {
  auto t = ParseIsoTime(iso);
  EXPECT_TRUE(t.ok()) << iso;
  return *t;
}

class Site {
 public:
  Site(ManualClock* clock, std::string dir, std::shared_ptr<const WorkflowDef> def, DurationMs job)
      : clock_(clock), dir_(std::move(dir)), def_(std::move(def)), job_(job) {}

  void Up() {
    EventLog::Options lo;
    lo.new_incarnation = 1;
    auto log = EventLog::Open(dir_, lo);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    store_ = std::make_unique<AgentStore>(std::move(log).value());
    engine_ = std::make_unique<Engine>(*clock_, &rng_, EngineOptions{4, 5000, "gw", {}, {}, {}});
    sched_ = std::make_unique<Scheduler>(*clock_, [this] { return "gw-" + std::to_string(++ids_); });
    Effects fx;
    auto unfinished = store_->LoadUnfinished();
    ASSERT_TRUE(unfinished.ok());
    for (auto& v : *unfinished) ASSERT_TRUE(engine_->Restore(v.run, v.tasks, &fx).ok());
    std::optional<ScheduleState> state;
    auto raw = store_->log().GetState(ScheduleKey(def_->name));
    ASSERT_TRUE(raw.ok());
    if (*raw) {
      ScheduleState st;
      ASSERT_TRUE(Decode(**raw, &st).ok());
      state = st;
    }
    auto tz = TimeZone::Load(def_->schedule->timezone);
    ASSERT_TRUE(tz.ok()) << tz.status().ToString();
    ASSERT_TRUE(sched_->Set(def_, *tz, state, &fx).ok());
    Commit(&fx);
  }
  void Down() {  // no goodbye: as if the power went
    running_.clear();
    sched_.reset();
    engine_.reset();
    store_.reset();
  }
  bool up() const { return engine_ != nullptr; }

  // Advances to `t`, stopping at every deadline on the way, as the agent's loop does.
  void RunUntil(TimeMs t) {
    for (int guard = 0; guard < 100000; ++guard) {
      TimeMs next = t;
      auto earliest = [&next](TimeMs d) {
        if (d > 0 && d < next) next = d;
      };
      if (up()) {
        earliest(sched_->NextDeadline());
        earliest(engine_->NextDeadline());
        for (const auto& [end, key] : running_) earliest(end);
      }
      clock_->Set(std::max(next, clock_->Now()));
      if (up()) Step();
      if (clock_->Now() >= t) return;
    }
    FAIL() << "RunUntil did not reach the target";
  }

  std::vector<std::string> fired;    // trigger of each scheduled run, in order
  std::vector<std::string> skipped;  // schedule.skipped messages
  int max_active = 0;

 private:
  void Step() {
    Effects fx;
    const TimeMs now = clock_->Now();
    for (auto it = running_.begin(); it != running_.end();) {
      if (it->first <= now) {
        ExitInfo ok;
        ok.exit_code = 0;
        engine_->OnExit(it->second, ok, &fx);
        it = running_.erase(it);
      } else {
        ++it;
      }
    }
    engine_->Tick(&fx);
    sched_->Tick(*engine_, &fx);
    Commit(&fx);
    max_active = std::max(max_active, engine_->ActiveRunsOf(def_->name));
  }
  void Commit(Effects* fx) {
    ASSERT_TRUE(store_->Commit(*fx, *engine_).ok());
    for (const auto& e : fx->events) {
      if (e.type == static_cast<uint8_t>(EventType::kScheduleFired)) fired.push_back(e.message);
      if (e.type == static_cast<uint8_t>(EventType::kScheduleSkipped)) skipped.push_back(e.message);
    }
    for (const auto& s : fx->starts) running_.emplace(clock_->Now() + job_, s.key);
    for (const auto& id : fx->finished_runs) engine_->Forget(id);
  }

  ManualClock* clock_;
  std::string dir_;
  std::shared_ptr<const WorkflowDef> def_;
  DurationMs job_;
  Rng rng_{3};
  int ids_ = 0;
  std::unique_ptr<AgentStore> store_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Scheduler> sched_;
  std::multimap<TimeMs, AttemptKey> running_;
};

class ScheduleWeek : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("outpost_sched_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  // Monday 2026-11-23 00:00 in Berlin to Monday 2026-11-30 00:00; the agent is down from
  // Wednesday 01:00 to Friday 10:00, across the Wednesday, Thursday and Friday 02:00 ticks.
  Site Week(const std::string& schedule, DurationMs job = 10 * 60'000) {
    auto def = Def("name: backup\nschedule: " + schedule + "\ntasks:\n  - id: dump\n    run: [dump]\n");
    Site site(&clock_, dir_.string(), def, job);
    clock_.Set(At("2026-11-23T00:00:00+01:00"));
    site.Up();
    site.RunUntil(At("2026-11-25T01:00:00+01:00"));
    site.Down();
    site.RunUntil(At("2026-11-27T10:00:00+01:00"));
    site.Up();
    site.RunUntil(At("2026-11-30T00:00:00+01:00"));
    return site;
  }

  ManualClock clock_;
  std::filesystem::path dir_;
};

const std::vector<std::string> kOnTime = {
    "schedule 2026-11-23T02:00:00+01:00", "schedule 2026-11-24T02:00:00+01:00",
    "schedule 2026-11-28T02:00:00+01:00", "schedule 2026-11-29T02:00:00+01:00"};

std::vector<std::string> With(std::vector<std::string> extra) {
  std::vector<std::string> out = {kOnTime[0], kOnTime[1]};
  out.insert(out.end(), extra.begin(), extra.end());
  out.push_back(kOnTime[2]);
  out.push_back(kOnTime[3]);
  return out;
}

TEST_F(ScheduleWeek, SkipRunsNoMissedTick) {
  Site s = Week("{cron: '0 2 * * *', timezone: Europe/Berlin, catch_up: skip}");
  EXPECT_EQ(s.fired, kOnTime);
  ASSERT_EQ(s.skipped.size(), 1u);
  EXPECT_EQ(s.skipped[0],
            "3 missed tick(s) from 2026-11-25T02:00:00+01:00 not run (catch_up: skip)");
}

TEST_F(ScheduleWeek, LatestRunsTheNewestMissedTickOnce) {
  Site s = Week("{cron: '0 2 * * *', timezone: Europe/Berlin, catch_up: latest}");
  EXPECT_EQ(s.fired, With({"schedule 2026-11-27T02:00:00+01:00 (catch-up)"}));
  ASSERT_EQ(s.skipped.size(), 1u);
  EXPECT_NE(s.skipped[0].find("2 missed tick(s)"), std::string::npos) << s.skipped[0];
}

TEST_F(ScheduleWeek, AllRunsTheNewestMissedTicksUpToTheCap) {
  Site s = Week("{cron: '0 2 * * *', timezone: Europe/Berlin, catch_up: all, catch_up_max: 2, overlap: allow}");
  EXPECT_EQ(s.fired, With({"schedule 2026-11-26T02:00:00+01:00 (catch-up)",
                           "schedule 2026-11-27T02:00:00+01:00 (catch-up)"}));
  ASSERT_EQ(s.skipped.size(), 1u);
  EXPECT_NE(s.skipped[0].find("1 missed tick(s)"), std::string::npos) << s.skipped[0];
}

TEST_F(ScheduleWeek, AllWithRoomRunsEveryMissedTickOneAfterAnotherWhenQueued) {
  Site s = Week("{cron: '0 2 * * *', timezone: Europe/Berlin, catch_up: all, overlap: queue}");
  EXPECT_EQ(s.fired, With({"schedule 2026-11-25T02:00:00+01:00 (catch-up)",
                           "schedule 2026-11-26T02:00:00+01:00 (catch-up)",
                           "schedule 2026-11-27T02:00:00+01:00 (catch-up)"}));
  EXPECT_TRUE(s.skipped.empty());
  EXPECT_EQ(s.max_active, 1);  // queued ticks ran one after another
}

TEST_F(ScheduleWeek, ARunStillActiveAtTheShutdownIsResumedNotFiredAgain) {
  // The Tuesday 23:30 run takes 2 hours; the agent goes down at Wednesday 01:00 with it
  // running. It comes back interrupted (no retry policy: failed), and the next ticks fire.
  auto def = Def("name: backup\nschedule: {cron: '30 23 * * *', timezone: Europe/Berlin}\n"
                 "tasks:\n  - id: dump\n    run: [dump]\n");
  Site s(&clock_, dir_.string(), def, 2 * 3'600'000);
  clock_.Set(At("2026-11-24T12:00:00+01:00"));
  s.Up();
  s.RunUntil(At("2026-11-25T01:00:00+01:00"));
  s.Down();
  s.RunUntil(At("2026-11-25T01:05:00+01:00"));
  s.Up();
  s.RunUntil(At("2026-11-26T00:00:00+01:00"));
  EXPECT_EQ(s.fired, (std::vector<std::string>{"schedule 2026-11-24T23:30:00+01:00",
                                               "schedule 2026-11-25T23:30:00+01:00"}));
}

TEST(ScheduleCatchUp, AfterMonthsDownLatestRunsTheNewestTickNotAnAncientOne) {
  // A minutely schedule last handled 200 days ago (a gateway stored in a box, or a clock
  // that jumped): far more missed ticks than the walk looks at.
  ManualClock clock;
  clock.Set(At("2026-11-24T12:00:30Z"));
  Rng rng(1);
  Engine engine(clock, &rng, EngineOptions{4, 5000, "gw", {}, {}, {}});
  int ids = 0;
  Scheduler sched(clock, [&ids] { return "r" + std::to_string(++ids); });
  auto def = Def("name: m\nschedule: {cron: '* * * * *', catch_up: latest, grace: 10s}\n"
                 "tasks:\n  - id: a\n    run: [x]\n");
  ScheduleState old;
  old.last_tick = At("2026-05-08T12:00:00Z");
  auto tz = TimeZone::Load("UTC");
  ASSERT_TRUE(tz.ok());
  Effects fx;
  ASSERT_TRUE(sched.Set(def, *tz, old, &fx).ok());
  sched.Tick(engine, &fx);
  std::vector<std::string> fired, skipped;
  for (const auto& e : fx.events) {
    if (e.type == static_cast<uint8_t>(EventType::kScheduleFired)) fired.push_back(e.message);
    if (e.type == static_cast<uint8_t>(EventType::kScheduleSkipped)) skipped.push_back(e.message);
  }
  EXPECT_EQ(fired, (std::vector<std::string>{"schedule 2026-11-24T12:00:00+00:00 (catch-up)"}));
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped[0].rfind("at least ", 0), 0u) << skipped[0];
  EXPECT_EQ(sched.NextDeadline(), At("2026-11-24T12:01:00Z"));
}

TEST(ScheduleCatchUp, AClockSteppedBackFiresNothingAgain) {
  ManualClock clock;
  clock.Set(At("2026-11-24T09:30:00Z"));  // an hour before the last tick handled
  Rng rng(1);
  Engine engine(clock, &rng, EngineOptions{4, 5000, "gw", {}, {}, {}});
  Scheduler sched(clock, [] { return std::string("r1"); });
  auto def = Def("name: h\nschedule: {cron: '@hourly', catch_up: all, overlap: allow}\n"
                 "tasks:\n  - id: a\n    run: [x]\n");
  ScheduleState st;
  st.last_tick = At("2026-11-24T10:00:00Z");
  Effects fx;
  ASSERT_TRUE(sched.Set(def, *TimeZone::Load("UTC"), st, &fx).ok());
  for (const char* t : {"2026-11-24T09:45:00Z", "2026-11-24T10:00:00Z", "2026-11-24T10:59:59Z"}) {
    clock.Set(At(t));
    sched.Tick(engine, &fx);
  }
  EXPECT_TRUE(fx.events.empty());
  EXPECT_EQ(engine.active_runs(), 0u);
  clock.Set(At("2026-11-24T11:00:00Z"));
  sched.Tick(engine, &fx);
  std::vector<std::string> fired;
  for (const auto& e : fx.events) {
    if (e.type == static_cast<uint8_t>(EventType::kScheduleFired)) fired.push_back(e.message);
  }
  EXPECT_EQ(fired, (std::vector<std::string>{"schedule 2026-11-24T11:00:00+00:00"}));
}

class Overlap : public ScheduleWeek {
 protected:
  // Hourly for a day, each run taking 90 minutes.
  Site Day(const std::string& overlap, int concurrency = 0) {
    auto def = Def(std::string("name: backup\n") +
                   (concurrency ? "concurrency: " + std::to_string(concurrency) + "\n" : "") +
                   "schedule: {cron: '0 * * * *', overlap: " + overlap +
                   "}\ntasks:\n  - id: dump\n    run: [dump]\n");
    Site site(&clock_, dir_.string(), def, 90 * 60'000);
    clock_.Set(At("2026-11-23T00:00:30Z"));
    site.Up();
    site.RunUntil(At("2026-11-24T00:00:30Z"));
    return site;
  }
};

TEST_F(Overlap, SkipDropsTicksWhileARunIsActive) {
  Site s = Day("skip");
  EXPECT_EQ(s.fired.size(), 12u);  // 01:00, 03:00, ... 23:00
  EXPECT_EQ(s.skipped.size(), 12u);
  EXPECT_NE(s.skipped[0].find("a run is still active (overlap: skip)"), std::string::npos);
  EXPECT_EQ(s.max_active, 1);
}

TEST_F(Overlap, QueueRunsEveryTickOneAfterAnother) {
  Site s = Day("queue");
  // 24 ticks, 90 minutes each, back to back: 16 fit in the day, the rest wait.
  EXPECT_EQ(s.fired.size(), 16u);
  EXPECT_TRUE(s.skipped.empty());
  EXPECT_EQ(s.max_active, 1);
  EXPECT_EQ(s.fired[1], "schedule 2026-11-23T02:00:00+00:00 (catch-up)");
}

TEST_F(Overlap, AllowOverlapsUpToTheConcurrencyLimit) {
  Site s = Day("allow", 2);
  EXPECT_EQ(s.fired.size(), 24u);  // 90-minute runs hourly never need a third slot
  EXPECT_TRUE(s.skipped.empty());
  EXPECT_EQ(s.max_active, 2);
}

TEST_F(Overlap, AllowStopsAtTheConcurrencyLimit) {
  Site s = Day("allow", 1);
  EXPECT_EQ(s.fired.size(), 12u);
  ASSERT_EQ(s.skipped.size(), 12u);
  EXPECT_NE(s.skipped[0].find("concurrency limit"), std::string::npos) << s.skipped[0];
}

}  // namespace
}  // namespace outpost
