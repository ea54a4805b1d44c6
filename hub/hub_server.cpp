#include "hub/hub_server.h"

#include "hub/pg_hub_store.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <sodium.h>

namespace outpost {

using json = nlohmann::json;
namespace fs = std::filesystem;

HubServer::HubServer(const HubConfig& config, const Clock& clock, uint64_t seed)
    : config_(config), clock_(clock), rng_(seed) {}

HubServer::~HubServer() {
  // Sockets close before the context terminates.
  sites_.reset();
  operators_.reset();
  zap_.reset();
  ctx_.reset();
  if (signal_fd_ >= 0) close(signal_fd_);
}

// operators/ is read again at every operator handshake and at most once a second
// otherwise: adding, replacing or removing a .pub file takes effect without SIGHUP, and a
// removed or replaced key stops being honoured on its open connections.
void HubServer::ReloadOperatorsIfChanged() {
  const TimeMs now = clock_.Now();
  if (now - operators_loaded_ < 1000) return;
  operators_loaded_ = now;
  LoadOperators().IgnoreError();  // logged inside; the old list stays on a read error
}

Status HubServer::LoadOperators() {
  const std::string dir = config_.data_dir + "/operators";
  std::map<std::string, OperatorEntry> keys;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() != ".pub") continue;
    auto key = ReadPublicKey(entry.path().string());
    if (!key.ok()) {
      spdlog::error("hub.operator_key_invalid file={} error=\"{}\"", entry.path().string(),
                    key.status().message());
      continue;
    }
    OperatorEntry op{entry.path().stem().string(), OperatorRole::kOperator};
    // "role = viewer|operator|admin" on a later line (also "role: ..."; the key word in
    // any case; "#" starts a comment). Without one, admin.pub (the key the hub made at
    // first start) is admin and every other key an operator. Any other line, a role that
    // is not one of the three, or a second role line (even the same role) refuses the key
    // (logged): a typo or a contradiction never grants more.
    if (op.name == "admin") op.role = OperatorRole::kAdmin;
    std::ifstream in(entry.path());
    std::string line;
    bool bad = false;
    int role_line = 0;
    std::getline(in, line);  // the key
    int n = 2;
    for (; n < 64 && std::getline(in, line); ++n) {
      if (const auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
      auto trim = [](std::string v) {
        v.erase(0, v.find_first_not_of(" \t\r"));
        v.erase(v.find_last_not_of(" \t\r") + 1);
        return v;
      };
      line = trim(line);
      if (line.empty()) continue;
      const auto eq = line.find_first_of("=:");
      std::string k = eq == std::string::npos ? line : trim(line.substr(0, eq));
      for (auto& c : k) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string v = eq == std::string::npos ? "" : trim(line.substr(eq + 1));
      for (auto& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      auto role = k == "role" ? ParseOperatorRole(v) : std::nullopt;
      if (!role) {
        spdlog::error("hub.operator_key_refused file={} line={} text=\"{}\" reason=\"{}\"",
                      entry.path().string(), n, SafeText(line, 80),
                      k == "role" ? "role must be viewer, operator or admin"
                                  : "only 'role = viewer|operator|admin' may follow the key");
        bad = true;
      } else if (role_line != 0) {
        spdlog::error("hub.operator_key_refused file={} line={} text=\"{}\" reason=\"a second "
                      "role line (the first is line {}): one role per key\"",
                      entry.path().string(), n, SafeText(line, 80), role_line);
        bad = true;
      } else {
        op.role = *role;
        role_line = n;
      }
    }
    if (n == 64 && std::getline(in, line)) {
      spdlog::error("hub.operator_key_refused file={} reason=\"more than 63 lines: an operator "
                    "file is the key and one role line\"",
                    entry.path().string());
      bad = true;
    }
    if (!bad) keys[*key] = op;  // a file with a bad role grants nothing
  }
  if (ec) return Status::IoError("read " + dir + ": " + ec.message());
  for (const auto& [key, op] : operator_keys_) {
    if (!keys.count(key)) spdlog::warn("hub.operator_key_removed operator={}", op.name);
  }
  const bool changed = keys != operator_keys_;
  operator_keys_ = std::move(keys);
  if (changed) spdlog::info("hub.operators_loaded count={} dir={}", operator_keys_.size(), dir);
  return Status::Ok();
}

Result<std::unique_ptr<HubServer>> HubServer::Open(const HubConfig& config, const Clock& clock,
                                                   uint64_t seed) {
  std::unique_ptr<HubServer> h(new HubServer(config, clock, seed));
  const std::string& dir = config.data_dir;
  std::error_code ec;
  for (const char* sub : {"", "/keys", "/operators"}) {
    fs::create_directories(dir + sub, ec);
    if (ec) return Status::IoError("create " + dir + sub + ": " + ec.message());
  }
  chmod(dir.c_str(), 0700);
  OUTPOST_ASSIGN_OR_RETURN(auto keys, LoadOrCreateKeys(dir + "/keys", "hub"));
  if (config.make_admin_key && fs::is_empty(dir + "/operators", ec)) {
    fs::create_directories(dir + "/admin", ec);
    OUTPOST_ASSIGN_OR_RETURN(auto admin, LoadOrCreateKeys(dir + "/admin", "admin"));
    std::ofstream(dir + "/operators/admin.pub") << admin.public_z85 << "\nrole = admin\n";
    spdlog::info("hub.admin_key_created path={}/admin/admin.key", dir);
  }
  OUTPOST_RETURN_IF_ERROR(h->LoadOperators());

  OUTPOST_ASSIGN_OR_RETURN(h->store_, OpenHubStore(config));
  HubOptions core = config.core;
  core.keys = keys;
  if (h->store_->shared()) {
    // Several hub processes, one fleet: every one must hold the key the agents pin. The
    // first records it in the store; a process with another key refuses to start.
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    std::error_code ec;
    const fs::path abs = fs::absolute(dir, ec);
    core.process_name = std::string(host) + ":" + (ec ? dir : abs.string());
    OUTPOST_ASSIGN_OR_RETURN(auto fleet_key, h->store_->GetSetting("hub_key"));
    if (fleet_key && *fleet_key != keys.public_z85) {
      return Status::FailedPrecondition(
          "this hub's key (" + dir + "/keys/hub.pub: " + keys.public_z85 +
          ") is not the fleet's (" + SafeText(*fleet_key, 64) +
          ", recorded in the store by the first hub process): copy keys/, admin/ and "
          "operators/ from another hub process (docs/operations.md, \"Several hubs\")");
    }
    if (!fleet_key) {
      HubStore::Txn txn;
      txn.PutSetting("hub_key", keys.public_z85);
      OUTPOST_RETURN_IF_ERROR(h->store_->Commit(txn).WithContext("record the fleet's hub key"));
    }
  }
  // Test-only fault switch: die by SIGKILL in the middle of a bundle import.
  if (const char* v = getenv("OUTPOST_TEST_KILL_IMPORT_AFTER")) {
    const long n = std::strtol(v, nullptr, 10);
    core.after_import_record = [n](size_t done) {
      if (n >= 0 && static_cast<long>(done) >= n) raise(SIGKILL);
    };
  }
  h->core_options_ = core;
  OUTPOST_ASSIGN_OR_RETURN(h->core_, HubCore::Open(h->store_.get(), clock, &h->rng_, core));

  OUTPOST_ASSIGN_OR_RETURN(h->ctx_, ZmqContext::Create(config.io_threads, config.max_sockets));
  // ZAP first: no CURVE server socket exists without it.
  OUTPOST_ASSIGN_OR_RETURN(h->zap_, ZapHandler::Bind(*h->ctx_));
  HubServer* self = h.get();
  h->zap_->AddDomain("sites", [self](const std::string& key) { return self->core_->AuthorizeSite(key); });
  // An operator connection's identity is its key, so a key removed or replaced in
  // operators/ stops being honoured on its open connections too (checked on every frame).
  h->zap_->AddDomain("operators", [self](const std::string& key) -> std::optional<std::string> {
    if (!self->operator_keys_.count(key)) self->LoadOperators().IgnoreError();  // just added?
    if (!self->operator_keys_.count(key)) {
      spdlog::warn("hub.operator_refused key={}", key);
      return std::nullopt;
    }
    return key;
  });
  Listener::Options so;
  so.endpoint = config.sites_endpoint;
  so.zap_domain = "sites";
  so.keys = keys;
  so.max_message_bytes = kMaxFrameBytes * 2;  // oversize within this bound is refused and counted
  OUTPOST_ASSIGN_OR_RETURN(h->sites_, Listener::Bind(*h->ctx_, so));
  Listener::Options oo = so;
  oo.endpoint = config.operators_endpoint;
  oo.zap_domain = "operators";
  oo.max_message_bytes = kMaxFrameBytes;
  OUTPOST_ASSIGN_OR_RETURN(h->operators_, Listener::Bind(*h->ctx_, oo));

  if (!config.http_listen.empty()) {
    HttpListener::Options ho;
    ho.address = config.http_listen;
    auto http = HttpListener::Start(ho);
    if (!http.ok()) return http.status().WithContext("--http-listen");
    h->http_ = std::move(http).value();
    HubServer* self = h.get();
    h->dashboard_ = std::make_unique<Dashboard>(
        Dashboard::Options{},
        [self](const std::string& name) -> std::optional<OperatorRole> {
          for (const auto& [key, op] : self->operator_keys_) {
            if (op.name == name) return op.role;
          }
          return std::nullopt;
        },
        [] {
          unsigned char bytes[32];
          randombytes_buf(bytes, sizeof bytes);
          char hex[2 * sizeof bytes + 1];
          sodium_bin2hex(hex, sizeof hex, bytes, sizeof bytes);
          return std::string(hex);
        });
  }
  h->started_ = clock.Now();
  json endpoints = {{"sites", h->sites_->endpoint()},
                    {"operators", h->operators_->endpoint()},
                    {"hub_key", keys.public_z85}};
  if (h->http_) endpoints["http"] = h->http_->address();
  const std::string tmp = dir + "/hub.endpoints.tmp";
  std::ofstream(tmp) << endpoints.dump() << "\n";
  fs::rename(tmp, dir + "/hub.endpoints", ec);
  if (ec) return Status::IoError("write " + dir + "/hub.endpoints: " + ec.message());

  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&mask, s);
  h->signal_fd_ = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (h->signal_fd_ < 0) return Status::IoError(std::string("signalfd: ") + strerror(errno));
  spdlog::info("hub.started sites={} operators={} http={} key={} store={}",
               h->sites_->endpoint(), h->operators_->endpoint(),
               h->http_ ? h->http_->address() : "off", keys.public_z85,
               config.store.empty() ? "rocksdb" : "postgresql schema=" + config.store_schema);
  return h;
}

