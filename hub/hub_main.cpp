// outpost-hub: parses options, blocks the signals the hub reads through signalfd, and
// runs the HubServer.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <boost/program_options.hpp>

#include "common/log_format.h"
#include "common/trust.h"
#include <iostream>

#include "hub/hub_server.h"
#include "hub/pg_hub_store.h"
#include "hub/rocks_hub_store.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&mask, s);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);

  outpost::HubConfig c;
  std::string config_file, log_level, log_format;
  int64_t offline_after_ms = c.core.sync.dead_after, ping_ms = c.core.sync.idle_ping;
  // Retention of the per-site copies of site logs (docs/operations.md, "Hub retention").
  int64_t keep_days = c.core.retention.max_age / 86'400'000;
  int64_t budget_mb = static_cast<int64_t>(c.core.retention.max_bytes >> 20);
  int64_t quota_mb = static_cast<int64_t>(c.core.retention.site_quota >> 20);
  int64_t resend_ms = c.core.sync.resend_after;
  std::string trust_root;
  po::options_description opts("outpost-hub options (also valid as key = value in --config)");
  opts.add_options()
      ("help,h", "print this help and exit")
      ("config", po::value(&config_file), "INI file with any of these options; flags win")
      ("check-config", "validate the options and exit")
      ("show-key", "print the hub's public key (creating the keypair if needed) and exit")
      ("declare-restored",
       "record that DATA_DIR was restored from a backup, then exit: the hub starts a new "
       "epoch, and each site re-sends what the backup lacks at its next connection "
       "(docs/operations.md). Run once, with the hub stopped")
      ("data-dir", po::value(&c.data_dir)->required(),
       "directory for the hub store, keys, operators/ and hub.endpoints")
      ("store", po::value(&c.store),
       "the hub store: unset for RocksDB under DATA_DIR/db (one hub process), or a "
       "PostgreSQL connection string (postgresql://USER@HOST/DB or host=... dbname=...) "
       "that several hub processes share (docs/operations.md, \"Several hubs\")")
      ("store-schema", po::value(&c.store_schema)->default_value(c.store_schema),
       "PostgreSQL schema holding the hub's tables (created if missing)")
      ("sites-endpoint", po::value(&c.sites_endpoint)->default_value(c.sites_endpoint),
       "where agents connect (CURVE, enrolled site keys only); port 0 picks one")
      ("operators-endpoint", po::value(&c.operators_endpoint)->default_value(c.operators_endpoint),
       "where outpostctl connects (CURVE, keys in DATA_DIR/operators/*.pub)")
      ("http-listen", po::value(&c.http_listen),
       "HOST:PORT to serve /metrics (Prometheus text format) and the web dashboard (/ui/) on, "
       "e.g. 127.0.0.1:7480; "
       "port 0 picks one (see DATA_DIR/hub.endpoints). Off unless set")
      ("accept-unknown", po::bool_switch(&c.core.accept_unknown),
       "record unknown site keys as pending sites for `outpostctl site accept`")
      ("max-pending", po::value(&c.core.max_pending)->default_value(c.core.max_pending),
       "pending sites kept at most when unknown keys are accepted; further ones are refused")
      ("trust-root", po::value(&trust_root),
       "the fleet root's Ed25519 public key (ed25519:...) or a file holding it: policy push "
       "refuses a policy it did not sign (sites check it regardless)")
      ("offline-after-ms", po::value(&offline_after_ms)->default_value(offline_after_ms),
       "a site silent this long is marked offline and its session dropped")
      ("ping-ms", po::value(&ping_ms)->default_value(ping_ms),
       "idle time before a session sends PING")
      ("resend-ms", po::value(&resend_ms)->default_value(resend_ms),
       "unacknowledged batches are resent after this long")
      ("keep-site-events-days", po::value(&keep_days)->default_value(keep_days),
       "the hub's copies of site events older than this are trimmed (the run view keeps what "
       "they said); 0 keeps them forever")
      ("site-events-budget-mb", po::value(&budget_mb)->default_value(budget_mb),
       "all sites' event copies together are kept under this, the oldest trimmed first; 0: no "
       "budget")
      ("site-events-quota-mb", po::value(&quota_mb)->default_value(quota_mb),
       "one site's event copies are kept under this, its oldest trimmed first; 0: no quota")
      ("group-commit", po::value(&c.core.group_commit)->default_value(c.core.group_commit),
       "site batches written together in one synced write at most (RocksDB store), their "
       "acknowledgements sent after it; 1 writes and syncs every batch on its own")
      ("io-threads", po::value(&c.io_threads)->default_value(c.io_threads), "ZeroMQ I/O threads")
      ("max-sockets", po::value(&c.max_sockets)->default_value(c.max_sockets),
       "ZeroMQ socket limit (raise the fd limit to match)")
      ("log-format", po::value(&log_format)->default_value("text"),
       "text, or json: one JSON object per line (time, level, event and the line's fields)")
      ("log-level", po::value(&log_level)->default_value("info"),
       "trace, debug, info, warn, error");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, opts), vm);
    if (vm.count("help")) {
      std::cout << "usage: outpost-hub --data-dir DIR [options]\n\n" << opts << "\n";
      return 0;
    }
    if (vm.count("config")) {
      po::store(po::parse_config_file<char>(vm["config"].as<std::string>().c_str(), opts, false), vm);
    }
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "outpost-hub: " << e.what() << "\n(see outpost-hub --help)\n";
    return 2;
  }
  std::string bad;
  if (offline_after_ms < 1000) bad = "offline-after-ms must be at least 1000";
  if (ping_ms < 100 || ping_ms >= offline_after_ms) bad = "ping-ms must be 100 .. offline-after-ms";
  if (resend_ms < 100) bad = "resend-ms must be at least 100";
  if (c.io_threads < 1 || c.io_threads > 64) bad = "io-threads must be 1-64";
  if (c.core.group_commit < 1 || c.core.group_commit > 64) bad = "group-commit must be 1-64";
  if (keep_days < 0 || keep_days > 36500) bad = "keep-site-events-days must be 0-36500";
  if (budget_mb < 0 || budget_mb > (int64_t{1} << 30)) bad = "site-events-budget-mb must be 0-1073741824";
  if (quota_mb < 0 || quota_mb > (int64_t{1} << 30)) bad = "site-events-quota-mb must be 0-1073741824";
  if (!c.store.empty() && !outpost::IsPostgresStore(c.store)) {
    bad = "store must be a PostgreSQL connection string (postgresql://... or host=...)";
  }
  if (auto st = outpost::PgHubStore::CheckSchemaName(c.store_schema); !st.ok()) {
    bad = "store-schema: " + st.message();
  }
  if (!c.http_listen.empty()) {
    std::string host;
    int port = 0;
    if (auto st = outpost::HttpListener::ParseAddress(c.http_listen, &host, &port); !st.ok()) {
      bad = "http-listen: " + st.message();
    }
  }
  if (!trust_root.empty()) {
    auto root = outpost::ReadSigningPublicKey(trust_root);
    if (!root.ok()) {
      bad = "trust-root: " + root.status().message();
    } else {
      c.core.trust_root = *root;
    }
  }
  auto level = spdlog::level::from_str(log_level);
  if (level == spdlog::level::off && log_level != "off") bad = "unknown log-level '" + log_level + "'";
  if (log_format != "text" && log_format != "json") bad = "log-format must be text or json";
  if (!bad.empty()) {
    std::cerr << "outpost-hub: " << bad << " (see --help)\n";
    return 2;
  }
  if (vm.count("check-config")) {
    std::cout << "outpost-hub: configuration ok\n";
    return 0;
  }
  if (vm.count("show-key")) {
    std::error_code ec;
    std::filesystem::create_directories(c.data_dir + "/keys", ec);
    auto keys = outpost::LoadOrCreateKeys(c.data_dir + "/keys", "hub");
    if (!keys.ok()) {
      std::cerr << "outpost-hub: " << keys.status().ToString() << "\n";
      return 1;
    }
    std::cout << keys->public_z85 << "\n";
    return 0;
  }
  if (vm.count("declare-restored")) {
    outpost::SystemClock clock;
    auto store = outpost::OpenHubStore(c);
    if (!store.ok()) {
      std::cerr << "outpost-hub: " << store.status().ToString() << "\n";
      return 1;
    }
    outpost::Rng rng(outpost::SeedFromOs());
    auto core = outpost::HubCore::Open(store->get(), clock, &rng, c.core);
    auto epoch = core.ok() ? (*core)->DeclareRestored() : outpost::Result<uint64_t>(core.status());
    if (!epoch.ok()) {
      std::cerr << "outpost-hub: " << epoch.status().ToString() << "\n";
      return 1;
    }
    std::cout << "outpost-hub: restore declared, hub epoch " << *epoch
              << "; sites reconcile with it at their next connection\n";
    return 0;
  }
  c.core.sync.dead_after = offline_after_ms;
  c.core.retention.max_age = keep_days * 86'400'000;
  c.core.retention.max_bytes = static_cast<uint64_t>(budget_mb) << 20;
  c.core.retention.site_quota = static_cast<uint64_t>(quota_mb) << 20;
  c.core.sync.idle_ping = ping_ms;
  c.core.sync.resend_after = resend_ms;
  spdlog::set_level(level);
  outpost::SetLogFormat(log_format).IgnoreError();  // checked above

  outpost::SystemClock clock;
  auto hub = outpost::HubServer::Open(c, clock, outpost::SeedFromOs());
  if (!hub.ok()) {
    spdlog::critical("hub.open_failed error=\"{}\"", hub.status().ToString());
    return 1;
  }
  outpost::Status s = (*hub)->Run();
  if (!s.ok()) {
    spdlog::critical("hub.failed error=\"{}\"", s.ToString());
    return 1;
  }
  return 0;
}
