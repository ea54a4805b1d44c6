// Clients: the round trip to the agent's control socket and to the hub (see client.h).
#include "cli/client.h"

#include <zmq.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/keys.h"
#include "common/protocol/control.h"

namespace outpost::cli {
namespace {

using json = nlohmann::json;

// Prints `message` and returns `code`.
int Fail(int code, const std::string& message) {
  PrintError(message);
  return code;
}

// The keypair in KEY_FILE (NAME.key, NAME.pub beside it), which must already exist.
std::string LoadOperatorKeys(const std::string& key_file, CurveKeys* keys) {
  std::filesystem::path kp(key_file);
  std::string name = kp.filename().string();
  if (name.ends_with(".key")) name.resize(name.size() - 4);
  const std::string dir = kp.parent_path().empty() ? "." : kp.parent_path().string();
  if (!std::filesystem::exists(dir + "/" + name + ".key")) {
    return "no operator key at " + dir + "/" + name +
           ".key (make one with: outpostctl key create FILE)";
  }
  auto loaded = LoadOrCreateKeys(dir, name);
  if (!loaded.ok()) return "operator key: " + loaded.status().message();
  *keys = *loaded;
  return "";
}

}  // namespace

Reply LocalClient::Call(const json& req, int timeout_ms, int pass_fd) const {
  auto r = ControlCall(socket_, req, timeout_ms, pass_fd);
  if (!r.ok()) return {Fail(kExitUnreachable, r.status().message()), json()};
  const json& body = *r;
  if (!body.is_object() || !body.contains("ok") || body["ok"] != true) {
    const auto err = body.is_object() ? body.find("error") : body.end();
    const auto code = body.is_object() ? body.find("code") : body.end();
    return {Fail(ExitCodeForHubError(code != body.end() && code->is_string() ? code->get<std::string>() : ""),
                 err != body.end() && err->is_string() ? err->get<std::string>() : "request failed"),
            json()};
  }
  return {kExitOk, std::move(*r)};
}

HubClient::~HubClient() {
  conn_.reset();
  ctx_.reset();
}

int HubClient::Open(const HubAddress& given) {
  HubAddress addr = given;
  if (std::string err = ReadHubDir(&addr); !err.empty()) return Fail(kExitUnreachable, err);
  if (std::string err = CheckGiven(addr); !err.empty()) return Fail(kExitUsage, err);
  if (std::string err = Connect(addr); !err.empty()) return Fail(kExitUnreachable, err);
  return kExitOk;
}

// --hub-dir: the endpoint and hub key from its hub.endpoints, our key from its admin/.
std::string HubClient::ReadHubDir(HubAddress* addr) {
  if (addr->hub_dir.empty()) return "";
  std::ifstream in(addr->hub_dir + "/hub.endpoints");
  json ep = json::parse(in, nullptr, false);
  if (ep.is_discarded() || !ep.is_object()) {
    return "cannot read " + addr->hub_dir + "/hub.endpoints (is outpost-hub running with " +
           "--data-dir " + addr->hub_dir + "?)";
  }
  // The file is the hub's, but read like any input: a field of another type reads as absent.
  auto text = [&ep](const char* key) {
    auto it = ep.find(key);
    return it != ep.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (addr->endpoint.empty()) {
    addr->endpoint = text("operators");
    // A hub bound to every interface is reached on loopback from here.
    auto any = addr->endpoint.find("0.0.0.0");
    if (any != std::string::npos) addr->endpoint.replace(any, 7, "127.0.0.1");
  }
  if (addr->hub_key.empty()) addr->hub_key = text("hub_key");
  if (addr->key.empty()) addr->key = addr->hub_dir + "/admin/admin.key";
  return "";
}

std::string HubClient::CheckGiven(const HubAddress& addr) {
  if (addr.endpoint.empty()) {
    return "no hub given: pass --hub-dir DIR, or --hub ENDPOINT --hub-key KEY --key FILE "
           "(or --local)";
  }
  if (addr.hub_key.empty()) return "--hub-key is needed with --hub";
  if (addr.key.empty()) return "--key (this operator's secret key file) is needed with --hub";
  return "";
}

std::string HubClient::Connect(const HubAddress& addr) {
  auto server = ReadPublicKey(addr.hub_key);
  if (!server.ok()) return "hub key: " + server.status().message();
  CurveKeys keys;
  if (std::string err = LoadOperatorKeys(addr.key, &keys); !err.empty()) return err;
  auto ctx = ZmqContext::Create(1, 16);
  if (!ctx.ok()) return ctx.status().message();
  ctx_ = std::move(ctx).value();
  Connector::Options o;
  o.endpoint = addr.endpoint;
  o.server_public_z85 = *server;
  o.keys = keys;
  o.reconnect_ms = 200;
  o.reconnect_max_ms = 1000;
  auto c = Connector::Connect(*ctx_, o);
  if (!c.ok()) return c.status().message();
  conn_ = std::move(c).value();
  endpoint_ = addr.endpoint;
  return "";
}

Reply HubClient::Call(json req) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
  auto left = [&] {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  deadline - std::chrono::steady_clock::now())
                  .count();
    return ms > 0 ? static_cast<long>(ms) : 0L;
  };
  req["rid"] = ++rid_;
  const std::string payload = req.dump(-1, ' ', false, json::error_handler_t::replace);
  bool sent = false;
  while (true) {
    if (!sent && connected_) {
      sent = conn_->Send(payload).ok();  // IMMEDIATE: fails until the handshake is done
    }
    if (std::optional<Reply> reply = TakeReply()) return std::move(*reply);
    if (!sent && connected_) continue;
    if (left() == 0) {
      if (handshake_failed_) {
        return {Fail(kExitUnreachable,
                     "the encrypted handshake with the hub at " + endpoint_ +
                         " failed: check that the hub key (--hub-key, or hub.endpoints in "
                         "--hub-dir) is this hub's public key (outpost-hub --show-key)"),
                json()};
      }
      return {Fail(kExitUnreachable, "no answer from the hub at " + endpoint_ + " within " +
                                         std::to_string(timeout_ms_) + " ms"),
              json()};
    }
    zmq_pollitem_t items[] = {{conn_->socket(), 0, ZMQ_POLLIN, 0},
                              {conn_->monitor(), 0, ZMQ_POLLIN, 0}};
    zmq_poll(items, 2, std::min(left(), 200L));
  }
}

