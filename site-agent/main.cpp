// outpost-agent: parses options, blocks the signals the agent reads through signalfd,
// builds the real clock and runs the Agent.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <boost/program_options.hpp>

#include <tuple>
#include <filesystem>
#include <iostream>

#include "common/log_format.h"
#include "common/transport/zmq_link.h"
#include "common/trust.h"
#include "site-agent/agent.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  // Block before anything (RocksDB) starts a thread, so every thread inherits the mask.
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGCHLD, SIGTERM, SIGINT}) sigaddset(&mask, s);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);

  outpost::AgentConfig c;
  std::string config_file, log_level, log_format;
  std::vector<std::string> labels, queues;
  std::string retain_output = "0", output_budget = "0", artifact_budget = "0";
  std::string metrics_every = "15s", health_every = "5m";
  int64_t kill_grace_ms = c.kill_grace;
  int64_t pid_write_delay_ms = c.pid_write_delay;
  int64_t ping_ms = c.sync.idle_ping, dead_ms = c.sync.dead_after, resend_ms = c.sync.resend_after;
  int64_t reconnect_max_ms = c.reconnect_max;
  int64_t hub_failover_ms = c.hub_failover;
  // The one option table: drives --help, the config file and validation.
  po::options_description opts("outpost-agent options (also valid as key = value in --config)");
  opts.add_options()
      ("help,h", "print this help and exit")
      ("config", po::value(&config_file), "INI file with any of these options; flags win")
      ("check-config", "validate the options and exit")
      ("data-dir", po::value(&c.data_dir)->required(),
       "directory for the event log, keys and the control socket (agent.sock)")
      ("site", po::value(&c.site)->default_value("local"),
       "this site's name; prefixes every run id")
      ("max-parallel", po::value(&c.max_parallel)->default_value(4),
       "task attempts running at once (1-1024)")
      ("kill-grace-ms", po::value(&kill_grace_ms)->default_value(5000),
       "time between SIGTERM and SIGKILL when a task times out or is cancelled")
      ("pid-write-delay-ms", po::value(&pid_write_delay_ms)->default_value(pid_write_delay_ms),
       "group commit: a started attempt's pid is written with the next step's synced write, "
       "or alone after this long (a pid lost in a crash is found by the attempt's "
       "environment at restart)")
      ("output-cap", po::value(&c.output_cap)->default_value(64 * 1024),
       "bytes of each attempt's output kept (the tail)")
      ("label", po::value(&labels)->composing(),
       "a label of this site as key=value (repeatable); templates read it as "
       "{{ site.labels.KEY }}")
      ("queue", po::value(&queues)->composing(),
       "a named task queue as name=N, N attempts at once (repeatable); tasks pick it with "
       "'queue: name', other tasks use the default queue (max-parallel)")
      ("workflows", po::value(&c.workflow_dir),
       "directory of workflow files (*.yaml) this site runs by name and on their schedules, "
       "with or without a hub")
      ("retain-output", po::value(&retain_output)->default_value("0"),
       "remove finished runs' output older than this (e.g. 7d; 0 keeps it); run state is kept")
      ("output-budget", po::value(&output_budget)->default_value("0"),
       "keep stored output of finished runs under this many bytes (suffix K, M, G; 0: no cap), "
       "oldest removed first")
      ("artifact-budget", po::value(&artifact_budget)->default_value("0"),
       "keep cached artifacts under this many bytes (suffix K, M, G; 0: no cap), least "
       "recently used first, never one a placed workflow or an active run names")
      ("inbox-dir", po::value(&c.inbox_dir),
       "watch this directory (removable media) for bundles from the hub (scanned every 2 s); "
       "while one is there, the site's return bundle beside them (outpost-return-SITE.bundle) "
       "is kept current")
      ("metrics-listen", po::value(&c.metrics_listen),
       "HOST:PORT to serve /metrics (Prometheus text format) on, e.g. 127.0.0.1:9464; off "
       "unless set")
      ("metrics-file", po::value(&c.metrics_file),
       "write the metrics to this file (for node_exporter's textfile collector: a .prom file "
       "in its directory), replaced atomically every --metrics-every")
      ("metrics-every", po::value(&metrics_every)->default_value("15s"),
       "how often --metrics-file is rewritten")
      ("health-every", po::value(&health_every)->default_value("5m"),
       "how often the site's health summary goes up its event stream to the hub (0: never)")
      ("hub", po::value(&c.hub_endpoint),
       "hub site endpoint to sync with, e.g. tcp://hub:7400 (unset: run alone); several, "
       "comma-separated, for hub processes that share one PostgreSQL store")
      ("hub-failover-ms", po::value(&hub_failover_ms)->default_value(hub_failover_ms),
       "with several --hub endpoints: move to the next after this long without a session")
      ("hub-key", po::value(&c.hub_key),
       "the hub's public key (40 Z85 characters) or a file holding it; pinned")
      ("trust-root", po::value(&c.trust_root),
       "the fleet root's Ed25519 public key (ed25519:...) or a file holding it: run only what "
       "operators named in a policy it signed have signed (unset: trust the hub absolutely)")
      ("policy-file", po::value(&c.policy_file),
       "a root-signed policy file to adopt at start when newer than the one in force")
      ("task-user", po::value(&c.task_user),
       "run tasks as this unprivileged user (the package creates outpost-task); the agent then "
       "needs root or CAP_SETUID, CAP_SETGID and CAP_CHOWN")
      ("task-dir", po::value(&c.task_dir),
       "where each run gets its work directory (default DATA_DIR/work with --task-user)")
      ("task-env", po::value(&c.task_env)->composing(),
       "the name of an agent environment variable tasks also get (repeatable); tasks start "
       "from a minimal environment")
      ("cgroup", po::value(&c.cgroup)->default_value("auto"),
       "each attempt in its own cgroup v2 under this directory (auto: under the agent's own "
       "cgroup when it may write there, e.g. systemd Delegate=yes; off: process groups only)")
      ("control-group", po::value(&c.control_group),
       "a group whose members may use the control socket (besides root and the agent's user)")
      ("show-key", "print this agent's public key (creating DATA_DIR/agent.key at first use) and exit")
      ("sync-ping-ms", po::value(&ping_ms)->default_value(ping_ms),
       "idle time before the session sends PING")
      ("sync-dead-ms", po::value(&dead_ms)->default_value(dead_ms),
       "silence after which the hub is considered gone and the link remade")
      ("sync-resend-ms", po::value(&resend_ms)->default_value(resend_ms),
       "unacknowledged batches are resent after this long")
      ("reconnect-max-ms", po::value(&reconnect_max_ms)->default_value(reconnect_max_ms),
       "cap of the jittered backoff between reconnects")
      ("log-format", po::value(&log_format)->default_value("text"),
       "text, or json: one JSON object per line (time, level, event and the line's fields)")
      ("log-level", po::value(&log_level)->default_value("info"),
       "trace, debug, info, warn, error");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, opts), vm);
    if (vm.count("help")) {
      std::cout << "usage: outpost-agent --data-dir DIR [options]\n\n" << opts << "\n";
      return 0;
    }
    if (vm.count("config")) {
      po::store(po::parse_config_file<char>(vm["config"].as<std::string>().c_str(), opts, false),
                vm);
    }
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "outpost-agent: " << e.what() << "\n(see outpost-agent --help)\n";
    return 2;
  }
  std::string bad;
  if (c.max_parallel < 1 || c.max_parallel > 1024) bad = "max-parallel must be 1-1024";
  if (kill_grace_ms < 0) bad = "kill-grace-ms must not be negative";
  if (pid_write_delay_ms < 0 || pid_write_delay_ms > 3'600'000) {
    bad = "pid-write-delay-ms must be 0-3600000";
  }
  if (c.output_cap < 1024) bad = "output-cap must be at least 1024";
  if (c.site.empty()) bad = "site must not be empty";
  if (ping_ms < 100 || dead_ms <= ping_ms) bad = "sync-ping-ms must be >= 100 and below sync-dead-ms";
  if (resend_ms < 100) bad = "sync-resend-ms must be at least 100";
  if (reconnect_max_ms < 100) bad = "reconnect-max-ms must be at least 100";
  if (hub_failover_ms < 500) bad = "hub-failover-ms must be at least 500";
  if (!c.hub_endpoint.empty() && c.hub_key.empty()) bad = "--hub needs --hub-key";
  if (!c.trust_root.empty()) {
    auto root = outpost::ReadSigningPublicKey(c.trust_root);
    if (!root.ok()) bad = "trust-root: " + root.status().message();
  }
  if (!c.policy_file.empty() && c.trust_root.empty()) bad = "--policy-file needs --trust-root";
  for (const auto& l : labels) {
    const auto eq = l.find('=');
    if (eq == std::string::npos || eq == 0) {
      bad = "label '" + l + "' is not key=value";
    } else {
      c.labels[l.substr(0, eq)] = l.substr(eq + 1);
    }
  }
  for (const auto& q : queues) {
    const auto eq = q.find('=');
    int n = 0;
    try {
      n = eq == std::string::npos ? 0 : std::stoi(q.substr(eq + 1));
    } catch (const std::exception&) {
      n = 0;
    }
    if (eq == std::string::npos || eq == 0 || n < 1 || n > 1024) {
      bad = "queue '" + q + "' is not name=N with N from 1 to 1024";
    } else {
      c.queues[q.substr(0, eq)] = n;
    }
  }
  if (!c.metrics_listen.empty()) {
    std::string host;
    int port = 0;
    if (auto st = outpost::HttpListener::ParseAddress(c.metrics_listen, &host, &port); !st.ok()) {
      bad = "metrics-listen: " + st.message();
    }
  }
  {
    auto d = outpost::ParseDuration(metrics_every);
    if (!d.ok() || *d < 1000) {
      bad = "metrics-every: " + (d.ok() ? std::string("must be at least 1s") : d.status().message());
    } else {
      c.metrics_every = *d;
    }
  }
  if (health_every != "0") {
    auto d = outpost::ParseDuration(health_every);
    if (!d.ok() || *d < 10'000) {
      bad = "health-every: " + (d.ok() ? std::string("must be at least 10s (or 0)") : d.status().message());
    } else {
      c.health_every = *d;
    }
  } else {
    c.health_every = 0;
  }
  if (retain_output != "0") {
    auto d = outpost::ParseDuration(retain_output);
    if (!d.ok()) bad = "retain-output: " + d.status().message();
    else c.retain_output = *d;
  }
  for (auto [name, text, out] : {std::tuple{"output-budget", &output_budget, &c.output_budget},
                                 std::tuple{"artifact-budget", &artifact_budget, &c.artifact_budget}}) {
    uint64_t mult = 1;
    std::string num = *text;
    if (!num.empty() && (num.back() == 'K' || num.back() == 'M' || num.back() == 'G')) {
      mult = num.back() == 'K' ? 1024 : num.back() == 'M' ? 1024 * 1024 : 1024ull * 1024 * 1024;
      num.pop_back();
    }
    char* end = nullptr;
    const unsigned long long v = std::strtoull(num.c_str(), &end, 10);
    if (num.empty() || end == nullptr || *end != '\0' || num[0] == '-') {
      bad = std::string(name) + " '" + *text + "' is not a byte count";
    } else {
      *out = v * mult;
    }
  }
  auto level = spdlog::level::from_str(log_level);
  if (level == spdlog::level::off && log_level != "off") bad = "unknown log-level '" + log_level + "'";
  if (log_format != "text" && log_format != "json") bad = "log-format must be text or json";
  if (!bad.empty()) {
    std::cerr << "outpost-agent: " << bad << " (see --help)\n";
    return 2;
  }
  if (vm.count("check-config")) {
    std::cout << "outpost-agent: configuration ok\n";
    return 0;
  }
  c.site_given = vm.count("site") > 0 && !vm["site"].defaulted();
  c.kill_grace = kill_grace_ms;
  c.pid_write_delay = pid_write_delay_ms;
  c.sync.idle_ping = ping_ms;
  c.sync.dead_after = dead_ms;
  c.sync.resend_after = resend_ms;
  c.reconnect_max = reconnect_max_ms;
  c.hub_failover = hub_failover_ms;
  if (vm.count("show-key")) {
    std::error_code ec;
    std::filesystem::create_directories(c.data_dir, ec);
    auto keys = outpost::LoadOrCreateKeys(c.data_dir, "agent");
    if (!keys.ok()) {
      std::cerr << "outpost-agent: " << keys.status().ToString() << "\n";
      return 1;
    }
    std::cout << keys->public_z85 << "\n";
    return 0;
  }
  spdlog::set_level(level);
  outpost::SetLogFormat(log_format).IgnoreError();  // checked above

  outpost::SystemClock clock;
  auto agent = outpost::Agent::Open(c, clock, outpost::SeedFromOs());
  // A full disk at start is waited out (every 5 s, until SIGTERM or SIGINT) instead of a
  // crash loop under systemd: the agent opens as soon as there is room.
  while (!agent.ok() && agent.status().code() == outpost::Code::kResourceExhausted) {
    spdlog::error("agent.disk_full_at_start error=\"{}\" retry_in_ms=5000",
                  agent.status().ToString());
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    const timespec wait = {5, 0};
    if (sigtimedwait(&stop, nullptr, &wait) > 0) return 0;
    agent = outpost::Agent::Open(c, clock, outpost::SeedFromOs());
  }
  if (!agent.ok()) {
    spdlog::critical("agent.open_failed error=\"{}\"", agent.status().ToString());
    return 1;
  }
  outpost::Status s = (*agent)->Run();
  if (!s.ok()) {
    spdlog::critical("agent.failed error=\"{}\"", s.ToString());
    return 1;
  }
  return 0;
}