void HubServer::Send(HubOutput& out) {
  for (const auto& f : out.send) {
    Status s = sites_->Send(f.peer, EncodeMessage(f.message));
    if (!s.ok()) {
      // Unroutable (the connection is gone) or a full queue: the log resends later.
      ++send_failures_;
      spdlog::debug("hub.send_failed error=\"{}\"", s.message());
    }
  }
  out.send.clear();
}

Status HubServer::FlushHeld() {
  HubOutput synced;
  Status s = core_->Flush(&synced);
  Send(synced);  // empty after a failed sync
  return s;
}

size_t HubServer::ServeSites(size_t max) {
  std::vector<std::string> failed;
  sites_->TakeHandshakeFailures(&failed);
  operators_->TakeHandshakeFailures(&failed);
  if (!failed.empty()) {
    handshake_failures_ += failed.size();
    // At most one line a second: a scanner must not flood the log.
    const TimeMs now = clock_.Now();
    if (now - handshake_logged_ >= 1000) {
      spdlog::warn("hub.handshake_failed peer={} count={} hint=\"a client that pinned another "
                   "hub key (compare with outpost-hub --show-key), or one not speaking CURVE\"",
                   SafeText(failed.back(), 64), handshake_failures_);
      handshake_logged_ = now;
    }
  }
  std::vector<InboundFrame> frames;
  sites_->Receive(&frames, max);
  HubOutput out;
  // Group commit: the core holds the ACKs of the batches it applied until their synced
  // write, which it makes when the group is full, before an operator request, or when Run
  // finds no frame waiting.
  for (const auto& f : frames) core_->OnSiteFrame(f.identity, f.peer, f.payload, &out);
  Send(out);
  return frames.size();
}

