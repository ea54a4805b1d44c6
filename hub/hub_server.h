// HubServer: the outpost-hub daemon's driver. It owns the ZeroMQ context, the ZAP
// handler, the site and operator endpoints and a signalfd, and feeds HubCore from one
// zmq_poll loop on one thread. It is the only hub code that touches sockets.
//
// Files under the data directory:
//   db/                     the hub store (RocksDB), unless --store names PostgreSQL
//   keys/hub.key, hub.pub   the hub's CURVE keypair (made at first start, secret 0600)
//   operators/*.pub         operator public keys allowed on the operator endpoint;
//                           the file name (without .pub) is the operator's name
//   admin/admin.key, .pub   made at first start when operators/ is empty, so a local
//                           outpostctl --hub-dir DIR works out of the box
//   hub.endpoints           JSON {"sites": ..., "operators": ..., "http": ...} with the
//                           bound ports
//
// With --http-listen it also serves HTTP (common/transport/http_listener.h): /metrics in
// the Prometheus text format. The requests are answered on this thread, between frames.
//
// Thread-safety: one thread calls Run().
#pragma once

#include <map>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/json_fields.h"
#include "common/random.h"
#include "common/metrics.h"
#include "common/transport/http_listener.h"
#include "hub/dashboard.h"
#include "common/transport/zmq_link.h"
#include "hub/hub_core.h"
#include "hub/rocks_hub_store.h"

namespace outpost {

struct HubConfig {
  std::string data_dir;
  std::string sites_endpoint = "tcp://0.0.0.0:7400";
  std::string operators_endpoint = "tcp://127.0.0.1:7401";
  HubOptions core;
  int io_threads = 2;
  int max_sockets = 16384;
  bool make_admin_key = true;
  // HOST:PORT for /metrics (port 0 picks one, written to hub.endpoints); empty: off.
  std::string http_listen;
  // The hub store: empty for RocksDB under data_dir/db (one hub process), or a PostgreSQL
  // connection string (postgresql://... or key=value) shared by several hub processes,
  // with its schema.
  std::string store;
  std::string store_schema = "outpost";
};

// Whether `store` names PostgreSQL.
bool IsPostgresStore(const std::string& store);
// Opens the store the configuration names.
Result<std::unique_ptr<HubStore>> OpenHubStore(const HubConfig& config);

class HubServer {
 public:
  // SIGTERM, SIGINT and SIGHUP must already be blocked in every thread.
  static Result<std::unique_ptr<HubServer>> Open(const HubConfig& config, const Clock& clock,
                                                 uint64_t seed);
  ~HubServer();
  // Serves until SIGTERM or SIGINT; SIGHUP reloads operators/.
  Status Run();

 private:
  HubServer(const HubConfig& config, const Clock& clock, uint64_t seed);
  Status LoadOperators();
  void ReloadOperatorsIfChanged();
  // Takes up to `max` frames from sites; returns how many it took.
  size_t ServeSites(size_t max);
  void ServeOperators();
  void Send(HubOutput& out);
  // Group commit: the core's sync of the batches it applied, then what it held for it.
  Status FlushHeld();
  Status RestartCore();
  HttpReply OnHttp(const HttpRequest& request);
  std::string MetricsText();

  HubConfig config_;
  const Clock& clock_;
  Rng rng_;
  std::unique_ptr<HubStore> store_;
  std::unique_ptr<HubCore> core_;
  HubOptions core_options_;
  uint64_t store_restarts_ = 0;
  std::unique_ptr<ZmqContext> ctx_;
  std::unique_ptr<ZapHandler> zap_;
  std::unique_ptr<Listener> sites_;
  std::unique_ptr<Listener> operators_;
  struct OperatorEntry {
    std::string name;
    OperatorRole role = OperatorRole::kOperator;
    bool operator==(const OperatorEntry&) const = default;
  };
  std::map<std::string, OperatorEntry> operator_keys_;  // public key -> operator
  TimeMs operators_loaded_ = 0;
  int signal_fd_ = -1;
  uint64_t send_failures_ = 0;
  uint64_t handshake_failures_ = 0;
  TimeMs handshake_logged_ = -1'000'000;
  uint64_t operator_bad_requests_ = 0;
  std::unique_ptr<HttpListener> http_;
  std::unique_ptr<Dashboard> dashboard_;  // with http_
  TimeMs started_ = 0;
};

}  // namespace outpost
