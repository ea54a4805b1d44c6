// Uses libzmq's C API directly: every call returns an error code we turn into a Status,
// so no exception can cross this adapter.
#include "common/transport/zmq_link.h"

#include <algorithm>

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace outpost {
namespace {

Status ZmqError(const std::string& what) {
  return Status::IoError(what + ": " + zmq_strerror(zmq_errno()));
}

Status SetInt(void* s, int opt, int v, const char* name) {
  if (zmq_setsockopt(s, opt, &v, sizeof v) != 0) return ZmqError(std::string("set ") + name);
  return Status::Ok();
}

Status SetStr(void* s, int opt, const std::string& v, const char* name) {
  if (zmq_setsockopt(s, opt, v.data(), v.size()) != 0) {
    return ZmqError(std::string("set ") + name);
  }
  return Status::Ok();
}

// Receives one multipart message (non-blocking). Returns false when nothing is waiting.
bool RecvMultipart(void* s, std::vector<std::string>* parts, std::string* user_id) {
  parts->clear();
  for (;;) {
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, s, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&msg);
      return !parts->empty();  // EAGAIN before the first part: nothing waiting
    }
    parts->emplace_back(static_cast<const char*>(zmq_msg_data(&msg)), zmq_msg_size(&msg));
    if (user_id != nullptr) {
      // Metadata rides on frames that came over the wire, not on the routing id frame
      // the ROUTER makes up; the payload frame carries it.
      if (parts->size() == 1) user_id->clear();
      const char* uid = zmq_msg_gets(&msg, "User-Id");
      if (uid != nullptr && *uid != '\0') *user_id = uid;
    }
    const bool more = zmq_msg_more(&msg);
    zmq_msg_close(&msg);
    if (!more) return true;
  }
}

Status SendParts(void* s, const std::vector<std::string>& parts) {
  for (size_t i = 0; i < parts.size(); ++i) {
    int flags = ZMQ_DONTWAIT | (i + 1 < parts.size() ? ZMQ_SNDMORE : 0);
    if (zmq_send(s, parts[i].data(), parts[i].size(), flags) < 0) {
      if (zmq_errno() == EAGAIN || zmq_errno() == EHOSTUNREACH) {
        return Status::Unavailable(std::string("peer not reachable now: ") + zmq_strerror(zmq_errno()));
      }
      return ZmqError("send");
    }
  }
  return Status::Ok();
}


}  // namespace

Result<std::unique_ptr<ZmqContext>> ZmqContext::Create(int io_threads, int max_sockets) {
  std::unique_ptr<ZmqContext> c(new ZmqContext());
  c->ctx_ = zmq_ctx_new();
  if (!c->ctx_) return ZmqError("zmq context");
  if (zmq_ctx_set(c->ctx_, ZMQ_IO_THREADS, io_threads) != 0 ||
      zmq_ctx_set(c->ctx_, ZMQ_MAX_SOCKETS, max_sockets) != 0) {
    return ZmqError("configure zmq context");
  }
  return c;
}

ZmqContext::~ZmqContext() {
  if (ctx_) zmq_ctx_term(ctx_);
}

Result<std::unique_ptr<ZapHandler>> ZapHandler::Bind(ZmqContext& ctx) {
  std::unique_ptr<ZapHandler> z(new ZapHandler());
  z->sock_ = zmq_socket(ctx.raw(), ZMQ_REP);
  if (!z->sock_) return ZmqError("zap socket");
  OUTPOST_RETURN_IF_ERROR(SetInt(z->sock_, ZMQ_LINGER, 0, "ZMQ_LINGER"));
  if (zmq_bind(z->sock_, "inproc://zeromq.zap.01") != 0) return ZmqError("bind zap handler");
  return z;
}

ZapHandler::~ZapHandler() {
  if (sock_) zmq_close(sock_);
}

void ZapHandler::AddDomain(const std::string& domain, Authorize authorize) {
  domains_.emplace_back(domain, std::move(authorize));
}

void ZapHandler::Serve() {
  std::vector<std::string> req;
  while (RecvMultipart(sock_, &req, nullptr)) {
    // version, request id, domain, address, identity, mechanism, credentials...
    std::string status = "400", text = "refused", user;
    if (req.size() >= 7 && req[0] == "1.0" && req[5] == "CURVE" && req[6].size() == 32) {
      char z85[41];
      zmq_z85_encode(z85, reinterpret_cast<const uint8_t*>(req[6].data()), 32);
      for (const auto& [domain, authorize] : domains_) {
        if (domain != req[2]) continue;
        if (auto who = authorize(z85)) {
          status = "200";
          text = "OK";
          user = *who;
        }
      }
    }
    if (status == "200") ++accepted_;
    else ++refused_;
    std::string request_id = req.size() > 1 ? req[1] : "";
    SendParts(sock_, {"1.0", request_id, status, text, user, ""}).IgnoreError();
  }
}