void HubServer::ServeOperators() {
  std::vector<InboundFrame> frames;
  operators_->Receive(&frames);
  for (const auto& f : frames) {
    // ZAP ran at the handshake; a key removed from operators/ since is refused here.
    auto op = operator_keys_.find(f.identity);  // the identity is the key
    json reply;
    if (op == operator_keys_.end()) {
      reply = {{"ok", false},
               {"error", "this operator key is no longer listed in the hub's operators/ "
                         "directory"},
               {"code", "denied"}};
    } else {
      const std::string& name = op->second.name;
      const bool shallow = JsonDepthWithin(f.payload, kMaxRequestDepth);
      json req = shallow ? json::parse(f.payload, nullptr, false) : json(json::value_t::discarded);
      if (!shallow) {
        ++operator_bad_requests_;
        reply = {{"ok", false},
                 {"error", "request nests deeper than " + std::to_string(kMaxRequestDepth) +
                               " levels"},
                 {"code", "invalid"}};
      } else if (req.is_discarded()) {
        ++operator_bad_requests_;
        reply = {{"ok", false}, {"error", "request is not valid JSON"}, {"code", "invalid"}};
      } else if (req.is_object() && req.contains("op") && req["op"] == "dashboard.login") {
        // The dashboard's sessions live here, beside the HTTP listener, not in the core.
        if (!dashboard_) {
          reply = {{"ok", false},
                   {"error", "this hub serves no dashboard: start it with --http-listen"},
                   {"code", "invalid"}};
        } else {
          const std::string path = dashboard_->IssueLink(name, clock_.Now());
          reply = {{"ok", true},
                   {"url", "http://" + http_->address() + path},
                   {"path", path},
                   {"valid_seconds", Dashboard::Options{}.link_valid / 1000},
                   {"operator", name},
                   {"role", OperatorRoleName(op->second.role)}};
        }
        if (auto rid = req.find("rid"); rid != req.end() && rid->is_number_integer()) reply["rid"] = *rid;
        spdlog::info("hub.dashboard_login_link operator={}", name);
      } else {
        HubOutput out;
        reply = core_->OnOperator(name, req, &out, op->second.role);
        // The request id is echoed only if it is a number or a short string.
        if (auto rid = req.is_object() ? req.find("rid") : req.end();
            rid != req.end() && (rid->is_number_integer() ||
                                 (rid->is_string() && rid->get_ref<const std::string&>().size() <= 128))) {
          reply["rid"] = *rid;
        }
        Send(out);
        const auto op = req.is_object() ? req.find("op") : req.end();
        spdlog::info("hub.operator_request operator={} op={} ok={}", name,
                     op != req.end() && op->is_string() ? SafeText(op->get<std::string>(), 64)
                                                         : std::string("?"),
                     reply.is_object() && reply.contains("ok") && reply["ok"] == true);
      }
    }
    Status s = operators_->Send(f.peer, SafeDump(reply));
    if (!s.ok()) ++send_failures_;
  }
}

