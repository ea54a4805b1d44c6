// The ZeroMQ transport: the one place in Outpost that touches libzmq. Everything here
// is CURVE-encrypted; exceptions from cppzmq are caught here and become Status values.
//
//  - Keys (CurveKeys, key files) live in common/keys.h; this adapter only uses them.
//  - ZapHandler: answers libzmq's ZAP requests (inproc://zeromq.zap.01) for every CURVE
//    server socket in the context, per domain, through an authorize callback that maps
//    a client's public key to an identity (site or operator name) or refuses it. It is
//    bound before any server socket, so a CURVE socket never runs without it.
//  - Listener: a ROUTER bound with CURVE server keys (the hub's site endpoint and its
//    operator endpoint). ROUTER_MANDATORY is set: an unroutable send is an error, never
//    a silent drop. Each received frame carries the ZAP-given identity (User-Id); ZAP
//    runs only at the handshake, so the caller checks that identity against its current
//    registry on every frame (a revoked key's open connection is refused from then on).
//  - Connector: a DEALER that connects out with CURVE client keys and the pinned server
//    key, with IMMEDIATE, a small send HWM, LINGER 0, reconnect backoff, ZMTP
//    heartbeats, a handshake timeout and MAXMSGSIZE; a socket monitor reports when the
//    CURVE handshake succeeded, failed authentication, or the connection dropped.
//
// Sends never block (DONTWAIT): a full queue or an absent peer returns kUnavailable and
// the caller resends later from its log. A successful send is not delivery; only the
// protocol's acknowledgements count.
//
// Thread-safety: each object belongs to the thread that polls it. The context is shared.
#pragma once

#include <zmq.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/keys.h"
#include "common/status.h"

namespace outpost {


class ZmqContext {
 public:
  static Result<std::unique_ptr<ZmqContext>> Create(int io_threads, int max_sockets);
  ~ZmqContext();
  void* raw() const { return ctx_; }

 private:
  ZmqContext() = default;
  void* ctx_ = nullptr;
};

class ZapHandler {
 public:
  // Returns the identity for a client key, or nullopt to refuse it.
  using Authorize = std::function<std::optional<std::string>(const std::string& public_z85)>;
  static Result<std::unique_ptr<ZapHandler>> Bind(ZmqContext& ctx);
  ~ZapHandler();
  void AddDomain(const std::string& domain, Authorize authorize);
  void* socket() const { return sock_; }
  // Call when socket() is readable: answers every pending request.
  void Serve();
  uint64_t accepted() const { return accepted_; }
  uint64_t refused() const { return refused_; }

 private:
  ZapHandler() = default;
  void* sock_ = nullptr;
  std::vector<std::pair<std::string, Authorize>> domains_;
  uint64_t accepted_ = 0, refused_ = 0;
};

struct InboundFrame {
  std::string peer;      // ROUTER routing id (opaque, changes per connection)
  std::string identity;  // User-Id set by ZAP: who the authenticated key belongs to
  std::string payload;
};

class Listener {
 public:
  struct Options {
    std::string endpoint;  // e.g. tcp://127.0.0.1:0
    std::string zap_domain;
    CurveKeys keys;
    size_t max_message_bytes = 8 << 20;
    int heartbeat_ms = 5000;
  };
  static Result<std::unique_ptr<Listener>> Bind(ZmqContext& ctx, const Options& options);
  ~Listener();
  void* socket() const { return sock_; }
  // The bound endpoint with the real port.
  const std::string& endpoint() const { return endpoint_; }
  // Moves the frames waiting on the socket (every one, or at most `max`) into `out`
  // (non-blocking). Malformed multipart messages are dropped and counted.
  void Receive(std::vector<InboundFrame>* out, size_t max = SIZE_MAX);
  Status Send(const std::string& peer, const std::string& payload);
  uint64_t malformed() const { return malformed_; }
  // Peers (their addresses) whose CURVE handshake broke since the last call — most often
  // a client that pinned another server key, or one that does not speak CURVE.
  void TakeHandshakeFailures(std::vector<std::string>* peers);

 private:
  Listener() = default;
  void* sock_ = nullptr;
  void* mon_ = nullptr;
  std::string endpoint_;
  uint64_t malformed_ = 0;
};

class Connector {
 public:
  struct Options {
    std::string endpoint;
    std::string server_public_z85;
    CurveKeys keys;
    size_t max_message_bytes = 8 << 20;
    int send_hwm = 16;
    int reconnect_ms = 500;
    int reconnect_max_ms = 30000;
    int heartbeat_ms = 5000;
    int heartbeat_timeout_ms = 15000;
    int handshake_ms = 30000;
  };
  // kAuthFailed: the server refused our key (ZAP). kHandshakeFailed: the handshake broke
  // for another reason (the link dropped or garbled it); libzmq reconnects by itself.
  enum class EventKind { kConnected, kDisconnected, kAuthFailed, kHandshakeFailed, kFrame };
  struct Event {
    EventKind kind;
    std::string payload;  // kFrame
  };
  static Result<std::unique_ptr<Connector>> Connect(ZmqContext& ctx, const Options& options);
  ~Connector();
  void* socket() const { return sock_; }
  void* monitor() const { return mon_; }
  // Drains the socket and the monitor (non-blocking).
  void Drain(std::vector<Event>* out);
  Status Send(const std::string& payload);

 private:
  Connector() = default;
  void* sock_ = nullptr;
  void* mon_ = nullptr;
};

}  // namespace outpost
