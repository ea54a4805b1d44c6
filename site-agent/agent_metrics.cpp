// The agent's monitoring (docs/operations.md, "Monitoring"): /metrics on --metrics-listen,
// the same text in --metrics-file for node_exporter's textfile collector, and the health
// summary that goes up the event stream (site.health) so the hub shows the site's health
// where nobody can reach the site.

#include <spdlog/spdlog.h>
#include <sys/statvfs.h>

#include <algorithm>

#include "common/files.h"
#include "site-agent/agent.h"

namespace outpost {

namespace {

using T = Exposition::Type;

std::string AttemptName(const Event& e) {
  return e.run + "/" + e.task + "/" + std::to_string(e.attempt);
}

}  // namespace

Status Agent::OpenMetrics() {
  started_ = clock_.Now();
  metrics_file_at_ = started_;
  // The summary has somewhere to go only with a hub or an inbox (bundles).
  const bool upstream = !config_.hub_endpoint.empty() || !config_.inbox_dir.empty();
  health_at_ = config_.health_every > 0 && upstream ? started_ + config_.health_every : 0;
  if (config_.metrics_listen.empty()) return Status::Ok();
  HttpListener::Options o;
  o.address = config_.metrics_listen;
  o.threads = 2;  // two scrapers at once; a held-open connection idles out after 1 s
  o.max_body = 4096;
  OUTPOST_ASSIGN_OR_RETURN(http_, HttpListener::Start(o));
  spdlog::info("agent.metrics_listening address={}", http_->address());
  return Status::Ok();
}

HttpReply Agent::OnHttp(const HttpRequest& request) const {
  HttpReply reply;
  if (request.method != "GET") {
    reply.status = 405;
    reply.body = "only GET is served here\n";
  } else if (request.path == "/metrics") {
    reply.content_type = Exposition::kContentType;
    reply.body = MetricsText();
  } else {
    reply.status = 404;
    reply.body = "not found (this agent serves /metrics)\n";
  }
  return reply;
}

void Agent::NoteCommitted(const Effects& done, double seconds) {
  commit_seconds_.Observe(seconds);
  commit_max_seconds_ = std::max(commit_max_seconds_, seconds);
  for (const auto& e : done.events) {
    switch (static_cast<EventType>(e.type)) {
      case EventType::kAttemptStarted:
        // Bounded: an attempt the agent never sees end (it restarted) leaves an entry.
        if (attempt_started_.size() >= 100'000) attempt_started_.clear();
        attempt_started_[AttemptName(e)] = e.time;
        break;
      case EventType::kAttemptFinished:
      case EventType::kAttemptSpawnFailed:
      case EventType::kAttemptInterrupted: {
        auto it = attempt_started_.find(AttemptName(e));
        if (it == attempt_started_.end()) break;
        if (e.time >= it->second) task_seconds_.Observe(static_cast<double>(e.time - it->second) / 1000.0);
        attempt_started_.erase(it);
        break;
      }
      case EventType::kTaskFinished:
        ++tasks_finished_[e.state];
        break;
      case EventType::kRunFinished:
        ++runs_finished_[e.state];
        break;
      default:
        break;
    }
  }
}

std::map<std::string, double> Agent::HealthSummary() const {
  const auto& log = store_->log();
  std::map<std::string, double> h;
  auto n = [](auto v) { return static_cast<double>(v); };
  h["runs_active"] = n(engine_->active_runs());
  h["attempts_running"] = n(engine_->running_attempts());
  h["events_unacked"] = n(log.head() > log.acked() ? log.head() - log.acked() : 0);
  h["disk_full"] = disk_full_ ? 1 : 0;
  h["store_bytes"] = n(log.ApproximateSize());
  h["output_bytes"] = n(output_bytes_);
  h["artifact_bytes"] = n(artifacts_ ? artifacts_->bytes() : 0);
  struct statvfs fs {};
  if (statvfs(config_.data_dir.c_str(), &fs) == 0) {
    h["disk_free_bytes"] = n(static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize);
  }
  h["commit_max_seconds"] = commit_max_seconds_;
  h["commit_failures"] = n(counters_.commit_failures);
  h["spawn_failures"] = n(counters_.spawn_failures);
  h["commands_rejected"] = n(counters_.commands_rejected);
  uint64_t failed = 0;
  for (const auto& [state, count] : tasks_finished_) {
    if (state == "failed") failed += count;
  }
  h["tasks_failed"] = n(failed);
  h["agent_start_time_seconds"] = n(started_) / 1000.0;
  return h;
}

std::string Agent::MetricsText() const {
  Exposition x;
  const auto& log = store_->log();
  const auto& ec = engine_->counters();
  auto gauge = [&x](const char* name, const char* help, double v) {
    x.Family(name, T::kGauge, help);
    x.Sample(v);
  };
  auto counter = [&x](const char* name, const char* help, uint64_t v) {
    x.Family(name, T::kCounter, help);
    x.Sample(static_cast<double>(v));
  };
  x.AddConstantLabel("site", config_.site);  // on every series
  x.Family("outpost_agent_info", T::kGauge, "The site this agent runs (always 1).");
  x.Sample(1);
  gauge("outpost_agent_start_time_seconds", "When this agent process started (Unix time).",
        static_cast<double>(started_) / 1000.0);
  gauge("outpost_agent_runs_active", "Runs not yet finished.",
        static_cast<double>(engine_->active_runs()));
  gauge("outpost_agent_attempts_running", "Task attempts whose process is running.",
        static_cast<double>(engine_->running_attempts()));
  gauge("outpost_agent_max_parallel", "Attempts this agent runs at once at most.",
        static_cast<double>(config_.max_parallel));
  x.Family("outpost_agent_queue_limit", T::kGauge, "Concurrency of each named task queue.");
  for (const auto& [q, limit] : config_.queues) x.Sample(limit, {{"queue", q}});
  counter("outpost_agent_runs_started_total", "Runs started by this process.", ec.runs_started);
  x.Family("outpost_agent_runs_finished_total", T::kCounter,
           "Runs that reached a final state in this process, by state.");
  for (const auto& [state, count] : runs_finished_) x.Sample(static_cast<double>(count), {{"state", state}});
  x.Family("outpost_agent_tasks_finished_total", T::kCounter,
           "Tasks that reached a final state in this process, by state.");
  for (const auto& [state, count] : tasks_finished_) x.Sample(static_cast<double>(count), {{"state", state}});
  counter("outpost_agent_attempts_started_total", "Task attempts started by this process.",
          ec.attempts_started);
  x.Family("outpost_agent_task_duration_seconds", T::kHistogram,
           "How long task attempts ran, from start to exit, on the site's clock.");
  x.Observe(task_seconds_);
  x.Family("outpost_agent_commit_seconds", T::kHistogram,
           "Latency of the agent's synced writes (each step's effects in one write).");
  x.Observe(commit_seconds_);
  counter("outpost_agent_commit_failures_total",
          "Synced writes that failed (full disk, I/O error); retried a second later.",
          counters_.commit_failures);
  gauge("outpost_agent_disk_full", "1 while the last write found the disk full.", disk_full_ ? 1 : 0);
  gauge("outpost_agent_log_head", "Sequence number of the newest event in the site's log.",
        static_cast<double>(log.head()));
  gauge("outpost_agent_log_acked", "Newest event the hub has acknowledged.",
        static_cast<double>(log.acked()));
  gauge("outpost_agent_events_unacked",
        "Events logged that the hub has not acknowledged (the sync lag, in events).",
        static_cast<double>(log.head() > log.acked() ? log.head() - log.acked() : 0));
  gauge("outpost_agent_commands_applied", "Newest hub command applied (the inbox watermark).",
        static_cast<double>(down_applied_));
  gauge("outpost_agent_hub_connected", "1 while a session with the hub is established.",
        session_ && session_->established() ? 1 : 0);
  counter("outpost_agent_hub_sessions_total", "Sessions established with the hub.",
          counters_.hub_sessions);
  counter("outpost_agent_commands_applied_total", "Hub commands applied by this process.",
          counters_.commands_applied);
  counter("outpost_agent_commands_rejected_total",
          "Hub commands refused (not allowed by policy, unsigned, malformed, ...).",
          counters_.commands_rejected);
  counter("outpost_agent_hub_frames_malformed_total", "Frames from the hub that did not decode.",
          counters_.hub_frames_malformed);
  counter("outpost_agent_control_bad_requests_total", "Control requests refused by the decoder.",
          counters_.bad_requests);
  counter("outpost_agent_spawn_failures_total", "Task processes that could not be started.",
          counters_.spawn_failures);
  gauge("outpost_agent_store_bytes", "Approximate size of the agent's store on disk.",
        static_cast<double>(log.ApproximateSize()));
  gauge("outpost_agent_output_bytes", "Stored output of finished runs (after the last retention pass).",
        static_cast<double>(output_bytes_));
  gauge("outpost_agent_artifact_bytes", "Bytes in the artifact cache.",
        static_cast<double>(artifacts_ ? artifacts_->bytes() : 0));
  struct statvfs fs {};
  x.Family("outpost_agent_disk_free_bytes", T::kGauge,
           "Free space for the agent on the file system of its data directory.");
  if (statvfs(config_.data_dir.c_str(), &fs) == 0) {
    x.Sample(static_cast<double>(static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize));
  }
  counter("outpost_agent_metrics_file_errors_total", "Writes of --metrics-file that failed.",
          counters_.metrics_file_errors);
  return x.Take();
}

void Agent::MetricsTick() {
  const TimeMs now = clock_.Now();
  if (!config_.metrics_file.empty() && now >= metrics_file_at_) {
    metrics_file_at_ = now + config_.metrics_every;
    if (Status s = WriteFileAtomically(config_.metrics_file, MetricsText(), /*durable=*/false); !s.ok()) {
      ++counters_.metrics_file_errors;
      if (now - metrics_file_warned_ >= 60'000) {  // at most one line a minute
        metrics_file_warned_ = now;
        spdlog::warn("agent.metrics_file_failed error=\"{}\" failures={}", s.message(),
                     counters_.metrics_file_errors);
      }
    }
  }
  if (health_at_ > 0 && now >= health_at_) {
    health_at_ = now + config_.health_every;
    Event e;
    e.time = now;
    e.type = static_cast<uint8_t>(EventType::kSiteHealth);
    for (const auto& [k, v] : HealthSummary()) e.params[k] = Exposition::FormatValue(v);
    pending_.events.push_back(std::move(e));
    commit_max_seconds_ = 0;
  }
}

}  // namespace outpost