// A store write failed (full disk, I/O error, failed fsync): what reached the disk is
// unknown, so the core's memory cannot be trusted. Reopen the store and the core from
// what is really there, as a restart would; the sites' sessions start over (they say
// HELLO again and resend what was not acknowledged). Tries for 30 s, then gives up: the
// daemon exits with the error and its service manager restarts it.
bool IsPostgresStore(const std::string& store) {
  return store.rfind("postgresql://", 0) == 0 || store.rfind("postgres://", 0) == 0 ||
         store.find('=') != std::string::npos;
}

Result<std::unique_ptr<HubStore>> OpenHubStore(const HubConfig& config) {
  if (config.store.empty()) {
    OUTPOST_ASSIGN_OR_RETURN(auto s,
                             RocksHubStore::Open(config.data_dir + "/db", RocksHubStore::Options{}));
    return std::unique_ptr<HubStore>(std::move(s));
  }
  if (!IsPostgresStore(config.store)) {
    return Status::InvalidArgument("store '" + config.store +
                                   "': expected postgresql://... or a libpq key=value string");
  }
  PgHubStore::Options o;
  o.schema = config.store_schema;
  OUTPOST_ASSIGN_OR_RETURN(auto s, PgHubStore::Open(config.store, o));
  return std::unique_ptr<HubStore>(std::move(s));
}

