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
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/protocol/command.h"
#include "common/random.h"
#include "common/protocol/sync_session.h"
#include "common/metrics.h"
#include "common/transport/http_listener.h"
#include "common/transport/zmq_link.h"
#include "site-agent/agent_store.h"
#include "site-agent/artifact_cache.h"
#include "site-agent/commands.h"
#include "site-agent/control_request.h"
#include "site-agent/engine.h"
#include "site-agent/trust_gate.h"
#include "site-agent/executor.h"
#include "site-agent/log_stream.h"
#include "site-agent/scheduler.h"
#include "site-agent/workflow_parser.h"

namespace outpost {

struct AgentConfig {
  std::string data_dir;
  std::string site = "local";
  bool site_given = false;  // --site was set (else the name stored in the database wins)
  int max_parallel = 4;
  DurationMs kill_grace = 5000;
  size_t output_cap = 64 * 1024;
  std::map<std::string, std::string> labels;  // {{ site.labels.KEY }} in templates
  std::map<std::string, int> queues;          // named task queues and their concurrency
  // Workflow files (*.yaml) this site runs by name and on their schedules, with no hub.
  std::string workflow_dir;
  // Retention of finished runs' output (the state events are never trimmed):
  DurationMs retain_output = 0;  // drop output older than this; 0: keep
  uint64_t output_budget = 0;    // keep the stored output under this many bytes; 0: no cap
  // Sync with a hub (both empty: the agent runs alone).
  // e.g. tcp://hub.example:7400; several, comma-separated, for hub processes sharing one
  // store (the agent moves to the next when its own is unreachable for hub_failover).
  std::string hub_endpoint;
  DurationMs hub_failover = 5'000;
  std::string hub_key;       // the hub's Z85 public key, pinned
  SyncOptions sync;
  DurationMs reconnect_max = 30'000;
  // The fleet root's Ed25519 public key ("ed25519:..." or a file holding it). Set, the
  // site runs only what operators its root-signed policy names have signed
  // (site-agent/trust_gate.h); empty, it trusts its hub absolutely.
  std::string trust_root;
  // A root-signed policy file to adopt at start (when newer than the one in force).
  std::string policy_file;
  // Tasks run as this unprivileged user (docs/security.md); empty: as the agent's user.
  std::string task_user;
  // Where runs get their work directories (default DATA_DIR/work with a task user).
  std::string task_dir;
  // Names of agent environment variables tasks also get.
  std::vector<std::string> task_env;
  // A group whose members may use the control socket besides root and the agent's user.
  std::string control_group;
  // Where attempts get their own cgroup v2: "auto" (under the agent's own cgroup when it
  // may write there, e.g. systemd Delegate=yes), "off", or a directory.
  std::string cgroup = "auto";
  // Artifacts (site-agent/artifact_cache.h): the cache's byte budget (0: no limit).
  uint64_t artifact_budget = 0;
  // A directory watched for bundles from the hub (removable media); each imported volume
  // is answered with a return bundle written beside it.
  std::string inbox_dir;
  // Monitoring (site-agent/agent_metrics.cpp): /metrics on HOST:PORT (empty: off), a file
  // for node_exporter's textfile collector rewritten every metrics_every (empty: off), and
  // a site.health event up the event stream every health_every (0: off; only with a hub
  // or an inbox, where it has somewhere to go).
  std::string metrics_listen;
  std::string metrics_file;
  DurationMs metrics_every = 15'000;
  DurationMs health_every = 300'000;
  // Group commit: the pid of a spawned attempt is written with the next commit (an exit
  // and the starts it allows), or alone after this long if nothing else is written. Lost
  // in a crash, the attempt's process is found by its environment (KillOrphanAttempts).
  DurationMs pid_write_delay = 200;
};

struct AgentCounters {
  uint64_t commit_failures = 0;
  uint64_t bad_requests = 0;
  uint64_t request_exceptions = 0;  // handler bugs caught at the control boundary
  uint64_t spawn_failures = 0;
  uint64_t orphans_killed = 0;
  uint64_t hub_frames_malformed = 0;
  uint64_t hub_auth_failures = 0;
  uint64_t hub_handshake_failures = 0;  // CURVE handshakes that broke (a wrong pinned key?)
  uint64_t hub_failovers = 0;  // moves to the next of several hub endpoints
  uint64_t hub_frame_exceptions = 0;    // bugs caught at the boundary of hub frames
  uint64_t hub_sessions = 0;
  uint64_t hub_send_failures = 0;
  uint64_t commands_applied = 0;
  uint64_t commands_rejected = 0;
  uint64_t commands_duplicate = 0;
  uint64_t commands_refused_by_policy = 0;  // refused by the trust gate (also in rejected)
  uint64_t control_peers_refused = 0;       // control connections from users not allowed
  uint64_t workflow_files_invalid = 0;
  uint64_t schedule_errors = 0;
  uint64_t outputs_trimmed = 0;        // attempt outputs removed by retention
  uint64_t output_bytes_trimmed = 0;
  uint64_t artifact_chunks_received = 0;
  uint64_t artifact_errors = 0;      // refused chunks, digest mismatches, hub refusals
  uint64_t artifacts_cached = 0;
  uint64_t artifacts_evicted = 0;
  uint64_t bundle_volumes_imported = 0;
  uint64_t bundle_volumes_refused = 0;
  uint64_t bundles_exported = 0;
  uint64_t metrics_file_errors = 0;  // --metrics-file writes that failed
  uint64_t commands_waited_validation = 0;  // hub batches put aside while a workflow was validated
  uint64_t requests_waited_validation = 0;  // control requests held while a workflow was validated
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
    bool discarding = false;  // inside a line past kMaxControlLine: dropped to its newline
    std::vector<int> fds;     // descriptors passed with the request (SCM_RIGHTS)
  };
  class Inbox;
  Agent(const AgentConfig& config, const Clock& clock, uint64_t seed);