std::optional<Reply> HubClient::TakeReply() {
  std::vector<Connector::Event> events;
  conn_->Drain(&events);
  for (auto& ev : events) {
    using K = Connector::EventKind;
    if (ev.kind == K::kConnected) connected_ = true;
    if (ev.kind == K::kDisconnected) connected_ = false;
    if (ev.kind == K::kHandshakeFailed) handshake_failed_ = true;
    if (ev.kind == K::kAuthFailed) {
      return Reply{Fail(kExitUnreachable, "the hub at " + endpoint_ +
                                              " refused this operator key (not in its "
                                              "operators/ directory, or its .pub file has a "
                                              "line the hub refused: see the hub's log)"),
                   json()};
    }
    if (ev.kind != K::kFrame) continue;
    json r = json::parse(ev.payload, nullptr, false);
    if (!r.is_object() || !r.contains("rid") || r["rid"] != rid_) continue;  // stale reply
    if (r["ok"] != true) {
      const json& err = r["error"];
      const json& code = r["code"];
      PrintError(err.is_string() ? err.get<std::string>() : "request failed");
      return Reply{ExitCodeForHubError(code.is_string() ? code.get<std::string>() : ""),
                   std::move(r)};
    }
    return Reply{kExitOk, std::move(r)};
  }
  return std::nullopt;
}

}  // namespace outpost::cli