Status HubServer::RestartCore() {
  spdlog::error("hub.store_write_failed: reopening the store and restarting the hub core");
  ++store_restarts_;
  core_.reset();
  store_.reset();
  Status last;
  for (int attempt = 0; attempt < 30; ++attempt) {
    if (attempt > 0) sleep(1);
    auto store = OpenHubStore(config_);
    if (!store.ok()) {
      last = store.status();
      continue;
    }
    store_ = std::move(store).value();
    auto core = HubCore::Open(store_.get(), clock_, &rng_, core_options_);
    if (core.ok()) {
      core_ = std::move(core).value();
      spdlog::info("hub.store_reopened attempts={} restarts={}", attempt + 1, store_restarts_);
      return Status::Ok();
    }
    last = core.status();
    store_.reset();
  }
  return last.WithContext("reopen the hub store after a failed write (30 attempts)");
}

HttpReply HubServer::OnHttp(const HttpRequest& request) {
  HttpReply reply;
  if (!FlushHeld().ok()) {  // the dashboard and /metrics read nothing that is not on disk
    reply.status = 503;
    reply.body = "outpost-hub: a sync of the store failed; it is being reopened\n";
    return reply;
  }
  if (dashboard_ && Dashboard::Serves(request.path)) {
    HubOutput out;
    reply = dashboard_->Handle(request, *core_, clock_.Now(), &out);
    Send(out);
    return reply;
  }
  if (request.method != "GET") {
    reply.status = 405;
    reply.body = "only GET is served here\n";
    return reply;
  }
  if (request.path == "/metrics") {
    reply.content_type = Exposition::kContentType;
    reply.body = MetricsText();
    return reply;
  }
  if (request.path == "/" || request.path == "/healthz") {
    reply.body = "outpost-hub: serving; metrics at /metrics, the dashboard at /ui/ (log in with "
                 "outpostctl dashboard login)\n";
    return reply;
  }
  reply.status = 404;
  reply.body = "not found: " + SafeText(request.path, 120) + " (this hub serves /metrics, and the dashboard at /ui/)\n";
  return reply;
}

std::string HubServer::MetricsText() {
  Exposition x;
  core_->Metrics(&x);
  using T = Exposition::Type;
  x.Family("outpost_hub_store_commit_seconds", T::kHistogram,
           "Latency of the hub store's writes, and of the syncs that make a group of them durable "
           "(since the store was last opened).");
  if (const Histogram* h = store_->commit_seconds()) x.Observe(*h);
  auto counter = [&x](const char* name, const char* help, uint64_t v) {
    x.Family(name, T::kCounter, help);
    x.Sample(static_cast<double>(v));
  };
  counter("outpost_hub_transport_handshake_failures_total",
          "CURVE handshakes that failed on the site and operator endpoints (a wrong pinned key, "
          "or a client not speaking CURVE).",
          handshake_failures_);
  counter("outpost_hub_send_failures_total",
          "Frames the transport could not send (connection gone or queue full; resent later).",
          send_failures_);
  counter("outpost_hub_store_restarts_total",
          "Times the hub reopened its store after a failed write.", store_restarts_);
  counter("outpost_hub_operator_bad_requests_total",
          "Operator frames that were not valid JSON or nested too deep.", operator_bad_requests_);
  counter("outpost_hub_http_requests_total", "HTTP requests answered.",
          http_ ? http_->counters().requests : 0);
  if (dashboard_) {
    const DashboardCounters& d = dashboard_->counters();
    counter("outpost_hub_dashboard_logins_total", "Dashboard login links used.", d.logins);
    counter("outpost_hub_dashboard_logins_refused_total",
            "Dashboard login links refused (unknown, used or expired).", d.logins_refused);
    counter("outpost_hub_dashboard_unauthenticated_total",
            "Dashboard requests without a valid session (answered 401).", d.unauthenticated);
    counter("outpost_hub_dashboard_csrf_refused_total",
            "Dashboard actions refused for a missing CSRF token or a foreign origin.", d.csrf_refused);
    counter("outpost_hub_dashboard_actions_total", "Cancels and approvals sent from the dashboard.",
            d.actions);
    x.Family("outpost_hub_dashboard_sessions", T::kGauge, "Open dashboard sessions.");
    x.Sample(static_cast<double>(dashboard_->sessions()));
  }
  x.Family("outpost_hub_start_time_seconds", T::kGauge, "When this hub process started (Unix time).");
  x.Sample(static_cast<double>(started_) / 1000.0);
  return x.Take();
}

