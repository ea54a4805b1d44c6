// Integration tests: the real outpost-agent and outpostctl binaries, real processes,
// RocksDB on disk, the control socket. Waits are bounded polls, never bare sleeps.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <functional>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/protocol/control.h"

namespace outpost {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

class AgentProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    dir_ = fs::temp_directory_path() /
           ("outpost_it_" + std::to_string(getpid()) + "_" + std::to_string(++n));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (pid_ > 0) StopAgent(SIGKILL);
    if (!HasFailure()) fs::remove_all(dir_);
    else std::cerr << "agent data and log kept in " << dir_ << "\n";
  }

  std::string DataDir() const { return (dir_ / "agent").string(); }
  std::string Socket() const { return DataDir() + "/agent.sock"; }

  void StartAgent(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {OUTPOST_AGENT_BIN, "--data-dir", DataDir(), "--site", "it",
                                     "--kill-grace-ms", "300", "--max-parallel", "4"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      std::string log = (dir_ / "agent.log").string();
      freopen(log.c_str(), "a", stdout);
      freopen(log.c_str(), "a", stderr);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(OUTPOST_AGENT_BIN, argv.data());
      _exit(127);
    }
    for (int i = 0; i < 500; ++i) {  // up to ~10 s
      if (ControlCall(Socket(), {{"op", "status"}}, 1000).ok()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL() << "agent did not come up; see " << dir_ / "agent.log";
  }
  int StopAgent(int sig) {
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  json Call(const json& req, int timeout_ms = 10000) {
    auto r = ControlCall(Socket(), req, timeout_ms);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : json::object();
  }
  std::string StartRun(const std::string& yaml, json params = json::object()) {
    json r = Call({{"op", "run.start"}, {"source", yaml}, {"file", "test.yaml"}, {"params", params}});
    EXPECT_TRUE(r.value("ok", false)) << r.dump();
    return r.value("id", "");
  }
  json WaitRun(const std::string& id) {
    json r = Call({{"op", "run.wait"}, {"id", id}}, 60000);
    return r.value("run", json::object());
  }
  json Task(const json& run, const std::string& id) {
    for (const auto& t : run["tasks"]) {
      if (t["id"] == id) return t;
    }
    ADD_FAILURE() << "no task " << id << " in " << run.dump();
    return json::object();
  }
  // Polls run.show until `task` is in `state` (up to ~10 s).
  bool WaitTaskState(const std::string& run, const std::string& task, const std::string& state) {
    for (int i = 0; i < 500; ++i) {
      json r = Call({{"op", "run.show"}, {"id", run}});
      if (r.contains("run") && Task(r["run"], task)["state"] == state) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  static bool WaitGone(pid_t pid) {
    for (int i = 0; i < 300; ++i) {
      if (kill(pid, 0) != 0) return true;
      std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
      std::string s;
      std::getline(stat, s);
      auto close_paren = s.rfind(')');
      if (close_paren != std::string::npos && s.size() > close_paren + 2 && s[close_paren + 2] == 'Z') {
        return true;  // a zombie waiting for init to reap it is dead enough
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  int ReadPid(const std::string& file) {
    for (int i = 0; i < 500; ++i) {
      std::ifstream in(file);
      int pid = 0;
      if (in >> pid && pid > 0) return pid;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return 0;
  }
  int Ctl(const std::string& args, std::string* out) {
    std::string file = (dir_ / "ctl.out").string();
    std::string cmd = std::string(OUTPOSTCTL_BIN) + " --local --data-dir " + DataDir() + " " +
                      args + " > " + file + " 2>&1";
    int rc = system(cmd.c_str());
    std::ifstream in(file);
    std::stringstream ss;
    ss << in.rdbuf();
    *out = ss.str();
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  }

  fs::path dir_;
  pid_t pid_ = -1;
};

class AgentCrashTest : public AgentProcessTest, public ::testing::WithParamInterface<bool> {};

// Twice: with the running attempt's pid written (the group commit's delay passed) and with
// the agent killed before it was (found at restart by the attempt's environment).
TEST_P(AgentCrashTest, SigkillMidRunThenRestartFinishesWithoutRerunningSucceededTasks) {
  const bool pid_written = GetParam();
  StartAgent({"--pid-write-delay-ms", pid_written ? "0" : "3600000"});
  const std::string marks = (dir_ / "marks").string();
  const std::string pidfile = (dir_ / "slow.pid").string();
  const std::string yaml = R"(
name: crash
tasks:
  - id: first
    shell: echo "first $OUTPOST_ATTEMPT" >> )" + marks + R"(
  - id: slow
    needs: [first]
    shell: |
      echo "slow $OUTPOST_ATTEMPT" >> )" + marks + R"(
      if [ "$OUTPOST_ATTEMPT" = 1 ]; then echo $$ > )" + pidfile + R"(; exec sleep 300; fi
    retry: {max: 2, backoff: 100ms}
  - id: last
    needs: [slow]
    shell: echo "last $OUTPOST_ATTEMPT" >> )" + marks + R"(
)";
  const std::string id = StartRun(yaml);
  ASSERT_TRUE(WaitTaskState(id, "slow", "running"));
  const int slow_pid = ReadPid(pidfile);
  ASSERT_GT(slow_pid, 0);

  int status = StopAgent(SIGKILL);
  ASSERT_TRUE(WIFSIGNALED(status));
  ASSERT_EQ(kill(slow_pid, 0), 0) << "the attempt should outlive the killed agent";

  StartAgent();
  json run = WaitRun(id);
  EXPECT_EQ(run["state"], "succeeded") << run.dump(2);
  EXPECT_EQ(Task(run, "first")["attempts"], 1);
  EXPECT_EQ(Task(run, "slow")["attempts"], 2);
  EXPECT_EQ(Task(run, "last")["attempts"], 1);
  EXPECT_TRUE(WaitGone(slow_pid)) << "the interrupted attempt's process group was not killed";

  std::ifstream in(marks);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), "first 1\nslow 1\nslow 2\nlast 1\n");
  json st = Call({{"op", "status"}})["status"];
  EXPECT_EQ(st["counters"]["attempts_interrupted"], 1);
  EXPECT_EQ(st["counters"]["orphans_killed"], 1);
}

INSTANTIATE_TEST_SUITE_P(PidWrittenOrNot, AgentCrashTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "PidWritten" : "PidLost"; });

TEST_F(AgentProcessTest, TimeoutKillsTheWholeProcessGroup) {
  StartAgent();
  const std::string pidfile = (dir_ / "bg.pid").string();
  const std::string id = StartRun(R"(
name: timeout
tasks:
  - id: hang
    shell: "trap '' TERM; sleep 300 & echo $! > )" + pidfile + R"(; wait; wait"
    timeout: 300ms
)");
  const int bg = ReadPid(pidfile);
  ASSERT_GT(bg, 0);
  json run = WaitRun(id);
  EXPECT_EQ(run["state"], "failed");
  json t = Task(run, "hang");
  EXPECT_EQ(t["state"], "failed");
  EXPECT_EQ(t["signal"], SIGKILL) << "the shell ignores TERM, so KILL must follow the grace";
  EXPECT_NE(t["message"].get<std::string>().find("timed out"), std::string::npos);
  EXPECT_TRUE(WaitGone(bg)) << "background child survived the timeout";
}

// A timeout whose task leaves a TERM-ignoring child behind: the child is killed when the
// task's own process ends, and the failed attempt's message says so, as a succeeded
// task's does.
TEST_F(AgentProcessTest, ATimedOutTaskSaysItsLeftoversWereKilled) {
  StartAgent();
  const std::string pidfile = (dir_ / "grandchild.pid").string();
  const std::string id = StartRun(R"(
name: timeout
tasks:
  - id: hang
    shell: "(trap '' TERM; exec sleep 1001) & echo $! > )" + pidfile + R"(; sleep 1000"
    timeout: 300ms
)");
  const int bg = ReadPid(pidfile);
  ASSERT_GT(bg, 0);
  json run = WaitRun(id);
  json t = Task(run, "hang");
  EXPECT_EQ(t["state"], "failed");
  const std::string message = t["message"].get<std::string>();
  EXPECT_NE(message.find("timed out; "), std::string::npos) << message;
  EXPECT_NE(message.find("left-over process"), std::string::npos) << message;
  EXPECT_TRUE(WaitGone(bg)) << "the TERM-ignoring child survived the timeout";
  // A finished run has no gate to decide: a conflict (exit 5), not an unknown run.
  json ap = Call({{"op", "run.approve"}, {"id", id}, {"task", "hang"}});
  EXPECT_EQ(ap["code"], "conflict") << ap.dump();
  EXPECT_EQ(Call({{"op", "run.approve"}, {"id", "no-such-run"}, {"task", "x"}})["code"], "not_found");
}

TEST_F(AgentProcessTest, CancelKillsRunningTasksAndSkipsTheRest) {
  StartAgent();
  const std::string id = StartRun(R"(
name: cancel
tasks:
  - {id: long, run: [sleep, "300"]}
  - {id: after, run: ["true"], needs: [long]}
)");
  ASSERT_TRUE(WaitTaskState(id, "long", "running"));
  json r = Call({{"op", "run.cancel"}, {"id", id}});
  EXPECT_TRUE(r.value("ok", false)) << r.dump();
  json run = WaitRun(id);
  EXPECT_EQ(run["state"], "cancelled");
  EXPECT_EQ(Task(run, "long")["state"], "cancelled");
  EXPECT_EQ(Task(run, "after")["state"], "cancelled");
  // Cancelling a finished run is a no-op that says so.
  r = Call({{"op", "run.cancel"}, {"id", id}});
  EXPECT_TRUE(r.value("ok", false));
  EXPECT_EQ(r["state"], "cancelled");
}

TEST_F(AgentProcessTest, OutpostctlStartsWaitsShowsAndReportsFailure) {
  StartAgent();
  fs::path ok = dir_ / "ok.yaml", bad = dir_ / "bad.yaml", broken = dir_ / "broken.yaml";
  std::ofstream(ok) << "name: ok\nparams: {who: world}\ntasks:\n"
                       "  - {id: greet, shell: 'echo hello $OUTPOST_PARAM_WHO'}\n";
  std::ofstream(bad) << "name: bad\ntasks:\n  - {id: boom, shell: 'echo no; exit 4'}\n";
  std::ofstream(broken) << "name: broken\ntasks:\n  - {id: a, run: [x], needs: [ghost]}\n";
  std::string out;
  EXPECT_EQ(Ctl("run start " + ok.string() + " --param who=site --wait --json", &out), 0) << out;
  json run = json::parse(out.substr(out.find('{')));
  EXPECT_EQ(run["state"], "succeeded");
  EXPECT_EQ(Task(run, "greet")["exit_code"], 0);
  const std::string id = run["id"];
  EXPECT_EQ(Ctl("run logs " + id + " greet", &out), 0);
  EXPECT_EQ(out, "hello site\n");
  EXPECT_EQ(Ctl("run show " + id, &out), 0);
  EXPECT_NE(out.find("succeeded"), std::string::npos);
  EXPECT_EQ(Ctl("run list --json", &out), 0);
  EXPECT_NE(out.find(id), std::string::npos);

  EXPECT_EQ(Ctl("run start " + bad.string() + " --wait", &out), 1) << out;
  EXPECT_NE(out.find("failed"), std::string::npos);
  EXPECT_EQ(Ctl("workflow validate " + broken.string(), &out), 2);
  EXPECT_NE(out.find(broken.string() + ":3:31: task 'a': needs unknown task 'ghost'"),
            std::string::npos) << out;
  EXPECT_EQ(Ctl("run start " + ok.string() + " --param nope=1", &out), 2);
  EXPECT_NE(out.find("has no param 'nope'"), std::string::npos) << out;
  EXPECT_EQ(Ctl("run show no-such-run", &out), 4);  // not found, as through the hub
  EXPECT_EQ(Ctl("--json run show no-such-run", &out), 4);
  EXPECT_EQ(json::parse(out)["ok"], false) << out;  // with --json the error is JSON too
}

TEST_F(AgentProcessTest, ConfigFileIsValidatedAndUnknownKeysAreRefused) {
  auto run = [&](const std::string& args) {
    std::string cmd = std::string(OUTPOST_AGENT_BIN) + " " + args + " > " +
                      (dir_ / "cfg.out").string() + " 2>&1";
    int rc = system(cmd.c_str());
    std::ifstream in(dir_ / "cfg.out");
    std::stringstream ss;
    ss << in.rdbuf();
    return std::make_pair(WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, ss.str());
  };
  auto [rc, out] = run("--config " OUTPOST_SOURCE_DIR "/config/agent.conf --check-config");
  EXPECT_EQ(rc, 0) << out;
  fs::path bad = dir_ / "bad.conf";
  std::ofstream(bad) << "data-dir = /tmp/x\nmax-paralel = 3\n";
  std::tie(rc, out) = run("--config " + bad.string() + " --check-config");
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("max-paralel"), std::string::npos) << out;
  std::tie(rc, out) = run("--data-dir /tmp/x --max-parallel 0 --check-config");
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("max-parallel must be 1-1024"), std::string::npos) << out;
  std::tie(rc, out) = run("--help");
  EXPECT_EQ(rc, 0);
  EXPECT_NE(out.find("--kill-grace-ms"), std::string::npos) << out;
}

TEST_F(AgentProcessTest, HostileControlInputIsRefusedAndCounted) {
  StartAgent();
  auto fd = ConnectUnix(Socket());
  ASSERT_TRUE(fd.ok());
  std::string junk = "this is not json\n{\"op\": 42}\n[1,2]\n";
  ASSERT_EQ(write(*fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  std::string got;
  char buf[4096];
  while (std::count(got.begin(), got.end(), '\n') < 3) {
    ssize_t n = read(*fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, n);
  }
  close(*fd);
  EXPECT_EQ(std::count(got.begin(), got.end(), '\n'), 3) << got;
  EXPECT_NE(got.find("not a JSON object"), std::string::npos);
  EXPECT_NE(got.find("'op' must be a string"), std::string::npos);  // named, not guessed
  json r = Call({{"op", "run.start"}, {"source", "name: [unclosed"}, {"file", "x.yaml"}});
  EXPECT_FALSE(r.value("ok", true));
  EXPECT_NE(r["error"].get<std::string>().find("x.yaml:"), std::string::npos);
  // Wrongly typed fields are refused naming the field; the agent goes on.
  for (const auto& [req, field] : std::vector<std::pair<json, std::string>>{
           {{{"op", "run.approve"}, {"id", "x"}, {"task", "t"}, {"reject", "yes"}}, "'reject'"},
           {{{"op", "run.list"}, {"limit", "all"}}, "'limit'"},
           {{{"op", "run.logs"}, {"id", "x"}, {"task", "t"}, {"attempt", -1}}, "'attempt'"},
           {{{"op", "run.start"}, {"workflow", "w"}, {"params", {{"n", 1}}}}, "'params.n'"}}) {
    json bad = Call(req);
    EXPECT_FALSE(bad.value("ok", true)) << req.dump();
    EXPECT_NE(bad["error"].get<std::string>().find(field), std::string::npos) << bad.dump();
  }
  // A source sent to the socket is checked as a file is: its schedule's zone, and a
  // document that aliases would blow up, refused at once rather than walked for minutes.
  json tz = Call({{"op", "run.start"},
                  {"source", "name: w\nschedule: {cron: '0 2 * * *', timezone: Europe}\ntasks:\n"
                             "  - {id: a, run: [x]}\n"},
                  {"file", "tz.yaml"}});
  EXPECT_FALSE(tz.value("ok", true));
  EXPECT_NE(tz.value("error", "").find("tz.yaml:2:"), std::string::npos) << tz.dump();
  EXPECT_NE(tz.value("error", "").find("Europe"), std::string::npos) << tz.dump();
  std::string lol = "name: lol\na0: &a0 [x,x,x,x,x,x,x,x,x,x]\n";
  for (int i = 1; i < 10; ++i) {
    lol += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) lol += (k ? ",*a" : "*a") + std::to_string(i - 1);
    lol += "]\n";
  }
  json bomb = Call({{"op", "run.start"}, {"source", lol + "tasks:\n  - {id: t, run: [x]}\n"}, {"file", "lol.yaml"}});
  EXPECT_FALSE(bomb.value("ok", true));
  EXPECT_NE(bomb.value("error", "").find("expands to more than"), std::string::npos) << bomb.dump();
  json st = Call({{"op", "status"}})["status"];
  EXPECT_EQ(st["counters"]["bad_requests"], 7);
  EXPECT_EQ(st["counters"]["request_exceptions"], 0);
  struct stat sb;
  ASSERT_EQ(stat(Socket().c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);
}

// A 20,000-task file takes the better part of a second to validate: the agent does that
// on a thread of its own, so a status asked meanwhile is answered at once (while the
// validation is still in flight), and the start gets its answer when it is done.
TEST_F(AgentProcessTest, StatusIsAnsweredWhileALargeWorkflowIsValidated) {
  StartAgent();
  std::string yaml = "name: huge\ntasks:\n";
  for (int i = 0; i < 20000; ++i) {
    yaml += "  - id: t" + std::to_string(i) + "\n    shell: \"true\"\n";
    if (i > 0) yaml += "    needs: [t" + std::to_string(i - 1) + "]\n";
  }
  // Broken at the very end, so nothing runs: the error needs the whole file validated.
  yaml += "  - id: last\n    shell: \"true\"\n    needs: [missing]\n";
  auto fd = ConnectUnix(Socket());
  ASSERT_TRUE(fd.ok());
  const std::string line =
      json{{"op", "run.start"}, {"source", yaml}, {"file", "huge.yaml"}}.dump() + "\n";
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = write(*fd, line.data() + off, line.size() - off);
    ASSERT_GT(n, 0);
    off += static_cast<size_t>(n);
  }
  // Until the agent has taken the start in, status shows nothing waiting; then it shows
  // the validation in flight, answered while it runs.
  json v;
  for (int i = 0; i < 500; ++i) {
    v = Call({{"op", "status"}})["status"]["validation"];
    if (v.value("requests_waited", 0) == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(v.value("requests_waited", 0), 1) << v.dump();
  EXPECT_EQ(v.value("waiting", 0), 1) << "status was not answered during the validation: " << v.dump();
  std::string got;
  char buf[4096];
  for (int i = 0; i < 600 && got.find('\n') == std::string::npos; ++i) {
    pollfd pfd{*fd, POLLIN, 0};
    if (poll(&pfd, 1, 100) <= 0) continue;
    ssize_t n = read(*fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  close(*fd);
  json r = json::parse(got, nullptr, false);
  ASSERT_TRUE(r.is_object()) << got;
  EXPECT_FALSE(r.value("ok", true));
  EXPECT_NE(r.value("error", "").find("huge.yaml:"), std::string::npos) << got;
  EXPECT_NE(r.value("error", "").find("missing"), std::string::npos) << got;
  v = Call({{"op", "status"}})["status"]["validation"];
  EXPECT_EQ(v.value("parsed_background", 0), 1) << v.dump();
  EXPECT_EQ(v.value("waiting", -1), 0) << v.dump();
}

TEST_F(AgentProcessTest, TasksPublishOutputsThatDownstreamTasksRead) {
  StartAgent();
  const std::string id = StartRun(R"(
name: outputs
tasks:
  - id: build
    shell: |
      echo "version=1.2.3" >> "$OUTPOST_OUTPUT"
      echo "# a comment" >> "$OUTPOST_OUTPUT"
      echo "url=http://artifacts/app-1.2.3.tar" >> "$OUTPOST_OUTPUT"
  - id: ship
    run: [echo, "got {{ tasks.build.outputs.version }} from {{ tasks.build.outputs.url }} at {{ site.name }}"]
    needs: [build]
  - id: bad
    shell: echo "not a key value line" > "$OUTPOST_OUTPUT"
)");
  json run = WaitRun(id);
  EXPECT_EQ(run["state"], "failed");  // `bad` published garbage
  EXPECT_EQ(Task(run, "build")["outputs"]["version"], "1.2.3");
  EXPECT_EQ(Task(run, "ship")["state"], "succeeded");
  EXPECT_EQ(Task(run, "bad")["state"], "failed");
  EXPECT_NE(Task(run, "bad")["message"].get<std::string>().find("invalid $OUTPOST_OUTPUT"),
            std::string::npos);
  json logs = Call({{"op", "run.logs"}, {"id", id}, {"task", "ship"}});
  EXPECT_EQ(logs["output"], "got 1.2.3 from http://artifacts/app-1.2.3.tar at it\n");
  EXPECT_TRUE(fs::is_empty(DataDir() + "/outputs"));  // collected and removed
}

TEST_F(AgentProcessTest, RetentionTrimsOldestOutputToTheBudgetAndKeepsRunState) {
  StartAgent({"--output-budget", "6K"});
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    ids.push_back(StartRun("name: chatty\ntasks:\n  - id: talk\n    shell: head -c 2000 /dev/zero | tr '\\\\0' x\n"));
    ASSERT_EQ(WaitRun(ids.back())["state"], "succeeded");
  }
  std::string out;
  ASSERT_EQ(Ctl("retention trim --json", &out), 0) << out;
  json t = json::parse(out);
  EXPECT_EQ(t["runs"], 3);  // 6 x ~2 KB under a 6 KiB budget: the oldest three go
  EXPECT_LE(t["kept_bytes"].get<uint64_t>(), 6u * 1024);
  EXPECT_EQ(Ctl("run logs " + ids[0] + " talk", &out), 4);
  EXPECT_NE(out.find("removed by retention: over the output budget"), std::string::npos) << out;
  EXPECT_EQ(Ctl("run logs " + ids[5] + " talk", &out), 0);
  EXPECT_EQ(out.size(), 2000u);
  // The state is never trimmed.
  EXPECT_EQ(Ctl("run show " + ids[0] + " --json", &out), 0);
  EXPECT_EQ(json::parse(out)["state"], "succeeded");
  json st = Call({{"op", "status"}});
  EXPECT_EQ(st["status"]["retention"]["outputs_trimmed"], 3);
  EXPECT_GT(st["status"]["disk_bytes"].get<uint64_t>(), 0u);

  // With an age limit, every finished run older than it loses its output.
  StopAgent(SIGTERM);
  StartAgent({"--retain-output", "1ms"});
  ASSERT_EQ(Ctl("retention trim --json", &out), 0) << out;
  EXPECT_EQ(json::parse(out)["kept_bytes"], 0);
  EXPECT_EQ(Ctl("run logs " + ids[5] + " talk", &out), 4);
  EXPECT_NE(out.find("older than the retention age"), std::string::npos) << out;
  EXPECT_EQ(Ctl("retention trim", &out), 0);
  StopAgent(SIGTERM);
  StartAgent();
  EXPECT_EQ(Ctl("retention trim", &out), 5);  // conflict with how the agent is configured
  EXPECT_NE(out.find("no retention configured"), std::string::npos) << out;
}

TEST_F(AgentProcessTest, ABrokenFileInTheWorkflowDirectoryIsReportedAndTheRestLoad) {
  const fs::path wf = dir_ / "workflows";
  fs::create_directories(wf);
  std::ofstream(wf / "good.yaml") << "name: good\nschedule: '@daily'\ntasks:\n  - id: a\n    run: [true]\n";
  std::ofstream(wf / "broken.yaml") << "name: broken\ntasks:\n  - id: a\n    run: [true]\n    needs: [ghost]\n";
  std::ofstream(wf / "badzone.yaml")
      << "name: badzone\nschedule: {cron: '@daily', timezone: Mars/Olympus_Mons}\ntasks:\n  - id: a\n    run: [true]\n";
  // A region is not a zone: refused with the file, line and zone, never an abort.
  std::ofstream(wf / "region.yaml")
      << "name: region\nschedule: {cron: '@daily', timezone: Europe}\ntasks:\n  - id: a\n    run: [true]\n";
  std::ofstream(wf / "notes.txt") << "not a workflow";
  fs::create_directories(wf / "subdir.yaml");  // a directory named like a file
  StartAgent({"--workflows", wf.string()});
  json st = Call({{"op", "status"}})["status"];
  // A zone this machine cannot load makes the file invalid when it is loaded.
  EXPECT_EQ(st["counters"]["workflow_files_invalid"], 3);  // the directory is not a file
  EXPECT_EQ(st["counters"]["schedule_errors"], 0);
  EXPECT_EQ(st["schedules"], 1);
  EXPECT_EQ(st["local_workflows"], 1);
  std::ifstream log(dir_ / "agent.log");
  std::stringstream ss;
  ss << log.rdbuf();
  EXPECT_NE(ss.str().find("broken.yaml"), std::string::npos);
  EXPECT_NE(ss.str().find("needs unknown task 'ghost'"), std::string::npos) << ss.str();
  EXPECT_NE(ss.str().find("Mars/Olympus_Mons"), std::string::npos);
  EXPECT_NE(ss.str().find("region.yaml:2:"), std::string::npos) << ss.str();
  EXPECT_NE(ss.str().find("is a region, not a zone"), std::string::npos) << ss.str();
  json r = Call({{"op", "run.start"}, {"workflow", "good"}});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  EXPECT_EQ(WaitRun(r["id"])["state"], "succeeded");
  r = Call({{"op", "run.start"}, {"workflow", "broken"}});
  EXPECT_FALSE(r.value("ok", true));
}

// ---------------------------------------------------------------------------------------
// The example workflows in config/workflows/, run by name from the agent's --workflows
// directory on the real agent, with their params pointed into the test's directory.

class ExampleWorkflows : public AgentProcessTest {
 protected:
  void SetUp() override {
    AgentProcessTest::SetUp();
    StartAgent({"--workflows", std::string(OUTPOST_SOURCE_DIR) + "/config/workflows"});
  }
  std::string Start(const std::string& name, json params) {
    json r = Call({{"op", "run.start"}, {"workflow", name}, {"params", params}});
    EXPECT_TRUE(r.value("ok", false)) << r.dump();
    return r.value("id", "");
  }
  std::string P(const std::string& rel) { return (dir_ / rel).string(); }
  static std::string Read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
};

TEST_F(ExampleWorkflows, AreLoadedByNameWithTheirSchedules) {
  json r = Call({{"op", "workflow.list"}});
  std::map<std::string, json> by_name;
  for (const auto& w : r["workflows"]) by_name[w["name"]] = w;
  for (const char* n : {"hello", "log-rotation", "canary-rollout", "device-sweep", "nightly-backup"}) {
    ASSERT_TRUE(by_name.count(n)) << n << " missing from " << r.dump();
    EXPECT_EQ(by_name[n]["source"], "local");
  }
  EXPECT_EQ(by_name["nightly-backup"]["schedule"]["cron"], "0 2 * * *");
  EXPECT_EQ(by_name["nightly-backup"]["schedule"]["timezone"], "Europe/Berlin");
  EXPECT_FALSE(by_name["nightly-backup"]["schedule"]["next"].get<std::string>().empty());
  std::string out;
  EXPECT_EQ(Ctl("workflow schedule " OUTPOST_SOURCE_DIR
                "/config/workflows/nightly-backup.yaml --from 2026-11-24T00:00:00Z --count 3", &out), 0);
  EXPECT_EQ(out, "2026-11-24T02:00:00+01:00\n2026-11-25T02:00:00+01:00\n2026-11-26T02:00:00+01:00\n");
  EXPECT_EQ(Ctl("workflow schedule " OUTPOST_SOURCE_DIR "/config/workflows/hello.yaml", &out), 2);
  EXPECT_NE(out.find("has no schedule"), std::string::npos) << out;
}

TEST_F(ExampleWorkflows, LogRotationCompressesIdleLogsAndUploadsEachArchive) {
  fs::create_directories(P("logs"));
  for (const char* f : {"app.log", "gateway.log"}) {
    std::ofstream(P(std::string("logs/") + f)) << "line from " << f << "\n";
    ASSERT_EQ(system(("touch -d '3 hours ago' " + P(std::string("logs/") + f)).c_str()), 0);
  }
  std::ofstream(P("logs/fresh.log")) << "still being written\n";
  const std::string id = Start("log-rotation", {{"log_dir", P("logs")}, {"archive_dir", P("archive")},
                                                {"upload_dir", P("uplink")}});
  json run = WaitRun(id);
  ASSERT_EQ(run["state"], "succeeded") << run.dump(2);
  EXPECT_EQ(Task(run, "upload")["instances"], 2);
  EXPECT_EQ(Task(run, "rotate")["outputs"]["rotated"], "2");
  int uploaded = 0;
  for (const auto& e : fs::directory_iterator(P("uplink"))) {
    EXPECT_EQ(e.path().extension(), ".gz");
    ++uploaded;
  }
  EXPECT_EQ(uploaded, 2);
  EXPECT_TRUE(fs::is_empty(P("archive")));  // deleted only once stored
  EXPECT_EQ(fs::file_size(P("logs/app.log")), 0u);
  EXPECT_GT(fs::file_size(P("logs/fresh.log")), 0u);
  std::string out;
  ASSERT_EQ(Ctl("run logs " + id + " report", &out), 0);
  EXPECT_NE(out.find("2 log(s) rotated; 2 of 2 archive(s) uploaded"), std::string::npos) << out;
}

TEST_F(ExampleWorkflows, CanaryRolloutPromotesAfterApproval) {
  fs::create_directories(P("release"));
  std::ofstream(P("release/current")) << "2.4.0\n";
  const std::string id = Start("canary-rollout", {{"version", "2.4.1"}, {"release_dir", P("release")},
                                                  {"health_cmd", "true"}});
  ASSERT_TRUE(WaitTaskState(id, "approve", "awaiting_approval"));
  EXPECT_EQ(Read(P("release/canary")), "2.4.1\n");
  std::string out;
  ASSERT_EQ(Ctl("run approve " + id + " approve", &out), 0) << out;
  json run = WaitRun(id);
  EXPECT_EQ(run["state"], "succeeded") << run.dump(2);
  EXPECT_EQ(Read(P("release/current")), "2.4.1\n");
}

TEST_F(ExampleWorkflows, CanaryRolloutRollsBackWhenVerificationFails) {
  fs::create_directories(P("release"));
  std::ofstream(P("release/current")) << "2.4.0\n";
  // Healthy on the canary, unhealthy after the promotion.
  const std::string id = Start("canary-rollout", {{"version", "2.5.0"}, {"release_dir", P("release")},
                                                  {"health_cmd", "[ \"$OUTPOST_TASK_ID\" != verify ]"}});
  ASSERT_TRUE(WaitTaskState(id, "approve", "awaiting_approval"));
  std::string out;
  ASSERT_EQ(Ctl("run approve " + id + " approve", &out), 0) << out;
  json run = WaitRun(id);
  EXPECT_EQ(run["state"], "compensated") << run.dump(2);
  EXPECT_EQ(run["outcome"], "failed");
  EXPECT_EQ(Task(run, "compensate:promote")["state"], "succeeded");
  EXPECT_EQ(Task(run, "compensate:deploy-canary")["state"], "succeeded");
  EXPECT_EQ(Read(P("release/current")), "2.4.0\n");  // the previous release is back
  EXPECT_FALSE(fs::exists(P("release/canary")));
  // The undo ran newest first.
  EXPECT_LE(Task(run, "compensate:promote")["finished"].get<std::string>(),
            Task(run, "compensate:deploy-canary")["started"].get<std::string>());
}

TEST_F(ExampleWorkflows, CanaryRolloutRejectedCompensatesTheCanary) {
  const std::string id = Start("canary-rollout", {{"version", "3.0.0"}, {"release_dir", P("release")},
                                                  {"health_cmd", "true"}});
  ASSERT_TRUE(WaitTaskState(id, "approve", "awaiting_approval"));
  std::string out;
  ASSERT_EQ(Ctl("run approve " + id + " approve --reject", &out), 0) << out;
  json run = WaitRun(id);
  EXPECT_EQ(run["state"], "compensated") << run.dump(2);
  EXPECT_EQ(Task(run, "promote")["state"], "skipped");
  EXPECT_FALSE(fs::exists(P("release/canary")));
}

TEST_F(ExampleWorkflows, DeviceSweepReadsEveryDeviceAndReportsTheOnesThatFailed) {
  std::ofstream(P("devices.txt")) << "# PLCs on line 2\nplc-1\nplc-2\n\nplc-3\nmeter-7\nplc-dead\n";
  const std::string reader = P("read.sh");
  std::ofstream(reader) << "#!/bin/sh\ncase \"$1\" in *dead) exit 1;; esac\necho \"value of $1\"\n";
  fs::permissions(reader, fs::perms::owner_all);
  const std::string id = Start("device-sweep", {{"inventory", P("devices.txt")}, {"out_dir", P("readings")},
                                                {"read_cmd", reader}});
  json run = WaitRun(id);
  EXPECT_EQ(run["state"], "failed") << run.dump(2);  // one device never answered
  EXPECT_EQ(Task(run, "read")["instances"], 5);
  EXPECT_EQ(Task(run, "read[4]")["item"], "plc-dead");
  EXPECT_EQ(Task(run, "read[4]")["attempts"], 3);  // its own retries
  EXPECT_EQ(Task(run, "read[0]")["attempts"], 1);
  EXPECT_EQ(Read(P("readings/meter-7.reading")), "value of meter-7\n");
  EXPECT_EQ(Task(run, "report")["state"], "succeeded");
  EXPECT_EQ(Read(P("readings/summary")), "4 of 5 device(s) read, 1 did not answer\n");
}

// The shipped examples with hostile inventory lines and file names: every value stays a
// value (docs/workflows.md, "In shell, a value is never shell text"). Each hostile value,
// if a shell ran it, would create a *.pwned file beside the task's output file.
std::vector<std::string> Pwned(const fs::path& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    if (e.path().string().find("pwned") != std::string::npos &&
        e.path().string().find("readings") == std::string::npos &&
        e.path().string().find("uplink") == std::string::npos &&
        e.path().string().find("logs") == std::string::npos && e.path().extension() != ".txt") {
      found.push_back(e.path().string());
    }
  }
  return found;
}

const std::vector<std::string> kHostile = {
    "$(touch \"$OUTPOST_OUTPUT.pwned\")", "`touch \"$OUTPOST_OUTPUT.pwned\"`",
    "a;touch \"$OUTPOST_OUTPUT.pwned\"", "q' ; touch \"$OUTPOST_OUTPUT.pwned\" '",
    "\"dq\" && touch \"$OUTPOST_OUTPUT.pwned\"", "two  spaces | touch x.pwned"};

TEST_F(ExampleWorkflows, DeviceSweepWithAHostileInventoryRunsNothingItHolds) {
  {
    std::ofstream inv(P("devices.txt"));
    for (const auto& line : kHostile) inv << line << "\n";
    inv << "../../escape\n";
  }
  const std::string reader = P("read.sh");
  std::ofstream(reader) << "#!/bin/sh\nprintf 'value of %s\\n' \"$1\"\n";
  fs::permissions(reader, fs::perms::owner_all);
  const std::string id = Start("device-sweep", {{"inventory", P("devices.txt")}, {"out_dir", P("readings")},
                                                {"read_cmd", reader}});
  json run = WaitRun(id);
  EXPECT_EQ(run["state"], "succeeded") << run.dump(2);
  EXPECT_EQ(Task(run, "read")["instances"], static_cast<int>(kHostile.size() + 1));
  EXPECT_EQ(Pwned(dir_), std::vector<std::string>{});
  EXPECT_FALSE(fs::exists(P("escape.reading")));  // a line is a name, never a path
  // Each device got exactly its line as its one argument.
  std::set<std::string> readings, expected;
  for (const auto& e : fs::directory_iterator(P("readings"))) {
    if (e.path().extension() == ".reading") readings.insert(Read(e.path().string()));
  }
  for (const auto& line : kHostile) expected.insert("value of " + line + "\n");
  expected.insert("value of ../../escape\n");
  EXPECT_EQ(readings, expected);
  EXPECT_EQ(Read(P("readings/summary")), "7 of 7 device(s) read, 0 did not answer\n");
}

TEST_F(ExampleWorkflows, LogRotationWithHostileFileNamesRunsNothingTheyHold) {
  fs::create_directories(P("logs"));
  for (const auto& n : kHostile) {
    const std::string path = P("logs/" + n + ".log");
    std::ofstream(path) << "line\n";
    const auto old = fs::last_write_time(path) - std::chrono::hours(3);
    fs::last_write_time(path, old);
  }
  const std::string id = Start("log-rotation", {{"log_dir", P("logs")}, {"archive_dir", P("archive")},
                                                {"upload_dir", P("uplink")}});
  json run = WaitRun(id);
  ASSERT_EQ(run["state"], "succeeded") << run.dump(2);
  EXPECT_EQ(Task(run, "rotate")["outputs"]["rotated"], std::to_string(kHostile.size()));
  EXPECT_EQ(Task(run, "upload")["instances"], static_cast<int>(kHostile.size()));
  size_t uploaded = 0;
  for (const auto& e : fs::directory_iterator(P("uplink"))) {
    EXPECT_EQ(e.path().extension(), ".gz");
    ++uploaded;
  }
  EXPECT_EQ(uploaded, kHostile.size());
  EXPECT_EQ(Pwned(dir_), std::vector<std::string>{});
}

TEST_F(ExampleWorkflows, NightlyBackupArchivesVerifiesAndKeepsTheNewest) {
  fs::create_directories(P("data"));
  std::ofstream(P("data/state.db")) << "important";
  for (int i = 0; i < 3; ++i) {
    const std::string id = Start("nightly-backup", {{"source_dir", P("data")}, {"backup_dir", P("backups")},
                                                    {"keep", "2"}});
    json run = WaitRun(id);
    ASSERT_EQ(run["state"], "succeeded") << run.dump(2);
    EXPECT_EQ(Task(run, "verify")["outputs"]["sha256"].get<std::string>().size(), 64u);
  }
  int kept = 0;
  for (const auto& e : fs::directory_iterator(P("backups"))) kept += e.path().string().ends_with(".tar.gz");
  EXPECT_EQ(kept, 2);
}

}  // namespace
}  // namespace outpost

namespace outpost {
namespace {

// A full disk: new work is refused with disk_full and the agent stays up; what it already
// accepted waits in memory and is written and run when space returns; nothing is lost.
// Needs a small filesystem: a tmpfs mounted on the data directory (root only; skipped
// elsewhere).
TEST_F(AgentProcessTest, AFullDiskRefusesNewWorkAndResumesWhenSpaceReturns) {
  fs::create_directories(DataDir());
  if (geteuid() != 0 ||
      system(("mount -t tmpfs -o size=16m tmpfs " + DataDir() + " 2>/dev/null").c_str()) != 0) {
    GTEST_SKIP() << "needs root to mount a small tmpfs";
  }
  struct ScopeExit {
    std::function<void()> fn;
    ~ScopeExit() { fn(); }
  } unmount{[this] {
    if (pid_ > 0) StopAgent(SIGKILL);
    if (system(("umount " + DataDir()).c_str()) != 0) ADD_FAILURE() << "umount failed";
  }};
  StartAgent();
  const std::string before = StartRun("name: w\ntasks:\n  - id: a\n    run: [\"true\"]\n");
  EXPECT_EQ(Call({{"op", "run.wait"}, {"id", before}})["run"]["state"], "succeeded");
  // A run whose task is still running when the disk fills: its end cannot be written.
  const std::string busy = StartRun("name: w\ntasks:\n  - id: a\n    shell: sleep 1\n");
  ASSERT_TRUE(WaitTaskState(busy, "a", "running"));
  // Fill the filesystem.
  ASSERT_NE(system(("dd if=/dev/zero of=" + DataDir() + "/filler bs=64k 2>/dev/null").c_str()),
            -1);
  // The agent sees it at once: status says so and a new start is refused, not held (a
  // held start could be neither answered nor refused, and would run later anyway).
  json st = Call({{"op", "status"}})["status"];
  EXPECT_EQ(st["disk_full"], true) << st.dump();
  json refused = Call({{"op", "run.start"}, {"source", "name: w\ntasks:\n  - {id: a, run: [x]}\n"}});
  EXPECT_EQ(refused["ok"], false);
  EXPECT_EQ(refused["code"], "conflict");
  EXPECT_NE(refused["error"].get<std::string>().find("disk_full"), std::string::npos);
  // The running task ends meanwhile; its end is held in memory, retried every second.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(Call({{"op", "run.show"}, {"id", busy}})["run"]["state"], "running");
  // Space returns: the agent resumes by itself and the held end is written.
  fs::remove(DataDir() + "/filler");
  json runs;
  for (int i = 0; i < 200; ++i) {
    st = Call({{"op", "status"}})["status"];
    if (st["disk_full"] == false &&
        Call({{"op", "run.show"}, {"id", busy}})["run"]["state"] == "succeeded") {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(st["disk_full"], false);
  EXPECT_EQ(Call({{"op", "run.show"}, {"id", busy}})["run"]["state"], "succeeded");
  runs = Call({{"op", "run.list"}})["runs"];
  EXPECT_EQ(runs.size(), 2u);  // the first run and the busy one; the refused start made none
  const std::string after = StartRun("name: w\ntasks:\n  - id: a\n    run: [\"true\"]\n");
  EXPECT_EQ(Call({{"op", "run.wait"}, {"id", after}})["run"]["state"], "succeeded");
  EXPECT_EQ(Call({{"op", "run.show"}, {"id", before}})["run"]["state"], "succeeded");
}

}  // namespace
}  // namespace outpost
