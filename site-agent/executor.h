// Executor: starts and kills task processes and reports their exits.
//
// The interface is what the engine's driver needs; ProcessExecutor is the real one
// (posix_spawn, process groups, pipes, SIGCHLD through a signalfd), the simulator and
// tests provide others.
//
// ProcessExecutor contract:
//  - every attempt runs in its own process group (pgid = pid), stdin from /dev/null,
//    stdout and stderr merged into one pipe whose last `output_cap` bytes are kept;
//  - its environment is BaseEnv (minimal and documented, not the agent's own) plus the
//    task's; with a task user it runs as that user (setgroups, setgid, setuid before
//    exec) in a work directory of its run that the agent's data directory is not;
//  - Kill() signals the whole group;
//  - when the leader exits, processes left in its group are killed (SIGKILL) and the exit
//    says so (ExitInfo::leftovers), unless the task keeps its children;
//  - the process that owns a ProcessExecutor must have SIGCHLD blocked in every thread
//    (main() blocks it before anything starts a thread) so the signalfd sees it.
//
// Thread-safety: one owner thread.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "site-agent/engine.h"

namespace outpost {

class Executor {
 public:
  virtual ~Executor() = default;
  // Starts the process; returns its pid (which is also its process group id).
  virtual Result<int> Start(const StartProcess& spec) = 0;
  virtual void Kill(const AttemptKey& key, int signal) = 0;
  // Moves finished attempts into `out`.
  virtual void TakeExits(std::vector<std::pair<AttemptKey, ExitInfo>>* out) = 0;
};

class ProcessExecutor final : public Executor {
 public:
  // The unprivileged account tasks run as (--task-user), resolved at start.
  struct TaskUser {
    std::string name;
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // its supplementary groups
    std::string home;
  };
  struct Options {
    size_t output_cap = 64 * 1024;
    // Set: every attempt runs as this user (the agent must be root to switch).
    std::optional<TaskUser> user;
    // Set: an attempt without a workdir runs in TASK_ROOT/RUN_ID, made for the run and
    // owned by the task user (removed with RemoveRunDir when the run ends).
    std::string task_root;
    // Names of the agent's environment variables tasks also get (--task-env).
    std::vector<std::string> pass_env;
    // Set: a cgroup v2 directory the agent may manage (its own, delegated); every attempt
    // runs in a cgroup of its own under it, and leftovers are killed through the cgroup,
    // even ones that left the process group. Empty: process groups only.
    std::string cgroup_root;
  };
  // This process's own cgroup v2 directory (from /proc/self/cgroup, under the cgroup2
  // mount) when this process may make cgroups in it; "" otherwise.
  static std::string OwnCgroup();
  // The account `name`, with its groups; an error names what is missing.
  static Result<TaskUser> LookupUser(const std::string& name);
  // The minimal environment every task starts from (before its own and OUTPOST_*):
  // PATH, HOME, USER, LOGNAME, LANG, and TZ if the agent has one, then pass_env.
  std::map<std::string, std::string> BaseEnv() const;
  void RemoveRunDir(const std::string& run) const;
  static Result<std::unique_ptr<ProcessExecutor>> Create(Options options);
  ~ProcessExecutor() override;

  Result<int> Start(const StartProcess& spec) override;
  void Kill(const AttemptKey& key, int signal) override;
  void TakeExits(std::vector<std::pair<AttemptKey, ExitInfo>>* out) override;

  // For the driver's poll loop: the signalfd and every open output pipe.
  int signal_fd() const { return sigfd_; }
  std::vector<int> pipe_fds() const;
  // Call when signal_fd() is readable: reaps exited children.
  void OnSignalReadable();
  // Call when a pipe fd is readable (or hung up).
  void OnPipeReadable(int fd);
  size_t running() const { return procs_.size(); }
  const TaskUser* task_user() const { return options_.user ? &*options_.user : nullptr; }
  // At start, after the orphan groups were killed: kills what is left in the cgroups of
  // attempts from before a restart (processes that left their group) and removes them.
  // Returns how many still held processes (the groups just killed may still be there).
  size_t SweepLeftoverCgroups();
  // "cgroup" or "process group": how attempts are contained and their leftovers found.
  const char* isolation() const { return options_.cgroup_root.empty() ? "process group" : "cgroup"; }
  uint64_t cgroup_fallbacks() const { return cgroup_fallbacks_; }
  // Kills every process group still running (agent shutdown).
  void KillAll(int signal);

 private:
  struct Proc {
    AttemptKey key;
    int pipe_fd = -1;
    size_t cap = 0;  // output kept: the task's cap if smaller than the agent's
    std::string output;
    bool keep_children = false;
    std::string cgroup;  // the attempt's cgroup, or "" (process group only)
  };
  explicit ProcessExecutor(Options o) : options_(o) {}
  // Runs path (fork + exec) in `cgroup` if given, as `u` if given; 0 and *pid, or the
  // errno of what failed.
  static int Spawn(const TaskUser* u, const std::string& cgroup, const std::string& path,
                   std::vector<char*>& argv, std::vector<char*>& envp, const std::string& workdir,
                   int out_fd, pid_t* pid_out);
  // Kills every process in the cgroup; returns how many there were.
  size_t KillCgroup(const std::string& cgroup) const;
  void RemoveEmptyCgroups();
  uint64_t cgroup_seq_ = 0;
  uint64_t cgroup_fallbacks_ = 0;
  std::vector<std::string> cgroups_to_remove_;
  void Drain(Proc& p);
  void AppendOutput(Proc& p, const char* data, size_t n);

  Options options_;
  int sigfd_ = -1;
  std::map<int, Proc> procs_;  // by pid
  std::vector<std::pair<AttemptKey, ExitInfo>> exits_;
};

// Kills the process group `pgid` left over from before a restart, but only if its leader
// still carries OUTPOST_RUN_ID=run and OUTPOST_ATTEMPT=attempt in its environment (so a
// reused pid is never killed). Returns true if it signalled something.
bool KillOrphanGroup(int pgid, const std::string& run, const std::string& task, int attempt);

// The same for an attempt whose pid was never written (the agent died between the spawn
// and the group commit that carries the pid): every process group leader in /proc is
// checked for the attempt's environment. Returns how many groups it signalled.
int KillOrphanAttempt(const std::string& run, const std::string& task, int attempt);

}  // namespace outpost
