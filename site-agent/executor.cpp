#include "site-agent/executor.h"

#include <algorithm>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <pthread.h>
#include <linux/close_range.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <sstream>

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
  if (!options.cgroup_root.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options.cgroup_root, ec);
    if (ec || access((options.cgroup_root + "/cgroup.procs").c_str(), W_OK) != 0) {
      return Status::FailedPrecondition("cannot use " + options.cgroup_root +
                                        " as a cgroup v2 directory for task attempts");
    }
  }
  return ex;
}

size_t ProcessExecutor::SweepLeftoverCgroups() {
  if (options_.cgroup_root.empty()) return 0;
  size_t with_processes = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(options_.cgroup_root, ec)) {
    if (e.is_directory() && e.path().filename().string().rfind("attempt-", 0) == 0) {
      if (KillCgroup(e.path().string()) > 0) ++with_processes;
      cgroups_to_remove_.push_back(e.path().string());
    }
  }
  RemoveEmptyCgroups();
  return with_processes;
}

namespace {

bool WriteFile(const std::string& path, const char* text) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const ssize_t n = write(fd, text, strlen(text));
  close(fd);
  return n == static_cast<ssize_t>(strlen(text));
}

std::vector<pid_t> CgroupProcs(const std::string& cgroup) {
  std::vector<pid_t> pids;
  std::ifstream in(cgroup + "/cgroup.procs");
  pid_t p;
  while (in >> p) pids.push_back(p);
  return pids;
}

}  // namespace

size_t ProcessExecutor::KillCgroup(const std::string& cgroup) const {
  const auto pids = CgroupProcs(cgroup);
  if (pids.empty()) return 0;
  // cgroup.kill (Linux 5.14) kills every process in it at once, also ones forking now;
  // before that, each process listed.
  if (!WriteFile(cgroup + "/cgroup.kill", "1")) {
    for (pid_t p : pids) kill(p, SIGKILL);
  }
  return pids.size();
}

void ProcessExecutor::RemoveEmptyCgroups() {
  std::vector<std::string> still;
  for (const auto& cg : cgroups_to_remove_) {
    if (rmdir(cg.c_str()) != 0 && errno != ENOENT) still.push_back(cg);  // busy until they die
  }
  cgroups_to_remove_ = std::move(still);
}

