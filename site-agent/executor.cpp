#include "site-agent/executor.h"

#include <algorithm>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

extern char** environ;

namespace outpost {

Result<std::unique_ptr<ProcessExecutor>> ProcessExecutor::Create(Options options) {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigset_t current;
  pthread_sigmask(SIG_BLOCK, nullptr, &current);
  if (!sigismember(&current, SIGCHLD)) {
    return Status::FailedPrecondition("SIGCHLD must be blocked before creating the executor");
  }
  int fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) return Status::IoError(std::string("signalfd: ") + strerror(errno));
  std::unique_ptr<ProcessExecutor> ex(new ProcessExecutor(options));
  ex->sigfd_ = fd;
  return ex;
}

ProcessExecutor::~ProcessExecutor() {
  for (auto& [pid, p] : procs_) {
    if (p.pipe_fd >= 0) close(p.pipe_fd);
  }
  if (sigfd_ >= 0) close(sigfd_);
}

Result<int> ProcessExecutor::Start(const StartProcess& spec) {
  if (spec.argv.empty()) return Status::InvalidArgument("empty argv");
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Status::IoError(std::string("pipe: ") + strerror(errno));

  // Environment: the agent's own, overridden by the task's.
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const char* eq = strchr(*e, '=');
    if (eq) env[std::string(*e, static_cast<size_t>(eq - *e))] = eq + 1;
  }
  for (const auto& [k, v] : spec.env) env[k] = v;
  std::vector<std::string> env_strings;
  env_strings.reserve(env.size());
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, argv;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = spec.argv;
  for (auto& s : argv_copy) argv.push_back(s.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  if (!spec.workdir.empty()) posix_spawn_file_actions_addchdir_np(&fa, spec.workdir.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGCHLD);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_USEVFORK);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    std::string what = std::string(argv[0]) + ": " + strerror(rc);
    if (!spec.workdir.empty()) what += " (workdir '" + spec.workdir + "')";
    return Status::IoError(what);
  }
  fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
  const size_t cap = spec.output_cap > 0 ? std::min(spec.output_cap, options_.output_cap) : options_.output_cap;
  procs_[pid] = Proc{spec.key, fds[0], cap, {}, spec.keep_children};
  return pid;
}

void ProcessExecutor::Kill(const AttemptKey& key, int sig) {
  for (const auto& [pid, p] : procs_) {
    if (p.key == key) {
      kill(-pid, sig);
      return;
    }
  }
}

void ProcessExecutor::KillAll(int sig) {
  for (const auto& [pid, p] : procs_) kill(-pid, sig);
}

std::vector<int> ProcessExecutor::pipe_fds() const {
  std::vector<int> fds;
  for (const auto& [pid, p] : procs_) {
    if (p.pipe_fd >= 0) fds.push_back(p.pipe_fd);
  }
  return fds;
}

void ProcessExecutor::AppendOutput(Proc& p, const char* data, size_t n) {
  p.output.append(data, n);
  if (p.output.size() > 2 * p.cap) p.output.erase(0, p.output.size() - p.cap);
}

void ProcessExecutor::Drain(Proc& p) {
  if (p.pipe_fd < 0) return;
  char buf[16384];
  for (;;) {
    ssize_t n = read(p.pipe_fd, buf, sizeof buf);
    if (n > 0) {
      AppendOutput(p, buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {  // EOF: every writer closed
      close(p.pipe_fd);
      p.pipe_fd = -1;
    }
    return;  // EAGAIN or error: nothing more now
  }
}

void ProcessExecutor::OnPipeReadable(int fd) {
  for (auto& [pid, p] : procs_) {
    if (p.pipe_fd == fd) {
      Drain(p);
      return;
    }
  }
}

void ProcessExecutor::OnSignalReadable() {
  signalfd_siginfo info;
  while (read(sigfd_, &info, sizeof info) == sizeof info) {
  }
  for (;;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;
    auto it = procs_.find(pid);
    if (it == procs_.end()) continue;  // not ours (e.g. a helper of a test)
    Proc& p = it->second;
    Drain(p);
    if (p.pipe_fd >= 0) {  // a background child may hold the pipe open; stop reading
      close(p.pipe_fd);
      p.pipe_fd = -1;
    }
    ExitInfo ex;
    if (WIFEXITED(status)) ex.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) ex.signal = WTERMSIG(status);
    // The group outlives its leader when the task left processes behind (a `cmd &`, or a
    // child that ignored the SIGTERM of a timeout or cancel). The attempt is over: they are
    // killed now, so nothing of it runs on unseen — unless the task keeps its children.
    if (kill(-pid, 0) == 0) {
      if (p.keep_children) {
        ex.leftovers = "left-over processes kept running (keep_children)";
      } else {
        kill(-pid, SIGKILL);
        ex.leftovers = "left-over processes killed (process group)";
      }
    }
    if (p.output.size() > p.cap) p.output.erase(0, p.output.size() - p.cap);
    ex.output = std::move(p.output);
    exits_.emplace_back(p.key, std::move(ex));
    procs_.erase(it);
  }
}

void ProcessExecutor::TakeExits(std::vector<std::pair<AttemptKey, ExitInfo>>* out) {
  for (auto& e : exits_) out->push_back(std::move(e));
  exits_.clear();
}

bool KillOrphanGroup(int pgid, const std::string& run, const std::string& task, int attempt) {
  if (pgid <= 1) return false;
  std::ifstream in("/proc/" + std::to_string(pgid) + "/environ", std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string env = ss.str();  // empty while a new image is still being set up
  auto has = [&env](const std::string& kv) {
    size_t pos = env.find(kv);
    return pos != std::string::npos && (pos == 0 || env[pos - 1] == '\0') &&
           (pos + kv.size() == env.size() || env[pos + kv.size()] == '\0');
  };
  if (!has("OUTPOST_RUN_ID=" + run) || !has("OUTPOST_TASK_ID=" + task) ||
      !has("OUTPOST_ATTEMPT=" + std::to_string(attempt))) {
    return false;
  }
  return kill(-pgid, SIGKILL) == 0;
}

}  // namespace outpost