  void Flush();
  void ReleaseStartupPages();
  std::string OutputFile(const AttemptKey& k) const;
  void CollectOutputs(const AttemptKey& k, ExitInfo* info);
  // Commits pending_ (plus `extra` state writes), then starts and kills processes and
  // answers the requests it held. On failure pending_ is kept for a retry.
  Status CommitPending(const std::vector<StateWrite>& extra);
  // Hub sync (site-agent/agent_sync.cpp).
  Status OpenSync();
  // The trust gate: the root from the config, the policy in force from the store, a
  // newer policy file adopted (site-agent/agent_trust.cpp).
  Status OpenTrust();
  nlohmann::json TrustJson() const;
  void Connect();
  void ServeHub();
  void SyncTick();
  void SendToHub(const SyncOutput& so);
  // Applies a downstream batch. With may_wait, a large workflow is validated off the loop
  // (WorkflowParser): the batch stops before its command and the rest is kept in
  // waiting_commands_, applied by ResumeWaitingCommands when the parse is done. Without
  // (bundle imports), it is validated here and now.
  Status ApplyCommands(uint64_t first_seq, const std::vector<std::string>& entries,
                       bool may_wait = true);
  void ResumeWaitingCommands();
  // The worker finished validating: held control requests and commands go on.
  void OnWorkflowsParsed();
  // Counts and logs what applying a hub command did.
  void Told(const Command& c, const CommandOutcome& o);
  nlohmann::json SyncJson() const;
  // Artifacts and bundles (site-agent/agent_bundles.cpp).
  Status OpenArtifacts();
  // Digests the known workflows name (kept by SyncSchedules, which runs on every change).
  const std::set<std::string>& NeededArtifacts() const;
  void ArtifactsTick();
  void OnArtifactChunk(const Message& m);
  void NoteArtifactCached(const std::string& digest, uint64_t size);
  nlohmann::json ArtifactsJson();
  // Imports one volume (a regular file) from `fd`; the reply's "import" says what it did.
  nlohmann::json ImportBundle(int fd);
  // Writes the return bundle (events after what the hub acknowledged, and the commands'
  // watermark) to `fd`.
  nlohmann::json ExportBundle(int fd);
  void ScanInbox();
  // Monitoring (site-agent/agent_metrics.cpp).
  Status OpenMetrics();
  std::string MetricsText() const;
  HttpReply OnHttp(const HttpRequest& request) const;
  // Writes the metrics file and records the health summary when they are due.
  void MetricsTick();
  // What a successful commit recorded: task durations, final states, its latency.
  void NoteCommitted(const Effects& done, double seconds);
  std::map<std::string, double> HealthSummary() const;
  // Loads the workflow directory (invalid files are logged and counted, not fatal).
  void LoadWorkflowDir();
  // The definitions this site can run by name: placed by the hub, or local files.
  std::map<std::string, std::shared_ptr<const WorkflowDef>> KnownWorkflows() const;
  // Brings the scheduler in line with the known definitions that carry a schedule.
  void SyncSchedules();
  // Retention: trims finished runs' output by age and by the byte budget; returns what it
  // did ({"runs", "outputs", "bytes", "kept_bytes"}).
  nlohmann::json TrimOutputs();
  void HandleSignals(bool* stop);
  void AcceptClients();
  void ReadClient(uint64_t id);
  void WriteClient(uint64_t id);
  Status SettleSiteName();
  bool disk_full_ = false;  // the last commit (or a look before new work) found the disk full
  void SetDiskFull(bool full);  // logs the change
  void HandleRequest(uint64_t client, const std::string& line);
  void Dispatch(uint64_t client, const ControlRequest& request);
  // Dispatch behind the boundary that catches what a handler throws.
  void DispatchGuarded(uint64_t client, const ControlRequest& request);
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
  // Records changed only by OnSpawned (the pid), written with the next commit or at
  // spawned_due_ (AgentConfig::pid_write_delay).
  Effects spawned_;
  TimeMs spawned_due_ = 0;
  std::unique_ptr<Scheduler> scheduler_;
  std::map<std::string, std::shared_ptr<const WorkflowDef>> local_defs_;
  // Workflow sources parsed once, large ones on a thread of their own; what waits for one.
  std::unique_ptr<WorkflowParser> parser_;
  std::vector<std::pair<uint64_t, ControlRequest>> held_requests_;  // client, request
  struct WaitingCommands {
    uint64_t first_seq = 0;
    std::vector<std::string> entries;
  } waiting_commands_;
  std::map<std::string, std::string> scheduled_hash_;  // workflow -> hash the scheduler has
  TimeMs trim_at_ = 0;  // next retention pass
  uint64_t output_bytes_ = 0;  // stored output of finished runs, after the last pass
  AgentCounters counters_;

