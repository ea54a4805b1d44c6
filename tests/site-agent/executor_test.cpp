// ProcessExecutor tests with real processes. This binary has its own main() that blocks
// SIGCHLD before any thread exists, as outpost-agent's main() does.
#include "site-agent/executor.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace outpost {
namespace {

class ExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ProcessExecutor::Options o;
    o.output_cap = 1024;
    auto ex = ProcessExecutor::Create(o);
    ASSERT_TRUE(ex.ok()) << ex.status().ToString();
    ex_ = std::move(ex).value();
  }
  // Drives the executor's fds until `n` exits arrived or 10 s passed.
  std::vector<std::pair<AttemptKey, ExitInfo>> WaitExits(size_t n) {
    std::vector<std::pair<AttemptKey, ExitInfo>> out;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (out.size() < n && std::chrono::steady_clock::now() < until) {
      std::vector<pollfd> fds{{ex_->signal_fd(), POLLIN, 0}};
      for (int fd : ex_->pipe_fds()) fds.push_back({fd, POLLIN, 0});
      poll(fds.data(), fds.size(), 100);
      for (size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents) ex_->OnPipeReadable(fds[i].fd);
      }
      if (fds[0].revents) ex_->OnSignalReadable();
      ex_->TakeExits(&out);
    }
    return out;
  }
  StartProcess Spec(std::vector<std::string> argv) {
    StartProcess s;
    s.key = {"run", "task", 1};
    s.argv = std::move(argv);
    return s;
  }
  std::unique_ptr<ProcessExecutor> ex_;
};

TEST_F(ExecutorTest, CapturesExitCodeOutputAndEnvironment) {
  auto s = Spec({"/bin/sh", "-c", "echo out; echo err >&2; echo $MY_VAR; pwd; exit 7"});
  s.env = {{"MY_VAR", "hello"}};
  s.workdir = "/tmp";
  ASSERT_TRUE(ex_->Start(s).ok());
  auto exits = WaitExits(1);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].first, s.key);
  EXPECT_EQ(exits[0].second.exit_code, 7);
  EXPECT_EQ(exits[0].second.signal, 0);
  EXPECT_EQ(exits[0].second.output, "out\nerr\nhello\n/tmp\n");
}

// Running (a zombie waiting for whoever adopted it to reap it counts as gone).
bool Alive(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return false;
  const size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

// The pid a task wrote to `file`, once it is there (bounded wait).
pid_t ReadPid(const std::string& file) {
  for (int i = 0; i < 100; ++i) {
    std::ifstream in(file);
    pid_t pid = 0;
    if (in >> pid && pid > 0) return pid;
    usleep(20'000);
  }
  return 0;
}

TEST_F(ExecutorTest, AGrandchildThatIgnoresSigtermDiesWhenItsLeaderDoes) {
  const std::string file = "/tmp/outpost-exec-gc-" + std::to_string(getpid());
  auto s = Spec({"/bin/sh", "-c",
                 "(trap '' TERM; exec sleep 1001) & echo $! > " + file + "; sleep 1000"});
  ASSERT_TRUE(ex_->Start(s).ok());
  const pid_t gc = ReadPid(file);
  ASSERT_GT(gc, 0);
  ex_->Kill(s.key, SIGTERM);  // a cancel or a timeout: the leader goes, the grandchild stays
  auto exits = WaitExits(1);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].second.leftovers, "left-over processes killed (process group)");
  for (int i = 0; i < 100 && Alive(gc); ++i) usleep(20'000);
  // It was our grandchild: reparented to init, which reaps it once it is gone.
  EXPECT_FALSE(Alive(gc)) << "grandchild " << gc << " survived";
  std::remove(file.c_str());
}

TEST_F(ExecutorTest, BackgroundProcessesEndWithTheTaskUnlessItKeepsThem) {
  const std::string file = "/tmp/outpost-exec-bg-" + std::to_string(getpid());
  auto s = Spec({"/bin/sh", "-c", "sleep 1002 & echo $! > " + file});
  ASSERT_TRUE(ex_->Start(s).ok());
  auto exits = WaitExits(1);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].second.exit_code, 0);
  const pid_t bg = ReadPid(file);
  ASSERT_GT(bg, 0);
  for (int i = 0; i < 100 && Alive(bg); ++i) usleep(20'000);
  EXPECT_FALSE(Alive(bg));
  std::remove(file.c_str());

  auto keep = Spec({"/bin/sh", "-c", "sleep 1003 & echo $! > " + file});
  keep.keep_children = true;
  ASSERT_TRUE(ex_->Start(keep).ok());
  exits = WaitExits(1);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].second.leftovers, "left-over processes kept running (keep_children)");
  const pid_t daemon = ReadPid(file);
  ASSERT_GT(daemon, 0);
  EXPECT_TRUE(Alive(daemon));
  kill(daemon, SIGKILL);
  std::remove(file.c_str());
}

