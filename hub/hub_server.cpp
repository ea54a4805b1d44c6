#include "hub/hub_server.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

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

Status HubServer::LoadOperators() {
  const std::string dir = config_.data_dir + "/operators";
  std::map<std::string, std::string> keys;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() != ".pub") continue;
    auto key = ReadPublicKey(entry.path().string());
    if (!key.ok()) {
      spdlog::error("hub.operator_key_invalid file={} error=\"{}\"", entry.path().string(),
                    key.status().message());
      continue;
    }
    keys[*key] = entry.path().stem().string();
  }
  if (ec) return Status::IoError("read " + dir + ": " + ec.message());
  operator_keys_ = std::move(keys);
  spdlog::info("hub.operators_loaded count={} dir={}", operator_keys_.size(), dir);
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
    std::ofstream(dir + "/operators/admin.pub") << admin.public_z85 << "\n";
    spdlog::info("hub.admin_key_created path={}/admin/admin.key", dir);
  }
  OUTPOST_RETURN_IF_ERROR(h->LoadOperators());

  OUTPOST_ASSIGN_OR_RETURN(h->store_, HubStore::Open(dir + "/db", HubStore::Options{}));
  OUTPOST_ASSIGN_OR_RETURN(h->core_, HubCore::Open(h->store_.get(), clock, &h->rng_, config.core));

  OUTPOST_ASSIGN_OR_RETURN(h->ctx_, ZmqContext::Create(config.io_threads, config.max_sockets));
  // ZAP first: no CURVE server socket exists without it.
  OUTPOST_ASSIGN_OR_RETURN(h->zap_, ZapHandler::Bind(*h->ctx_));
  HubServer* self = h.get();
  h->zap_->AddDomain("sites", [self](const std::string& key) { return self->core_->AuthorizeSite(key); });
  h->zap_->AddDomain("operators", [self](const std::string& key) -> std::optional<std::string> {
    auto it = self->operator_keys_.find(key);
    if (it == self->operator_keys_.end()) {
      spdlog::warn("hub.operator_refused key={}", key);
      return std::nullopt;
    }
    return it->second;
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

  json endpoints = {{"sites", h->sites_->endpoint()},
                    {"operators", h->operators_->endpoint()},
                    {"hub_key", keys.public_z85}};
  const std::string tmp = dir + "/hub.endpoints.tmp";
  std::ofstream(tmp) << endpoints.dump() << "\n";
  fs::rename(tmp, dir + "/hub.endpoints", ec);
  if (ec) return Status::IoError("write " + dir + "/hub.endpoints: " + ec.message());

  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&mask, s);
  h->signal_fd_ = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (h->signal_fd_ < 0) return Status::IoError(std::string("signalfd: ") + strerror(errno));
  spdlog::info("hub.started sites={} operators={} key={}", h->sites_->endpoint(),
               h->operators_->endpoint(), keys.public_z85);
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

void HubServer::ServeSites() {
  std::vector<InboundFrame> frames;
  sites_->Receive(&frames);
  HubOutput out;
  for (const auto& f : frames) core_->OnSiteFrame(f.identity, f.peer, f.payload, &out);
  Send(out);
}

void HubServer::ServeOperators() {
  std::vector<InboundFrame> frames;
  operators_->Receive(&frames);
  for (const auto& f : frames) {
    // ZAP ran at the handshake; a key removed from operators/ since is refused here.
    bool allowed = false;
    for (const auto& [key, name] : operator_keys_) allowed = allowed || name == f.identity;
    json reply;
    if (!allowed) {
      reply = {{"ok", false}, {"error", "operator '" + f.identity + "' is not allowed"},
               {"code", "denied"}};
    } else {
      json req = json::parse(f.payload, nullptr, false);
      if (req.is_discarded()) {
        ++operator_bad_requests_;
        reply = {{"ok", false}, {"error", "request is not valid JSON"}, {"code", "invalid"}};
      } else {
        HubOutput out;
        reply = core_->OnOperator(f.identity, req, &out);
        if (req.is_object() && req.contains("rid")) reply["rid"] = req["rid"];
        Send(out);
        spdlog::info("hub.operator_request operator={} op={} ok={}", f.identity,
                     req.is_object() ? req.value("op", "") : "", reply.value("ok", false));
      }
    }
    Status s = operators_->Send(f.peer, reply.dump(-1, ' ', false, json::error_handler_t::replace));
    if (!s.ok()) ++send_failures_;
  }
}

Status HubServer::Run() {
  bool stop = false;
  while (!stop) {
    zmq_pollitem_t items[] = {{zap_->socket(), 0, ZMQ_POLLIN, 0},
                              {sites_->socket(), 0, ZMQ_POLLIN, 0},
                              {operators_->socket(), 0, ZMQ_POLLIN, 0},
                              {nullptr, signal_fd_, ZMQ_POLLIN, 0}};
    const TimeMs now = clock_.Now();
    const TimeMs wake = core_->NextDeadline();
    long timeout = 60'000;
    if (wake > 0) timeout = static_cast<long>(std::clamp<TimeMs>(wake - now, 0, 60'000));
    int rc = zmq_poll(items, 4, timeout);
    if (rc < 0 && zmq_errno() != EINTR) {
      return Status::IoError(std::string("zmq_poll: ") + zmq_strerror(zmq_errno()));
    }
    // Drain every socket each round (reads never block), so no readiness is missed.
    zap_->Serve();
    ServeSites();
    ServeOperators();
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
    HubOutput out;
    core_->Tick(&out);
    Send(out);
  }
  spdlog::info("hub.stopped");
  return Status::Ok();
}

}  // namespace outpost