Result<std::unique_ptr<Listener>> Listener::Bind(ZmqContext& ctx, const Options& o) {
  std::unique_ptr<Listener> l(new Listener());
  l->sock_ = zmq_socket(ctx.raw(), ZMQ_ROUTER);
  if (!l->sock_) return ZmqError("router socket");
  void* s = l->sock_;
  OUTPOST_RETURN_IF_ERROR(SetInt(s, ZMQ_LINGER, 0, "ZMQ_LINGER"));
  OUTPOST_RETURN_IF_ERROR(SetInt(s, ZMQ_ROUTER_MANDATORY, 1, "ZMQ_ROUTER_MANDATORY"));
  OUTPOST_RETURN_IF_ERROR(SetInt(s, ZMQ_CURVE_SERVER, 1, "ZMQ_CURVE_SERVER"));
  OUTPOST_RETURN_IF_ERROR(SetStr(s, ZMQ_CURVE_SECRETKEY, o.keys.secret_z85, "ZMQ_CURVE_SECRETKEY"));
  OUTPOST_RETURN_IF_ERROR(SetStr(s, ZMQ_ZAP_DOMAIN, o.zap_domain, "ZMQ_ZAP_DOMAIN"));
  // Fail closed if no ZAP handler answers (a draft option; where this libzmq lacks it,
  // the ZapHandler that is always bound first keeps CURVE from accepting any key).
  int enforce = 1;
  zmq_setsockopt(s, 93 /* ZMQ_ZAP_ENFORCE_DOMAIN */, &enforce, sizeof enforce);
  int64_t max = static_cast<int64_t>(o.max_message_bytes);
  if (zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max) != 0) return ZmqError("set ZMQ_MAXMSGSIZE");
  // No ZMTP heartbeats on the listening side: libzmq cancels a heartbeat timer with a
  // scan of every timer of its I/O thread (poller_base_t::cancel_timer is O(n)), once per
  // message received, so with 10,000 connected sites each frame cost the hub a walk over
  // ~20,000 timers and 10,000 sites could not finish connecting. The sessions ping at the
  // application level (SyncOptions::idle_ping, dead_after); connections whose peer vanished
  // are found by TCP keepalive, in the kernel.
  const int idle_s = std::max(1, o.heartbeat_ms / 1000);
  OUTPOST_RETURN_IF_ERROR(SetInt(s, ZMQ_TCP_KEEPALIVE, 1, "ZMQ_TCP_KEEPALIVE"));
  OUTPOST_RETURN_IF_ERROR(SetInt(s, ZMQ_TCP_KEEPALIVE_IDLE, idle_s, "ZMQ_TCP_KEEPALIVE_IDLE"));
  OUTPOST_RETURN_IF_ERROR(SetInt(s, ZMQ_TCP_KEEPALIVE_INTVL, idle_s, "ZMQ_TCP_KEEPALIVE_INTVL"));
  OUTPOST_RETURN_IF_ERROR(SetInt(s, ZMQ_TCP_KEEPALIVE_CNT, 3, "ZMQ_TCP_KEEPALIVE_CNT"));
  OUTPOST_RETURN_IF_ERROR(SetInt(s, ZMQ_SNDHWM, 10000, "ZMQ_SNDHWM"));
  // A fleet reconnects at once after a hub restart: with libzmq's backlog of 100, most
  // SYNs of 1,000 sites were dropped and retried after 1, 3, 7, 15 s. The kernel caps it
  // at net.core.somaxconn (4,096 on Debian 12).
  OUTPOST_RETURN_IF_ERROR(SetInt(s, ZMQ_BACKLOG, 4096, "ZMQ_BACKLOG"));
  if (zmq_bind(s, o.endpoint.c_str()) != 0) return ZmqError("bind " + o.endpoint);
  char buf[256];
  size_t len = sizeof buf;
  if (zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, buf, &len) != 0) return ZmqError("last endpoint");
  l->endpoint_ = buf;
  char addr[64];
  snprintf(addr, sizeof addr, "inproc://outpost-listener-monitor-%p", s);
  if (zmq_socket_monitor(s, addr,
                         ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) !=
      0) {
    return ZmqError("socket monitor");
  }
  l->mon_ = zmq_socket(ctx.raw(), ZMQ_PAIR);
  if (!l->mon_) return ZmqError("monitor socket");
  OUTPOST_RETURN_IF_ERROR(SetInt(l->mon_, ZMQ_LINGER, 0, "ZMQ_LINGER"));
  if (zmq_connect(l->mon_, addr) != 0) return ZmqError("connect monitor");
  return l;
}

Listener::~Listener() {
  if (sock_) {
    zmq_socket_monitor(sock_, nullptr, 0);
    zmq_close(sock_);
  }
  if (mon_) zmq_close(mon_);
}

void Listener::TakeHandshakeFailures(std::vector<std::string>* peers) {
  std::vector<std::string> parts;
  while (mon_ && RecvMultipart(mon_, &parts, nullptr)) {
    if (parts.size() >= 2) peers->push_back(parts[1]);  // the second frame: the peer address
  }
}

