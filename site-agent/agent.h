// Agent: the site agent's driver. It owns the event log, the engine, the process
// executor and the local control socket, and runs them in one poll loop on one thread.
//
// One loop iteration: wait in poll() until a socket, a task's output pipe, a signal
// (SIGCHLD, SIGTERM/SIGINT) or the engine's next deadline; feed what happened to the
// engine; commit the accumulated Effects in one synced write; only then start and kill
// processes and answer the requests that changed state. If the commit fails (full disk,
// I/O error) nothing is started or acknowledged, the error is logged and counted, and
// the same Effects are retried a second later: nothing is lost.
//
// Thread-safety: one thread calls Run(); nothing else touches the Agent.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/random.h"
#include "site-agent/agent_store.h"
#include "site-agent/engine.h"
#include "site-agent/executor.h"

namespace outpost {

struct AgentConfig {
  std::string data_dir;
  std::string site = "local";
  int max_parallel = 4;
  DurationMs kill_grace = 5000;
  size_t output_cap = 64 * 1024;
};

struct AgentCounters {
  uint64_t commit_failures = 0;
  uint64_t bad_requests = 0;
  uint64_t spawn_failures = 0;
  uint64_t orphans_killed = 0;
};

class Agent {
 public:
  // Opens (or creates) the store under config.data_dir, restores unfinished runs and
  // binds the control socket. SIGCHLD, SIGTERM and SIGINT must already be blocked.
  static Result<std::unique_ptr<Agent>> Open(const AgentConfig& config, const Clock& clock,
                                             uint64_t seed);
  ~Agent();

  // Serves until SIGTERM or SIGINT. Running attempts are killed at shutdown and recorded
  // as interrupted at the next start.
  Status Run();

  std::string socket_path() const { return config_.data_dir + "/agent.sock"; }

 private:
  struct Client {
    int fd = -1;
    std::string in;
    std::string out;
  };
  Agent(const AgentConfig& config, const Clock& clock, uint64_t seed);

  void Flush();
  void HandleSignals(bool* stop);
  void AcceptClients();
  void ReadClient(uint64_t id);
  void WriteClient(uint64_t id);
  void HandleRequest(uint64_t client, const std::string& line);
  void Reply(uint64_t client, const nlohmann::json& j);
  nlohmann::json RunJson(const RunView& v) const;
  nlohmann::json StatusJson() const;

  AgentConfig config_;
  const Clock& clock_;
  Rng rng_;
  std::unique_ptr<AgentStore> store_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<ProcessExecutor> executor_;
  int listen_fd_ = -1;
  int term_fd_ = -1;
  uint64_t next_client_ = 1;
  std::map<uint64_t, Client> clients_;
  std::map<std::string, std::vector<uint64_t>> waiters_;          // run id -> clients
  std::vector<std::pair<uint64_t, nlohmann::json>> after_commit_;  // replies held for Flush
  Effects pending_;
  TimeMs commit_retry_at_ = 0;
  AgentCounters counters_;
};

nlohmann::json RunViewToJson(const RunView& v);

}  // namespace outpost