  // Hub sync; all null when no hub is configured.
  CurveKeys keys_;
  std::optional<TrustGate> gate_;  // set when a trust root is configured
  std::optional<gid_t> control_gid_;  // --control-group
  std::string PeerRefused(int fd) const;
  static std::string CgroupRootFor(const AgentConfig& config);
  std::unique_ptr<ZmqContext> zmq_;
  std::unique_ptr<Connector> hub_;
  std::unique_ptr<EventLogStream> up_stream_;
  std::unique_ptr<Inbox> inbox_;
  std::unique_ptr<SyncSession> session_;
  uint64_t down_applied_ = 0;  // inbox watermark (state key sync/down_applied)
  uint64_t hub_epoch_ = 0;     // the hub epoch reconciled with (state key sync/hub_epoch)
  uint64_t down_digest_ = 0;   // CommandDigest of the last command applied (sync/down_digest)
  TimeMs reconnect_at_ = 0;    // 0: connected or connecting
  // Several hub endpoints: the one in use, and since when it has had no session (0: it has).
  std::vector<std::string> hub_endpoints_;
  size_t hub_index_ = 0;
  TimeMs hub_down_since_ = 0;
  const std::string& hub_endpoint() const { return hub_endpoints_[hub_index_]; }
  int reconnect_attempt_ = 0;
  bool drop_link_ = false;  // the session ended: tear the connection down in SyncTick
  bool log_grew_ = false;   // events committed since the session last looked
  std::string last_hub_error_;

  // Artifacts: the cache, and the one transfer over the link at a time.
  std::unique_ptr<ArtifactCache> artifacts_;
  std::string fetch_digest_;
  uint64_t fetch_size_ = 0;  // 0: not known until the first chunk
  std::set<uint64_t> fetch_outstanding_;
  TimeMs fetch_progress_at_ = 0;
  std::map<std::string, TimeMs> fetch_paused_;  // digest -> retry after (the hub refused)
  TimeMs housekeeping_at_ = 0;
  std::set<std::string> inbox_seen_;  // "id/volume" imported from the inbox
  std::map<std::string, std::string> inbox_failed_;  // file -> size@mtime of a failed try
  std::pair<uint64_t, uint64_t> inbox_returned_{UINT64_MAX, 0};  // (log head, down) last written
  std::set<std::string> needed_artifacts_;

  // Monitoring.
  std::unique_ptr<HttpListener> http_;
  Histogram commit_seconds_{Histogram::LatencyBounds()};
  Histogram task_seconds_{Histogram::DurationBounds()};
  std::map<std::string, uint64_t> runs_finished_;   // final state -> count (this process)
  std::map<std::string, uint64_t> tasks_finished_;  // final state -> count (this process)
  std::map<std::string, TimeMs> attempt_started_;   // "run/task/attempt" -> start (site clock)
  double commit_max_seconds_ = 0;  // the slowest commit since the last health summary
  TimeMs metrics_file_at_ = 0;
  TimeMs metrics_file_warned_ = -1'000'000;
  TimeMs health_at_ = 0;
  TimeMs started_ = 0;
};

// The downstream stream: hub commands, applied with the inbox watermark in one write.
class Agent::Inbox : public IncomingStream {
 public:
  explicit Inbox(Agent* agent) : agent_(agent) {}
  uint64_t applied() const override { return agent_->down_applied_; }
  Status Apply(uint64_t first_seq, const std::vector<std::string>& entries) override {
    return agent_->ApplyCommands(first_seq, entries);
  }
  uint64_t hub_epoch() const override { return agent_->hub_epoch_; }
  uint64_t applied_digest() const override { return agent_->down_digest_; }
  Status SetHubEpoch(uint64_t epoch) override;

 private:
  Agent* agent_;
};

nlohmann::json RunViewToJson(const RunView& v);

}  // namespace outpost