ProcessExecutor::~ProcessExecutor() {
  // Killed leftovers take a moment to leave their cgroups: retry briefly, bounded.
  for (int i = 0; i < 20 && !cgroups_to_remove_.empty(); ++i) {
    RemoveEmptyCgroups();
    if (!cgroups_to_remove_.empty()) usleep(10'000);
  }
  if (!options_.cgroup_root.empty()) rmdir(options_.cgroup_root.c_str());  // if empty
  for (auto& [pid, p] : procs_) {
    if (p.pipe_fd >= 0) close(p.pipe_fd);
  }
  if (sigfd_ >= 0) close(sigfd_);
}

Result<ProcessExecutor::TaskUser> ProcessExecutor::LookupUser(const std::string& name) {
  struct passwd pw {}, *found = nullptr;
  std::vector<char> buf(16384);
  if (getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return Status::NotFound("task user '" + name + "' does not exist (the package creates "
                            "outpost-task; or useradd --system " + name + ")");
  }
  TaskUser u;
  u.name = name;
  u.uid = pw.pw_uid;
  u.gid = pw.pw_gid;
  u.home = pw.pw_dir ? pw.pw_dir : "/";
  if (u.uid == 0) return Status::InvalidArgument("task user '" + name + "' is root");
  int n = 64;
  std::vector<gid_t> groups(n);
  if (getgrouplist(name.c_str(), u.gid, groups.data(), &n) < 0) {
    groups.resize(n);
    getgrouplist(name.c_str(), u.gid, groups.data(), &n);
  }
  groups.resize(std::max(n, 0));
  u.groups = groups;
  if (geteuid() != 0) {
    // Without root, the agent needs CAP_SETUID and CAP_SETGID (bits 7 and 6) in effect.
    std::ifstream status("/proc/self/status");
    std::string line;
    unsigned long long eff = 0;
    while (std::getline(status, line)) {
      if (line.rfind("CapEff:", 0) == 0) eff = std::strtoull(line.c_str() + 7, nullptr, 16);
    }
    if ((eff & (1ull << 7)) == 0 || (eff & (1ull << 6)) == 0) {
      return Status::FailedPrecondition(
          "--task-user " + name + " needs the agent to run as root (or with CAP_SETUID and "
          "CAP_SETGID); drop task-user to run tasks as the agent's own user");
    }
  }
  return u;
}

std::string ProcessExecutor::OwnCgroup() {
  std::string rel, line, mount;
  std::ifstream cgroups("/proc/self/cgroup");
  while (std::getline(cgroups, line)) {
    if (line.rfind("0::", 0) == 0) rel = line.substr(3);
  }
  std::ifstream mounts("/proc/self/mountinfo");
  while (mount.empty() && std::getline(mounts, line)) {
    const auto dash = line.find(" - cgroup2 ");
    if (dash == std::string::npos) continue;
    std::istringstream fields(line.substr(0, dash));
    std::string f;
    for (int i = 0; i < 5 && fields >> f; ++i) {
      if (i == 4) mount = f;  // the mount point
    }
  }
  if (rel.empty() || mount.empty()) return "";
  const std::string base = mount + (rel == "/" ? "" : rel);
  if (access(base.c_str(), W_OK) != 0 || access((base + "/cgroup.procs").c_str(), W_OK) != 0) {
    return "";
  }
  return base;
}

std::map<std::string, std::string> ProcessExecutor::BaseEnv() const {
  std::map<std::string, std::string> env;
  env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  env["LANG"] = "C.UTF-8";
  if (options_.user) {
    env["HOME"] = options_.user->home;
    env["USER"] = env["LOGNAME"] = options_.user->name;
  } else {
    for (const char* k : {"HOME", "USER", "LOGNAME"}) {
      if (const char* v = getenv(k)) env[k] = v;
    }
  }
  if (const char* tz = getenv("TZ")) env["TZ"] = tz;
  for (const auto& k : options_.pass_env) {
    if (const char* v = getenv(k.c_str())) env[k] = v;
  }
  return env;
}

void ProcessExecutor::RemoveRunDir(const std::string& run) const {
  if (options_.task_root.empty() || run.empty() || run.find('/') != std::string::npos ||
      run == "." || run == "..") {
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(options_.task_root + "/" + run, ec);
}

namespace {

// argv[0] as execve needs it: a path, found on PATH when it has no '/'.
std::string Resolve(const std::string& prog, const std::string& path) {
  if (prog.find('/') != std::string::npos) return prog;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t colon = path.find(':', pos);
    std::string dir = path.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos);
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + prog;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string::npos) break;
    pos = colon + 1;
  }
  return prog;
}

}  // namespace