void Listener::Receive(std::vector<InboundFrame>* out, size_t max) {
  std::vector<std::string> parts;
  std::string user;
  for (size_t n = 0; n < max && RecvMultipart(sock_, &parts, &user); ++n) {
    if (parts.size() != 2) {  // routing id + exactly one payload frame
      ++malformed_;
      continue;
    }
    out->push_back({std::move(parts[0]), user, std::move(parts[1])});
  }
}

Status Listener::Send(const std::string& peer, const std::string& payload) {
  return SendParts(sock_, {peer, payload});
}

Result<std::unique_ptr<Connector>> Connector::Connect(ZmqContext& ctx, const Options& o) {
  std::unique_ptr<Connector> c(new Connector());
  c->sock_ = zmq_socket(ctx.raw(), ZMQ_DEALER);
  if (!c->sock_) return ZmqError("dealer socket");
  void* s = c->sock_;
  OUTPOST_RETURN_IF_ERROR(SetInt(s, ZMQ_LINGER, 0, "ZMQ_LINGER"));
  OUTPOST_RETURN_IF_ERROR(SetInt(s, ZMQ_IMMEDIATE, 1, "ZMQ_IMMEDIATE"));
  OUTPOST_RETURN_IF_ERROR(SetInt(s, ZMQ_SNDHWM, o.send_hwm, "ZMQ_SNDHWM"));
  OUTPOST_RETURN_IF_ERROR(SetInt(s, ZMQ_RECONNECT_IVL, o.reconnect_ms, "ZMQ_RECONNECT_IVL"));
  OUTPOST_RETURN_IF_ERROR(SetInt(s, ZMQ_RECONNECT_IVL_MAX, o.reconnect_max_ms, "ZMQ_RECONNECT_IVL_MAX"));
  OUTPOST_RETURN_IF_ERROR(SetInt(s, ZMQ_HEARTBEAT_IVL, o.heartbeat_ms, "ZMQ_HEARTBEAT_IVL"));
  OUTPOST_RETURN_IF_ERROR(SetInt(s, ZMQ_HEARTBEAT_TIMEOUT, o.heartbeat_timeout_ms, "ZMQ_HEARTBEAT_TIMEOUT"));
  // No ZMQ_HEARTBEAT_TTL: it would make the hub arm (and cancel, with an O(n) scan of its
  // I/O thread's timers) a timer for every PING of every site; see Listener::Bind.
  OUTPOST_RETURN_IF_ERROR(SetInt(s, ZMQ_HANDSHAKE_IVL, o.handshake_ms, "ZMQ_HANDSHAKE_IVL"));
  int64_t max = static_cast<int64_t>(o.max_message_bytes);
  if (zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max) != 0) return ZmqError("set ZMQ_MAXMSGSIZE");
  OUTPOST_RETURN_IF_ERROR(SetStr(s, ZMQ_CURVE_SERVERKEY, o.server_public_z85, "ZMQ_CURVE_SERVERKEY"));
  OUTPOST_RETURN_IF_ERROR(SetStr(s, ZMQ_CURVE_PUBLICKEY, o.keys.public_z85, "ZMQ_CURVE_PUBLICKEY"));
  OUTPOST_RETURN_IF_ERROR(SetStr(s, ZMQ_CURVE_SECRETKEY, o.keys.secret_z85, "ZMQ_CURVE_SECRETKEY"));

  char addr[64];
  snprintf(addr, sizeof addr, "inproc://outpost-monitor-%p", s);
  const int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED |
                     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                     ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
  if (zmq_socket_monitor(s, addr, events) != 0) return ZmqError("socket monitor");
  c->mon_ = zmq_socket(ctx.raw(), ZMQ_PAIR);
  if (!c->mon_) return ZmqError("monitor socket");
  OUTPOST_RETURN_IF_ERROR(SetInt(c->mon_, ZMQ_LINGER, 0, "ZMQ_LINGER"));
  if (zmq_connect(c->mon_, addr) != 0) return ZmqError("connect monitor");
  if (zmq_connect(s, o.endpoint.c_str()) != 0) return ZmqError("connect " + o.endpoint);
  return c;
}

Connector::~Connector() {
  if (sock_) {
    zmq_socket_monitor(sock_, nullptr, 0);
    zmq_close(sock_);
  }
  if (mon_) zmq_close(mon_);
}

void Connector::Drain(std::vector<Event>* out) {
  std::vector<std::string> parts;
  while (RecvMultipart(mon_, &parts, nullptr)) {
    if (parts.empty() || parts[0].size() < 6) continue;
    uint16_t ev;
    memcpy(&ev, parts[0].data(), sizeof ev);  // native byte order, from this process
    if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) out->push_back({EventKind::kConnected, {}});
    else if (ev == ZMQ_EVENT_DISCONNECTED) out->push_back({EventKind::kDisconnected, {}});
    else if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) out->push_back({EventKind::kAuthFailed, {}});
    else out->push_back({EventKind::kHandshakeFailed, {}});
  }
  while (RecvMultipart(sock_, &parts, nullptr)) {
    if (parts.size() == 1) out->push_back({EventKind::kFrame, std::move(parts[0])});
  }
}

Status Connector::Send(const std::string& payload) { return SendParts(sock_, {payload}); }

}  // namespace outpost
