// Clients: outpostctl's request/response round trip, to the agent on this machine or to
// the hub. Both send one JSON request and wait for its one JSON reply.
//
//  - LocalClient: the agent's control socket (common/protocol/control.h), newline-
//    delimited JSON over a unix socket; file permissions are the access control.
//  - HubClient: the hub's operator endpoint (docs/protocol.md "Operator API") over a
//    CURVE DEALER (common/transport/zmq_link.h), with this operator's keypair and the
//    pinned hub key. Each request carries a request id ("rid"); replies to earlier
//    requests are dropped.
//
// A failed call has already printed why (output.h) and carries the exit code to return.
//
// Thread-safety: each client belongs to the one thread that calls it.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cli/output.h"
#include "common/transport/zmq_link.h"

namespace outpost::cli {

// The outcome of a call: kExitOk and the reply, or the exit code for what went wrong.
struct Reply {
  int code = kExitOk;
  nlohmann::json body;

  bool ok() const { return code == kExitOk; }
};

class LocalClient {
 public:
  // `timeout_ms`: how long Call waits unless told otherwise.
  LocalClient(std::string socket_path, int timeout_ms)
      : socket_(std::move(socket_path)), timeout_ms_(timeout_ms) {}

  Reply Call(const nlohmann::json& req) const { return Call(req, timeout_ms_); }
  // `timeout_ms` -1: wait as long as it takes (run.wait).
  Reply Call(const nlohmann::json& req, int timeout_ms, int pass_fd = -1) const;

 private:
  std::string socket_;
  int timeout_ms_;
};

// Where the hub is and who we are, as given (options or environment, args.h).
struct HubAddress {
  std::string hub_dir;   // a hub's data directory: fills in what is not given below
  std::string endpoint;  // the operator endpoint, e.g. tcp://hub:7401
  std::string hub_key;   // the hub's public key, or a file holding it
  std::string key;       // this operator's secret key file NAME.key, NAME.pub beside it
};

class HubClient {
 public:
  explicit HubClient(int timeout_ms) : timeout_ms_(timeout_ms) {}
  ~HubClient();

  // Resolves the address, loads our key and starts connecting. Returns kExitOk, or
  // prints why not and returns kExitUsage (something not given) or kExitUnreachable.
  int Open(const HubAddress& given);
  // Sends `req` and waits up to the timeout for its reply; a hub error reply's "code"
  // picks the exit code (ExitCodeForHubError).
  Reply Call(nlohmann::json req);

 private:
  // Each returns "" or what was wrong.
  static std::string ReadHubDir(HubAddress* addr);
  static std::string CheckGiven(const HubAddress& addr);
  std::string Connect(const HubAddress& addr);
  // Handles what the connection reported; a reply (or a refusal) ends the call.
  std::optional<Reply> TakeReply();

  int timeout_ms_;
  std::unique_ptr<ZmqContext> ctx_;
  std::unique_ptr<Connector> conn_;
  std::string endpoint_;
  bool connected_ = false;
  bool handshake_failed_ = false;  // the CURVE handshake broke (a wrong hub key?)
  uint64_t rid_ = 0;
};

}  // namespace outpost::cli