Result<int> ProcessExecutor::Start(const StartProcess& spec) {
  if (spec.argv.empty()) return Status::InvalidArgument("empty argv");
  std::string workdir = spec.workdir;
  if (workdir.empty() && !options_.task_root.empty() && !spec.key.run.empty() &&
      spec.key.run.find('/') == std::string::npos) {
    workdir = options_.task_root + "/" + spec.key.run;
    if (mkdir(workdir.c_str(), 0700) != 0 && errno != EEXIST) {
      return Status::IoError("cannot make the run's work directory " + workdir + ": " +
                             strerror(errno));
    }
    if (options_.user && chown(workdir.c_str(), options_.user->uid, options_.user->gid) != 0) {
      return Status::IoError("cannot give " + workdir + " to the task user: " + strerror(errno));
    }
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Status::IoError(std::string("pipe: ") + strerror(errno));

  // Environment: the minimal base, then the task's own (docs/workflows.md, "Environment").
  std::map<std::string, std::string> env = BaseEnv();
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

  pid_t pid = -1;
  int rc = 0;
  std::string cgroup;
  if (!options_.cgroup_root.empty()) {
    RemoveEmptyCgroups();
    cgroup = options_.cgroup_root + "/attempt-" + std::to_string(getpid()) + "-" +
             std::to_string(++cgroup_seq_);
    bool made = mkdir(cgroup.c_str(), 0755) == 0;
    if (!made && errno == ENOENT) {
      // Someone removed the (empty) directory of this agent's attempts: make it again.
      std::error_code ec;
      std::filesystem::create_directories(options_.cgroup_root, ec);
      made = !ec && mkdir(cgroup.c_str(), 0755) == 0;
    }
    if (!made) {
      ++cgroup_fallbacks_;  // this attempt runs in its process group only
      cgroup.clear();
    }
  }
  if (options_.user || !cgroup.empty()) {
    rc = Spawn(options_.user ? &*options_.user : nullptr, cgroup,
               Resolve(argv_copy[0], env["PATH"]), argv, envp, workdir, fds[1], &pid);
    if (rc != 0 && !cgroup.empty()) rmdir(cgroup.c_str());
  } else {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    if (!workdir.empty()) posix_spawn_file_actions_addchdir_np(&fa, workdir.c_str());
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
    // The task's PATH, not the agent's, finds the program.
    rc = posix_spawn(&pid, Resolve(argv_copy[0], env["PATH"]).c_str(), &fa, &attr, argv.data(),
                     envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
  }
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    std::string what = std::string(argv[0]) + ": " + strerror(rc);
    if (!workdir.empty()) what += " (workdir '" + workdir + "')";
    return Status::IoError(what);
  }
  fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
  const size_t cap = spec.output_cap > 0 ? std::min(spec.output_cap, options_.output_cap) : options_.output_cap;
  procs_[pid] = Proc{spec.key, fds[0], cap, {}, spec.keep_children, cgroup};
  return pid;
}

namespace {

// The 32-bit id calls where the architecture has both (armhf's plain ones take 16 bits).
#ifdef SYS_setuid32
constexpr long kSysSetgroups = SYS_setgroups32, kSysSetgid = SYS_setgid32, kSysSetuid = SYS_setuid32;
#else
constexpr long kSysSetgroups = SYS_setgroups, kSysSetgid = SYS_setgid, kSysSetuid = SYS_setuid;
#endif

// What the child of Spawn needs, prepared before it exists: it allocates nothing.
struct ChildSetup {
  int cg_fd = -1;  // the attempt cgroup's cgroup.procs, or -1
  int devnull = -1;
  int out_fd = -1;
  int err_fd = -1;  // the close-on-exec pipe an error before exec goes back through
  const char* workdir = nullptr;
  const ProcessExecutor::TaskUser* user = nullptr;
  const char* path = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
};

// The child, between vfork and exec. It shares the agent's memory (and runs on its
// stack) until exec, so it calls only the kernel: setgroups, setgid and setuid as raw
// system calls, because glibc's wrappers would apply them to every thread of the agent.
// Into the attempt's cgroup first (before anything could fork), its own process group,
// default signals, the pipe as stdout and stderr, the work directory, then the task
// user's groups, gid and uid (in that order: after setuid nothing else could be changed),
// every descriptor of the agent's close-on-exec, exec.
[[noreturn]] __attribute__((noinline)) void ExecChild(const ChildSetup& c) {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGCHLD}) sigaction(sig, &dfl, nullptr);
  int e = 0;
  const ProcessExecutor::TaskUser* u = c.user;
  if ((c.cg_fd >= 0 && write(c.cg_fd, "0", 1) != 1) || setpgid(0, 0) != 0 || c.devnull < 0 ||
      dup2(c.devnull, 0) < 0 || dup2(c.out_fd, 1) < 0 || dup2(c.out_fd, 2) < 0 ||
      (c.workdir && chdir(c.workdir) != 0) ||
      (u && (syscall(kSysSetgroups, u->groups.size(), u->groups.data()) != 0 ||
             syscall(kSysSetgid, u->gid) != 0 || syscall(kSysSetuid, u->uid) != 0))) {
    e = errno;
  } else {
    // No descriptor of the agent's reaches the task, whoever opened it without
    // O_CLOEXEC (the HTTP listener's sockets do): all close at exec.
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
      for (int fd = 3; fd < 65536; ++fd) fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(c.path, c.argv, c.envp);
    e = errno;
  }
  if (e == 0) e = EIO;  // the parent takes 0 for "exec happened"
  ssize_t ignored = write(c.err_fd, &e, sizeof e);
  (void)ignored;
  _exit(127);
}

// vfork and the child; alone in its function, so nothing of the caller lives across the
// call that returns twice. No signal handler may run in the child on the agent's stack:
// everything is blocked around the vfork (the child unblocks right before exec, with
// default dispositions). Returns the pid, or -1 with *error set.
__attribute__((noinline)) pid_t VforkExec(const ChildSetup& c, int* error) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = vfork();
  if (pid == 0) ExecChild(c);
  *error = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return pid;
}

}  // namespace