Status HubServer::Run() {
  bool stop = false;
  while (!stop) {
    zmq_pollitem_t items[] = {{zap_->socket(), 0, ZMQ_POLLIN, 0},
                              {sites_->socket(), 0, ZMQ_POLLIN, 0},
                              {operators_->socket(), 0, ZMQ_POLLIN, 0},
                              {nullptr, signal_fd_, ZMQ_POLLIN, 0},
                              {nullptr, http_ ? http_->fd() : -1, ZMQ_POLLIN, 0},
                              {nullptr, store_->changes_fd(), ZMQ_POLLIN, 0}};
    const TimeMs now = clock_.Now();
    const TimeMs wake = core_->NextDeadline();
    long timeout = 1000;  // at least once a second: operators/ is watched
    if (wake > 0) timeout = static_cast<long>(std::clamp<TimeMs>(wake - now, 0, 1000));
    int rc = zmq_poll(items, 6, timeout);  // an fd of -1 is not polled
    if (rc < 0 && zmq_errno() != EINTR) {
      return Status::IoError(std::string("zmq_poll: ") + zmq_strerror(zmq_errno()));
    }
    // Drain every socket each round (reads never block), so no readiness is missed. Site
    // frames are taken one at a time, with operators, the dashboard and new handshakes
    // served between: while a thousand sites stream, a query waits for at most one batch
    // (and the write of the group held), not for every batch queued. The batches of a
    // round still share groups (group commit): a group is written when full or when the
    // round ends. (Slices of 4 gave `status` a median 14-16 ms under a million-event
    // stream, slices of 1 gave 12-13 ms: docs/performance.md.)
    constexpr size_t kSiteSlice = 1;
    for (;;) {
      zap_->Serve();
      ServeOperators();
      if (http_) http_->Serve([this](const HttpRequest& r) { return OnHttp(r); });
      if (store_->write_failed()) break;  // an operator's write failed: reopened below
      if (ServeSites(kSiteSlice) < kSiteSlice) break;
      if (store_->write_failed()) break;  // reopened below, before anything else is served
      if (clock_.Now() - now >= 1000) break;  // timers, signals and operators/ at least each second
    }
    // No frame waiting: the group's synced write, then its ACKs. A failed sync sends
    // nothing of the group and leaves write_failed() set (reopened below).
    FlushHeld().IgnoreError();
    if (items[3].revents) {
      signalfd_siginfo info;
      while (read(signal_fd_, &info, sizeof info) == sizeof info) {
        if (info.ssi_signo == SIGHUP) {
          LoadOperators().IgnoreError();
        } else {
          spdlog::info("hub.signal signo={}", info.ssi_signo);
          stop = true;
        }
      }
    }
    ReloadOperatorsIfChanged();
    HubOutput out;
    // Several hubs over PostgreSQL: what the other processes changed (notifications also
    // arrive during this process's own queries, so they are taken every round).
    if (store_->shared()) core_->OnStoreChanges(&out);
    core_->Tick(&out);
    Send(out);
    if (store_->write_failed()) OUTPOST_RETURN_IF_ERROR(RestartCore());
  }
  spdlog::info("hub.stopped");
  return Status::Ok();
}

}  // namespace outpost