TEST_F(ExecutorTest, ACgroupCatchesProcessesThatLeftTheGroup) {
  const std::string own = ProcessExecutor::OwnCgroup();
  if (own.empty()) GTEST_SKIP() << "no cgroup v2 directory this test may write";
  const std::string root = own + "/outpost-executor-test-" + std::to_string(getpid());
  ProcessExecutor::Options o;
  o.cgroup_root = root;
  auto made = ProcessExecutor::Create(o);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  ex_ = std::move(made).value();
  EXPECT_STREQ(ex_->isolation(), "cgroup");
  const std::string file = "/tmp/outpost-exec-cg-" + std::to_string(getpid());
  // setsid: a new session and process group, out of reach of kill(-pgid).
  auto s = Spec({"/bin/sh", "-c", "setsid sleep 1004 & echo $! > " + file});
  ASSERT_TRUE(ex_->Start(s).ok());
  auto exits = WaitExits(1);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].second.leftovers, "1 left-over process(es) killed (cgroup)");
  const pid_t escaped = ReadPid(file);
  ASSERT_GT(escaped, 0);
  for (int i = 0; i < 100 && Alive(escaped); ++i) usleep(20'000);
  EXPECT_FALSE(Alive(escaped)) << "process " << escaped << " that left the group survived";
  // A cancel reaches it too, while the leader still runs.
  auto c = Spec({"/bin/sh", "-c", "setsid sh -c 'trap \"\" TERM; sleep 1005' & echo $! > " + file + "; sleep 1006"});
  ASSERT_TRUE(ex_->Start(c).ok());
  pid_t child = -1;
  for (int i = 0; i < 100 && child <= 0; ++i) {
    usleep(20'000);
    child = ReadPid(file);
  }
  ASSERT_GT(child, 0);
  ex_->Kill(c.key, SIGKILL);
  exits = WaitExits(1);
  ASSERT_EQ(exits.size(), 1u);
  for (int i = 0; i < 100 && Alive(child); ++i) usleep(20'000);
  EXPECT_FALSE(Alive(child));
  std::remove(file.c_str());
  ex_.reset();
  for (int i = 0; i < 100 && std::filesystem::exists(root); ++i) {
    for (const auto& e : std::filesystem::directory_iterator(root)) rmdir(e.path().c_str());
    rmdir(root.c_str());
    usleep(20'000);
  }
  EXPECT_FALSE(std::filesystem::exists(root));
}

TEST_F(ExecutorTest, KeepsOnlyTheTailOfLongOutput) {
  ASSERT_TRUE(ex_->Start(Spec({"/bin/sh", "-c", "seq 1 20000; echo LAST"})).ok());
  auto exits = WaitExits(1);
  ASSERT_EQ(exits.size(), 1u);
  const std::string& out = exits[0].second.output;
  EXPECT_EQ(out.size(), 1024u);
  EXPECT_EQ(out.substr(out.size() - 5), "LAST\n");
}

TEST_F(ExecutorTest, ATasksOwnOutputCapIsKeptWithinTheAgents) {
  auto small = Spec({"/bin/sh", "-c", "seq 1 20000; echo LAST"});
  small.output_cap = 100;
  auto big = Spec({"/bin/sh", "-c", "seq 1 20000; echo LAST"});
  big.key.task = "big";
  big.output_cap = 1 << 20;  // more than the agent allows: the agent's cap wins
  ASSERT_TRUE(ex_->Start(small).ok());
  ASSERT_TRUE(ex_->Start(big).ok());
  auto exits = WaitExits(2);
  ASSERT_EQ(exits.size(), 2u);
  for (const auto& [key, ex] : exits) {
    EXPECT_EQ(ex.output.size(), key.task == "big" ? 1024u : 100u) << key.task;
    EXPECT_EQ(ex.output.substr(ex.output.size() - 5), "LAST\n");
  }
}

TEST_F(ExecutorTest, MissingProgramAndWorkdirAreSpawnErrors) {
  auto r = ex_->Start(Spec({"/nonexistent/program"}));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("/nonexistent/program"), std::string::npos);
  auto s = Spec({"true"});
  s.workdir = "/nonexistent/dir";
  r = ex_->Start(s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("/nonexistent/dir"), std::string::npos);
}

TEST_F(ExecutorTest, KillSignalsTheWholeProcessGroup) {
  std::string pidfile = "/tmp/outpost_exec_test_" + std::to_string(getpid());
  auto s = Spec({"/bin/sh", "-c", "sleep 300 & echo $! > " + pidfile + "; wait"});
  auto pid = ex_->Start(s);
  ASSERT_TRUE(pid.ok());
  EXPECT_EQ(getpgid(*pid), *pid);  // its own group
  int bg = 0;
  for (int i = 0; i < 100 && bg == 0; ++i) {  // wait for the shell to write the pid
    std::ifstream in(pidfile);
    in >> bg;
    if (bg == 0) usleep(20000);
  }
  ASSERT_GT(bg, 0);
  EXPECT_EQ(getpgid(bg), *pid);  // the background child shares the group
  ex_->Kill(s.key, SIGTERM);
  auto exits = WaitExits(1);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].second.signal, SIGTERM);
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {  // reparented to init, then reaped
    gone = kill(bg, 0) != 0;
    if (!gone) usleep(10000);
  }
  EXPECT_TRUE(gone) << "background child " << bg << " survived the group kill";
  unlink(pidfile.c_str());
}

TEST_F(ExecutorTest, OrphanKillChecksTheEnvironmentFirst) {
  auto s = Spec({"sleep", "300"});
  s.env = {{"OUTPOST_RUN_ID", "r9"}, {"OUTPOST_TASK_ID", "t"}, {"OUTPOST_ATTEMPT", "2"}};
  auto pid = ex_->Start(s);
  ASSERT_TRUE(pid.ok());
  // posix_spawn returns when the child starts exec; its /proc environ is readable a
  // moment later. (An orphan found at agent restart is long past that point.)
  for (int i = 0; i < 500; ++i) {
    std::ifstream env("/proc/" + std::to_string(*pid) + "/environ");
    if (env.peek() != std::ifstream::traits_type::eof()) break;
    usleep(2000);
  }
  EXPECT_FALSE(KillOrphanGroup(*pid, "r9", "t", 1));   // wrong attempt: leave it
  EXPECT_FALSE(KillOrphanGroup(*pid, "r1", "t", 2));   // wrong run
  EXPECT_TRUE(KillOrphanGroup(*pid, "r9", "t", 2));
  auto exits = WaitExits(1);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].second.signal, SIGKILL);
}

}  // namespace
}  // namespace outpost

int main(int argc, char** argv) {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