// vfork, so the agent's memory is not copied for each attempt (a fork of an agent with
// RocksDB and ZeroMQ mapped cost ~0.3 ms of page tables, and the child's copy-on-write
// faults more, per task); posix_spawn does the same where no cgroup or user is needed.
// An error before exec comes back as its errno through a close-on-exec pipe.
int ProcessExecutor::Spawn(const TaskUser* u, const std::string& cgroup, const std::string& path,
                           std::vector<char*>& argv, std::vector<char*>& envp,
                           const std::string& workdir, int out_fd, pid_t* pid_out) {
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) return errno;
  ChildSetup c;
  c.devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  c.cg_fd = cgroup.empty() ? -1 : open((cgroup + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
  if (!cgroup.empty() && c.cg_fd < 0) {
    const int e = errno;
    close(err_pipe[0]);
    close(err_pipe[1]);
    if (c.devnull >= 0) close(c.devnull);
    return e;
  }
  c.out_fd = out_fd;
  c.err_fd = err_pipe[1];
  c.workdir = workdir.empty() ? nullptr : workdir.c_str();
  c.user = u;
  c.path = path.c_str();
  c.argv = argv.data();
  c.envp = envp.data();
  int fork_errno = 0;
  const pid_t pid = VforkExec(c, &fork_errno);
  const int devnull = c.devnull, cg_fd = c.cg_fd;
  if (pid < 0) {
    close(err_pipe[0]);
    close(err_pipe[1]);
    if (devnull >= 0) close(devnull);
    if (cg_fd >= 0) close(cg_fd);
    return fork_errno;
  }
  close(err_pipe[1]);
  if (devnull >= 0) close(devnull);
  if (cg_fd >= 0) close(cg_fd);
  // Also in the parent, so the group exists before a Kill could name it.
  setpgid(pid, pid);
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(err_pipe[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  close(err_pipe[0]);
  if (n == sizeof child_errno) {
    int status = 0;
    waitpid(pid, &status, 0);
    return child_errno;
  }
  *pid_out = pid;
  return 0;
}

void ProcessExecutor::Kill(const AttemptKey& key, int sig) {
  for (const auto& [pid, p] : procs_) {
    if (p.key == key) {
      kill(-pid, sig);
      // The cgroup also holds processes that left the group (setsid, a double fork).
      if (!p.cgroup.empty()) {
        if (sig == SIGKILL) {
          KillCgroup(p.cgroup);
        } else {
          for (pid_t q : CgroupProcs(p.cgroup)) kill(q, sig);
        }
      }
      return;
    }
  }
}

void ProcessExecutor::KillAll(int sig) {
  for (const auto& [pid, p] : procs_) {
    kill(-pid, sig);
    if (!p.cgroup.empty()) {
      for (pid_t q : CgroupProcs(p.cgroup)) kill(q, sig);
    }
  }
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
    if (!p.cgroup.empty()) {
      // The cgroup sees every process the attempt started, in its group or not.
      const size_t left = CgroupProcs(p.cgroup).size();
      if (left > 0 && p.keep_children) {
        ex.leftovers = std::to_string(left) + " left-over process(es) kept running (keep_children)";
      } else if (left > 0) {
        kill(-pid, SIGKILL);
        KillCgroup(p.cgroup);
        ex.leftovers = std::to_string(left) + " left-over process(es) killed (cgroup)";
      }
      cgroups_to_remove_.push_back(p.cgroup);
      RemoveEmptyCgroups();
    } else if (kill(-pid, 0) == 0) {
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

namespace outpost {

int KillOrphanAttempt(const std::string& run, const std::string& task, int attempt) {
  int killed = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const long pid = std::strtol(name.c_str(), nullptr, 10);
    if (pid <= 1 || pid > INT32_MAX || pid == getpid()) continue;
    // Only group leaders: every attempt is spawned as the leader of its own group. Not
    // session leaders: an attempt never calls setsid, so such a process is a daemon one
    // of its descendants started (with keep_children, meant to outlive it).
    if (getpgid(static_cast<pid_t>(pid)) != static_cast<pid_t>(pid)) continue;
    if (getsid(static_cast<pid_t>(pid)) == static_cast<pid_t>(pid)) continue;
    if (KillOrphanGroup(static_cast<int>(pid), run, task, attempt)) ++killed;
  }
  return killed;
}

}  // namespace outpost
