// outpostctl: the operator's command line. By default it talks to the hub's operator
// endpoint over CURVE (JSON requests, docs/protocol.md "Operator API"); with --local it
// talks to the agent on this machine through the control socket in its data directory.
//
// Exit codes: 0 success; 1 the operation failed (or, with --wait, a run did not
// succeed); 2 usage or validation error; 3 the agent or hub could not be reached or
// refused our key; 4 no such site, workflow or run; 5 conflict with the current state.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <zmq.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/control.h"
#include "common/zmq_link.h"
#include "common/cron.h"
#include "common/workflow.h"

namespace {

using json = nlohmann::json;
using outpost::ControlCall;

constexpr int kExitFailed = 1, kExitUsage = 2, kExitUnreachable = 3, kExitNotFound = 4,
              kExitConflict = 5;

const char* kUsage = R"(usage: outpostctl [--hub-dir DIR | --hub ENDPOINT --hub-key KEY --key FILE] [--json] COMMAND
       outpostctl --local [--data-dir DIR | --socket PATH] [--json] COMMAND

fleet commands (through the hub's operator endpoint):
  site list                                   every site: state, online, labels, backlog
  site show NAME
  site add NAME --key PUB [--label k=v]...    enroll an agent's public key (or a file holding it)
  site accept NAME [--as NEW] [--label k=v]...  enroll a pending site (hub --accept-unknown)
  site revoke NAME                            refuse the site from now on; cuts its open link
  site label NAME k=v... [k-]...              set (k=v) or remove (k-) labels; placement follows
  workflow apply FILE [--target k=v[,k=v]]    place a definition on every site matching the target
  workflow list | workflow remove NAME
  run start WORKFLOW [--site NAME | --target SELECTOR] [--param k=v]... [--priority N] [--request ID] [--wait]
  run list [--site S] [--workflow W] [--state X] [--limit N]
  run show ID | run logs ID TASK | run cancel ID
  run approve ID TASK [--reject]              decide an approval gate (delivered when the site is reachable)
  status                                      fleet overview: online/offline, last seen, backlog
  events [--limit N]                          the hub's audit log (enrollments, online/offline...)
  key create FILE                             make an operator keypair FILE.key / FILE.pub

local commands (--local, the agent on this machine, no hub needed):
  run start FILE|NAME [--param k=v]... [--priority N] [--wait]
                                              start a run of a file, or by name of a workflow
                                              placed here or in the agent's --workflows; print its id
  workflow list                               workflows this site runs by name, their schedules
  run list [--limit N] | run show ID | run logs ID TASK [--attempt N] | run cancel ID
  run approve ID TASK [--reject]              decide an approval gate on this site
  status
  workflow validate FILE                      check a workflow file (no agent or hub needed)
  retention trim                              remove finished runs' output now, by the agent's
                                              retain-output and output-budget
  workflow schedule FILE [--from ISO-8601] [--count N]
                                              the next N (10) fire times of its schedule, one
                                              ISO-8601 time with offset a line

options:
  --hub-dir DIR    a hub's data directory on this machine: endpoint, hub key and admin key
                   are read from it (default $OUTPOST_HUB_DIR)
  --hub ENDPOINT   the hub's operator endpoint (default $OUTPOST_HUB), e.g. tcp://hub:7401
  --hub-key KEY    the hub's public key or a file holding it (default $OUTPOST_HUB_KEY)
  --key FILE       this operator's secret key file NAME.key, NAME.pub beside it ($OUTPOST_KEY)
  --local          talk to the agent on this machine
  --data-dir DIR   the agent's data directory (default $OUTPOST_DATA_DIR or /var/lib/outpost-agent)
  --socket PATH    the agent's control socket (default DIR/agent.sock)
  --json           machine-readable output
  --timeout-ms N   how long to wait for the agent or hub (default 30000)
exit codes: 0 ok; 1 the operation failed (or, with --wait, a run did not succeed);
            2 usage or invalid input; 3 agent or hub unreachable, or our key refused;
            4 no such site, workflow or run; 5 conflict with the current state
)";

struct Args {
  bool local = false, as_json = false, wait = false, reject = false;
  std::string data_dir, socket;
  std::string hub_dir, hub, hub_key, key;
  std::string site, workflow, state, target, request, as, key_arg;
  std::vector<std::string> labels;
  int timeout_ms = 30000;
  int attempt = 0;
  int limit = 100;
  int count = 10;
  std::optional<int> priority;
  std::string from;
  std::map<std::string, std::string> params;
  std::vector<std::string> words;
};

int Usage(const std::string& why) {
  std::cerr << "outpostctl: " << why << "\n\n" << kUsage;
  return kExitUsage;
}

bool ParseInt(const std::string& s, int* out) {
  char* end = nullptr;
  long v = strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || v < 0 || v > 1'000'000'000) return false;
  *out = static_cast<int>(v);
  return true;
}

// Returns an empty string on success, or what was wrong.
std::string ParseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    std::string w = argv[i];
    auto next = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    std::string v;
    if (w == "--local") a->local = true;
    else if (w == "--json") a->as_json = true;
    else if (w == "--wait") a->wait = true;
    else if (w == "--reject") a->reject = true;
    else if (w == "--data-dir") { if (!next(&a->data_dir)) return "--data-dir needs a value"; }
    else if (w == "--socket") { if (!next(&a->socket)) return "--socket needs a value"; }
    else if (w == "--hub-dir") { if (!next(&a->hub_dir)) return "--hub-dir needs a value"; }
    else if (w == "--hub") { if (!next(&a->hub)) return "--hub needs an endpoint"; }
    else if (w == "--hub-key") { if (!next(&a->hub_key)) return "--hub-key needs a key or file"; }
    else if (w == "--key") {
      // `site add NAME --key PUB` names the site's key; elsewhere --key is ours.
      if (!next(&v)) return "--key needs a value";
      if (a->words.size() >= 2 && a->words[0] == "site") a->key_arg = v;
      else a->key = v;
    }
    else if (w == "--site") { if (!next(&a->site)) return "--site needs a name"; }
    else if (w == "--workflow") { if (!next(&a->workflow)) return "--workflow needs a name"; }
    else if (w == "--state") { if (!next(&a->state)) return "--state needs a value"; }
    else if (w == "--target") { if (!next(&a->target)) return "--target needs k=v[,k=v]"; }
    else if (w == "--request") { if (!next(&a->request)) return "--request needs an id"; }
    else if (w == "--as") { if (!next(&a->as)) return "--as needs a name"; }
    else if (w == "--label") {
      if (!next(&v) || v.find('=') == std::string::npos) return "--label needs k=v";
      a->labels.push_back(v);
    }
    else if (w == "--timeout-ms") {
      if (!next(&v) || !ParseInt(v, &a->timeout_ms)) return "--timeout-ms needs a number";
    } else if (w == "--attempt") {
      if (!next(&v) || !ParseInt(v, &a->attempt)) return "--attempt needs a number";
    } else if (w == "--limit") {
      if (!next(&v) || !ParseInt(v, &a->limit)) return "--limit needs a number";
    } else if (w == "--count") {
      if (!next(&v) || !ParseInt(v, &a->count) || a->count < 1 || a->count > 10000) {
        return "--count needs a number from 1 to 10000";
      }
    } else if (w == "--from") {
      if (!next(&a->from)) return "--from needs an ISO-8601 time";
    } else if (w == "--priority") {
      int p = 0;
      const bool neg = i + 1 < argc && argv[i + 1][0] == '-';
      if (!next(&v) || !ParseInt(neg ? v.substr(1) : v, &p) || p > 1000) {
        return "--priority needs an integer from -1000 to 1000";
      }
      a->priority = neg ? -p : p;
    } else if (w == "--param") {
      if (!next(&v)) return "--param needs k=v";
      auto eq = v.find('=');
      if (eq == std::string::npos || eq == 0) return "--param needs k=v, got '" + v + "'";
      a->params[v.substr(0, eq)] = v.substr(eq + 1);
    } else if (w == "-h" || w == "--help") {
      std::cout << kUsage;
      exit(0);
    } else if (w.size() > 1 && w[0] == '-') {
      return "unknown option '" + w + "'";
    } else {
      a->words.push_back(w);
    }
  }
  if (a->socket.empty()) {
    if (a->data_dir.empty()) {
      const char* env = getenv("OUTPOST_DATA_DIR");
      a->data_dir = env ? env : "/var/lib/outpost-agent";
    }
    a->socket = a->data_dir + "/agent.sock";
  }
  auto env = [](const char* name, std::string* out) {
    if (const char* e = getenv(name); e && out->empty()) *out = e;
  };
  env("OUTPOST_HUB_DIR", &a->hub_dir);
  env("OUTPOST_HUB", &a->hub);
  env("OUTPOST_HUB_KEY", &a->hub_key);
  env("OUTPOST_KEY", &a->key);
  return "";
}

void Print(const json& j) { std::cout << j.dump(2, ' ', false, json::error_handler_t::replace) << "\n"; }

std::string OrDash(const json& j) { return j.is_string() ? j.get<std::string>() : "-"; }

void PrintRunTable(const json& run) {
  printf("run       %s\n", run["id"].get<std::string>().c_str());
  printf("workflow  %s\n", run["workflow"].get<std::string>().c_str());
  printf("state     %s\n", run["state"].get<std::string>().c_str());
  printf("created   %s\n", OrDash(run["created"]).c_str());
  printf("finished  %s\n", OrDash(run["finished"]).c_str());
  if (!run["message"].get<std::string>().empty()) {
    printf("message   %s\n", run["message"].get<std::string>().c_str());
  }
  if (run.contains("trigger") && !run["trigger"].get<std::string>().empty()) {
    printf("trigger   %s\n", run["trigger"].get<std::string>().c_str());
  }
  if (run.contains("outcome") && !run["outcome"].get<std::string>().empty()) {
    printf("outcome   %s before compensation\n", run["outcome"].get<std::string>().c_str());
  }
  printf("\n%-24s %-10s %-8s %-5s %s\n", "TASK", "STATE", "ATTEMPTS", "EXIT", "MESSAGE");
  for (const auto& t : run["tasks"]) {
    std::string exit = t["exit_code"].is_number() ? std::to_string(t["exit_code"].get<int>()) : "-";
    if (t["signal"].get<int>() != 0) exit = "sig" + std::to_string(t["signal"].get<int>());
    printf("%-24s %-10s %-8d %-5s %s\n", t["id"].get<std::string>().c_str(),
           t["state"].get<std::string>().c_str(), t["attempts"].get<int>(), exit.c_str(),
           t["message"].get<std::string>().c_str());
  }
}

// Sends a request; on failure prints the error and sets *code.
bool Call(const Args& a, const json& req, json* resp, int* code, int timeout_ms) {
  auto r = ControlCall(a.socket, req, timeout_ms);
  if (!r.ok()) {
    std::cerr << "outpostctl: " << r.status().message() << "\n";
    *code = kExitUnreachable;
    return false;
  }
  if (!(*r).value("ok", false)) {
    std::cerr << "outpostctl: " << (*r).value("error", std::string("request failed")) << "\n";
    *code = kExitFailed;
    return false;
  }
  *resp = std::move(*r);
  return true;
}

int RunStart(const Args& a) {
  if (a.words.size() != 3) return Usage("run start needs FILE or the name of a placed workflow");
  json req;
  if (!std::filesystem::exists(a.words[2]) && a.words[2].find('/') == std::string::npos) {
    // Not a file: a workflow the hub placed on this site, started by name.
    req = {{"op", "run.start"}, {"workflow", a.words[2]}, {"params", a.params}};
  } else {
    auto def = outpost::LoadWorkflowFile(a.words[2]);
    if (!def.ok()) {
      std::cerr << def.status().message() << "\n";
      return kExitUsage;
    }
    auto params = def->ResolveParams(a.params);
    if (!params.ok()) {
      std::cerr << "outpostctl: " << params.status().message() << "\n";
      return kExitUsage;
    }
    req = {{"op", "run.start"}, {"source", def->source}, {"file", a.words[2]},
           {"params", a.params}};
  }
  if (a.priority) req["priority"] = *a.priority;
  json resp;
  int code = 0;
  if (!Call(a, req, &resp, &code, a.timeout_ms)) return code;
  const std::string id = resp["id"];
  if (!a.wait) {
    if (a.as_json) Print({{"id", id}});
    else std::cout << id << "\n";
    return 0;
  }
  if (!a.as_json) std::cerr << id << "\n";
  if (!Call(a, {{"op", "run.wait"}, {"id", id}}, &resp, &code, -1)) return code;
  if (a.as_json) Print(resp["run"]);
  else PrintRunTable(resp["run"]);
  return resp["run"]["state"] == "succeeded" ? 0 : kExitFailed;
}

// `workflow schedule FILE`: the next fire times, so a schedule can be checked before it
// is deployed. No agent or hub needed.
int WorkflowSchedule(const Args& a, const std::string& file) {
  auto def = outpost::LoadWorkflowFile(file);
  if (!def.ok()) {
    std::cerr << def.status().message() << "\n";
    return kExitUsage;
  }
  if (!def->schedule) {
    std::cerr << "outpostctl: " << file << ": workflow '" << def->name << "' has no schedule\n";
    return kExitUsage;
  }
  auto tz = outpost::TimeZone::Load(def->schedule->timezone);
  if (!tz.ok()) {
    std::cerr << "outpostctl: " << file << ": " << tz.status().message() << "\n";
    return kExitUsage;
  }
  auto spec = outpost::ParseCron(def->schedule->cron);
  if (!spec.ok()) {
    std::cerr << "outpostctl: " << file << ": " << spec.status().message() << "\n";
    return kExitUsage;
  }
  outpost::TimeMs from = outpost::SystemClock().Now();
  if (!a.from.empty()) {
    auto t = outpost::ParseIsoTime(a.from);
    if (!t.ok()) {
      std::cerr << "outpostctl: --from: " << t.status().message() << "\n";
      return kExitUsage;
    }
    from = *t - 1;  // a tick exactly at --from is included
  }
  json times = json::array();
  outpost::TimeMs t = from;
  for (int i = 0; i < a.count; ++i) {
    t = outpost::NextFire(*spec, *tz, t);
    if (t == 0) break;
    times.push_back(outpost::FormatLocal(t, *tz));
  }
  if (a.as_json) {
    Print({{"workflow", def->name}, {"cron", def->schedule->cron}, {"timezone", tz->name()},
           {"catch_up", outpost::CatchUpName(def->schedule->catch_up)},
           {"overlap", outpost::OverlapName(def->schedule->overlap)}, {"next", times}});
  } else {
    for (const auto& s : times) std::cout << s.get<std::string>() << "\n";
  }
  return 0;
}

// ---------------------------------------------------------------------------------------
// Hub mode: JSON requests over a CURVE DEALER to the hub's operator endpoint.

int KeyCreate(const Args& a, const std::string& path) {
  std::filesystem::path p(path);
  std::string name = p.filename().string();
  if (name.size() > 4 && name.ends_with(".key")) name.resize(name.size() - 4);
  const std::string dir = p.parent_path().empty() ? "." : p.parent_path().string();
  if (std::filesystem::exists(dir + "/" + name + ".key")) {
    std::cerr << "outpostctl: " << dir << "/" << name << ".key already exists\n";
    return kExitConflict;
  }
  auto keys = outpost::LoadOrCreateKeys(dir, name);
  if (!keys.ok()) {
    std::cerr << "outpostctl: " << keys.status().message() << "\n";
    return kExitFailed;
  }
  if (a.as_json) Print({{"public_key", keys->public_z85}, {"secret_file", dir + "/" + name + ".key"}});
  else std::cout << keys->public_z85 << "\n";
  return 0;
}

class HubClient {
 public:
  // Resolves where the hub is and who we are; returns an error message or "".
  std::string Configure(const Args& a) {
    std::string endpoint = a.hub, hub_key = a.hub_key, key = a.key;
    if (!a.hub_dir.empty()) {
      std::ifstream in(a.hub_dir + "/hub.endpoints");
      json ep = json::parse(in, nullptr, false);
      if (ep.is_discarded() || !ep.is_object()) {
        return "cannot read " + a.hub_dir + "/hub.endpoints (is outpost-hub running with --data-dir " +
               a.hub_dir + "?)";
      }
      if (endpoint.empty()) {
        endpoint = ep.value("operators", "");
        // A hub bound to every interface is reached on loopback from here.
        auto any = endpoint.find("0.0.0.0");
        if (any != std::string::npos) endpoint.replace(any, 7, "127.0.0.1");
      }
      if (hub_key.empty()) hub_key = ep.value("hub_key", "");
      if (key.empty()) key = a.hub_dir + "/admin/admin.key";
    }
    if (endpoint.empty()) return "no hub given: pass --hub-dir DIR, or --hub ENDPOINT --hub-key KEY --key FILE (or --local)";
    if (hub_key.empty()) return "--hub-key is needed with --hub";
    if (key.empty()) return "--key (this operator's secret key file) is needed with --hub";
    auto server = outpost::ReadPublicKey(hub_key);
    if (!server.ok()) return "hub key: " + server.status().message();
    std::filesystem::path kp(key);
    std::string name = kp.filename().string();
    if (name.ends_with(".key")) name.resize(name.size() - 4);
    const std::string dir = kp.parent_path().empty() ? "." : kp.parent_path().string();
    if (!std::filesystem::exists(dir + "/" + name + ".key")) return "no operator key at " + dir + "/" + name + ".key (make one with: outpostctl key create FILE)";
    auto keys = outpost::LoadOrCreateKeys(dir, name);
    if (!keys.ok()) return "operator key: " + keys.status().message();
    auto ctx = outpost::ZmqContext::Create(1, 16);
    if (!ctx.ok()) return ctx.status().message();
    ctx_ = std::move(ctx).value();
    outpost::Connector::Options o;
    o.endpoint = endpoint;
    o.server_public_z85 = *server;
    o.keys = *keys;
    o.reconnect_ms = 200;
    o.reconnect_max_ms = 1000;
    auto c = outpost::Connector::Connect(*ctx_, o);
    if (!c.ok()) return c.status().message();
    conn_ = std::move(c).value();
    endpoint_ = endpoint;
    return "";
  }

  ~HubClient() {
    conn_.reset();
    ctx_.reset();
  }

  // Sends `req` and waits for its reply. *code is set on failure.
  bool Call(json req, int timeout_ms, json* resp, int* code) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    auto left = [&] {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now()).count();
      return ms > 0 ? static_cast<long>(ms) : 0L;
    };
    req["rid"] = ++rid_;
    const std::string payload = req.dump();
    bool sent = false;
    while (true) {
      if (!sent && connected_) {
        sent = conn_->Send(payload).ok();  // IMMEDIATE: fails until the handshake is done
      }
      std::vector<outpost::Connector::Event> events;
      conn_->Drain(&events);
      for (auto& ev : events) {
        using K = outpost::Connector::EventKind;
        if (ev.kind == K::kConnected) connected_ = true;
        if (ev.kind == K::kDisconnected) connected_ = false;
        if (ev.kind == K::kAuthFailed) {
          std::cerr << "outpostctl: the hub at " << endpoint_
                    << " refused this operator key (not in its operators/ directory)\n";
          *code = kExitUnreachable;
          return false;
        }
        if (ev.kind != K::kFrame) continue;
        json r = json::parse(ev.payload, nullptr, false);
        if (!r.is_object() || r.value("rid", uint64_t{0}) != rid_) continue;  // stale reply
        if (!r.value("ok", false)) {
          std::cerr << "outpostctl: " << r.value("error", std::string("request failed")) << "\n";
          const std::string c = r.value("code", "");
          *code = c == "not_found" ? kExitNotFound
                  : c == "conflict" ? kExitConflict
                  : c == "invalid" ? kExitUsage
                  : kExitFailed;
          *resp = std::move(r);
          return false;
        }
        *resp = std::move(r);
        return true;
      }
      if (!sent && connected_) continue;
      if (left() == 0) {
        std::cerr << "outpostctl: no answer from the hub at " << endpoint_ << " within "
                  << timeout_ms << " ms\n";
        *code = kExitUnreachable;
        return false;
      }
      zmq_pollitem_t items[] = {{conn_->socket(), 0, ZMQ_POLLIN, 0},
                                {conn_->monitor(), 0, ZMQ_POLLIN, 0}};
      zmq_poll(items, 2, std::min(left(), 200L));
    }
  }

 private:
  std::unique_ptr<outpost::ZmqContext> ctx_;
  std::unique_ptr<outpost::Connector> conn_;
  std::string endpoint_;
  bool connected_ = false;
  uint64_t rid_ = 0;
};

std::string Cell(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_null()) return "-";
  return j.dump();
}

std::string Labels(const json& labels) {
  std::string out;
  for (const auto& [k, v] : labels.items()) out += (out.empty() ? "" : ",") + k + "=" + Cell(v);
  return out.empty() ? "-" : out;
}

void PrintHubRun(const json& run) {
  printf("site      %s\n", run["site"].get<std::string>().c_str());
  printf("request   %s\n", Cell(run["request"]).c_str());
  if (!run["delivered"].get<bool>()) printf("delivered no (the site has not reported it yet)\n");
  PrintRunTable(run);
}

void PrintSites(const json& sites) {
  printf("%-20s %-9s %-8s %-25s %-8s %-8s %s\n", "SITE", "STATE", "ONLINE", "LAST SEEN", "BEHIND",
         "PENDING", "LABELS");
  for (const auto& s : sites) {
    printf("%-20s %-9s %-8s %-25s %-8s %-8s %s\n", Cell(s["name"]).c_str(), Cell(s["state"]).c_str(),
           s["online"].get<bool>() ? "yes" : "no", Cell(s["last_seen"]).c_str(),
           Cell(s["events_behind"]).c_str(), Cell(s["commands_pending"]).c_str(),
           Labels(s["labels"]).c_str());
  }
}

void PrintRunList(const json& runs) {
  printf("%-40s %-14s %-18s %-10s %-6s %s\n", "RUN", "SITE", "WORKFLOW", "STATE", "TASKS", "CREATED");
  for (const auto& r : runs) {
    std::string tasks = Cell(r["tasks_succeeded"]) + "/" + Cell(r["tasks_total"]);
    printf("%-40s %-14s %-18s %-10s %-6s %s\n", Cell(r["id"]).c_str(), Cell(r["site"]).c_str(),
           Cell(r["workflow"]).c_str(), Cell(r["state"]).c_str(), tasks.c_str(),
           Cell(r["created"]).c_str());
  }
}

bool ToSelector(const std::string& text, json* out, std::string* err) {
  *out = json::object();
  if (text.empty()) return true;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string part = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    size_t eq = part.find('=');
    if (eq == std::string::npos || eq == 0) {
      *err = "selector part '" + part + "' is not k=v";
      return false;
    }
    (*out)[part.substr(0, eq)] = part.substr(eq + 1);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return true;
}

int HubRunStart(const Args& a, HubClient& hub) {
  const auto& w = a.words;
  if (w.size() != 3) return Usage("run start needs WORKFLOW (a name applied at the hub)");
  json target;
  std::string err;
  if (!ToSelector(a.target, &target, &err)) return Usage(err);
  // The request id makes a retried start idempotent: the same id never makes two runs.
  json req = {{"op", "run.start"}, {"workflow", w[2]}, {"params", a.params}, {"target", target}};
  if (a.priority) req["priority"] = *a.priority;
  if (!a.site.empty()) req["site"] = a.site;
  if (!a.request.empty()) req["request"] = a.request;
  json resp;
  int code = 0;
  if (!hub.Call(req, a.timeout_ms, &resp, &code)) return code;
  if (!a.wait) {
    if (a.as_json) {
      Print({{"request", resp["request"]}, {"runs", resp["runs"]}, {"sites", resp["sites"]},
             {"duplicate", resp["duplicate"]}});
    } else {
      for (const auto& r : resp["runs"]) std::cout << r.get<std::string>() << "\n";
    }
    return 0;
  }
  // --wait: poll the hub's view until every run is final.
  json finals = json::array();
  bool all_ok = true;
  for (const auto& id : resp["runs"]) {
    if (!a.as_json) std::cerr << id.get<std::string>() << "\n";
    json show;
    while (true) {
      if (!hub.Call({{"op", "run.show"}, {"id", id}}, a.timeout_ms, &show, &code)) return code;
      const std::string st = show["run"]["state"];
      if (st == "succeeded" || st == "failed" || st == "cancelled" || st == "compensated" ||
          st == "compensation_failed")
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    all_ok = all_ok && show["run"]["state"] == "succeeded";
    finals.push_back(show["run"]);
  }
  if (a.as_json) {
    Print(finals);
  } else {
    for (const auto& r : finals) {
      PrintHubRun(r);
      printf("\n");
    }
  }
  return all_ok ? 0 : kExitFailed;
}

int HubDispatch(const Args& a) {
  const auto& w = a.words;
  HubClient hub;
  if (std::string err = hub.Configure(a); !err.empty()) {
    std::cerr << "outpostctl: " << err << "\n";
    return err.starts_with("no hub given") || err.starts_with("--") ? kExitUsage : kExitUnreachable;
  }
  json resp;
  int code = 0;
  auto call = [&](const json& req) { return hub.Call(req, a.timeout_ms, &resp, &code); };
  if (w[0] == "status" && w.size() == 1) {
    if (!call({{"op", "status"}})) return code;
    const json& st = resp["status"];
    if (a.as_json) {
      Print(st);
      return 0;
    }
    const json& s = st["sites"];
    printf("sites     %s enrolled: %s online, %s offline; %s pending, %s revoked\n",
           Cell(s["enrolled"]).c_str(), Cell(s["online"]).c_str(), Cell(s["offline"]).c_str(),
           Cell(s["pending"]).c_str(), Cell(s["revoked"]).c_str());
    printf("backlog   %s events not yet at the hub, %s commands not yet applied\n",
           Cell(st["events_behind"]).c_str(), Cell(st["commands_pending"]).c_str());
    printf("runs      %s\n", Labels(st["runs"]).c_str());
    printf("workflows %s\n\n", Cell(st["workflows"]).c_str());
    printf("%-20s %-8s %-25s %-8s %-8s %-8s %s\n", "SITE", "ONLINE", "LAST SEEN", "EVENTS", "BEHIND",
           "PENDING", "LABELS");
    for (const auto& r : st["site_rows"]) {
      printf("%-20s %-8s %-25s %-8s %-8s %-8s %s\n", Cell(r["name"]).c_str(),
             r["online"].get<bool>() ? "yes" : "no", Cell(r["last_seen"]).c_str(),
             Cell(r["events_received"]).c_str(), Cell(r["events_behind"]).c_str(),
             Cell(r["commands_pending"]).c_str(), Labels(r["labels"]).c_str());
    }
    return 0;
  }
  if (w[0] == "events" && w.size() == 1) {
    if (!call({{"op", "events"}, {"limit", a.limit}})) return code;
    if (a.as_json) {
      Print(resp["events"]);
    } else {
      for (const auto& e : resp["events"]) std::cout << e.dump() << "\n";
    }
    return 0;
  }
  if (w[0] == "site" && w.size() >= 2) {
    json labels = json::object();
    for (const auto& l : a.labels) labels[l.substr(0, l.find('='))] = l.substr(l.find('=') + 1);
    json req;
    if (w[1] == "list" && w.size() == 2) {
      if (!call({{"op", "site.list"}})) return code;
      if (a.as_json) Print(resp["sites"]);
      else PrintSites(resp["sites"]);
      return 0;
    }
    if (w.size() < 3) return Usage("site " + w[1] + " needs NAME");
    if (w[1] == "show" && w.size() == 3) {
      req = {{"op", "site.show"}, {"name", w[2]}};
    } else if (w[1] == "add" && w.size() == 3) {
      if (a.key_arg.empty()) return Usage("site add needs --key PUB (the agent's public key or its file)");
      auto key = outpost::ReadPublicKey(a.key_arg);
      if (!key.ok()) return Usage(key.status().message());
      req = {{"op", "site.add"}, {"name", w[2]}, {"key", *key}, {"labels", labels}};
    } else if (w[1] == "accept" && w.size() == 3) {
      req = {{"op", "site.accept"}, {"name", w[2]}, {"labels", labels}};
      if (!a.as.empty()) req["as"] = a.as;
    } else if (w[1] == "revoke" && w.size() == 3) {
      req = {{"op", "site.revoke"}, {"name", w[2]}};
    } else if (w[1] == "label" && w.size() >= 4) {
      json set = json::object(), remove = json::array();
      for (size_t i = 3; i < w.size(); ++i) {
        auto eq = w[i].find('=');
        if (eq != std::string::npos && eq > 0) set[w[i].substr(0, eq)] = w[i].substr(eq + 1);
        else if (w[i].size() > 1 && w[i].back() == '-') remove.push_back(w[i].substr(0, w[i].size() - 1));
        else return Usage("label '" + w[i] + "' is neither k=v nor k-");
      }
      req = {{"op", "site.label"}, {"name", w[2]}, {"set", set}, {"remove", remove}};
    } else {
      return Usage("unknown site command");
    }
    if (!call(req)) return code;
    if (a.as_json) Print(resp["site"]);
    else PrintSites(json::array({resp["site"]}));
    return 0;
  }
  if (w[0] == "workflow" && w.size() >= 2) {
    if (w[1] == "apply" && w.size() == 3) {
      auto def = outpost::LoadWorkflowFile(w[2]);
      if (!def.ok()) {
        std::cerr << def.status().message() << "\n";
        return kExitUsage;
      }
      json target;
      std::string err;
      if (!ToSelector(a.target, &target, &err)) return Usage(err);
      if (!call({{"op", "workflow.apply"}, {"source", def->source}, {"file", w[2]}, {"target", target}})) {
        return code;
      }
      if (a.as_json) {
        Print(resp);
      } else {
        std::cout << "workflow " << Cell(resp["workflow"]) << " (" << Cell(resp["hash"]).substr(0, 12)
                  << ") placed on " << resp["sites"].size() << " site(s): ";
        for (const auto& s : resp["sites"]) std::cout << s.get<std::string>() << " ";
        std::cout << "\n";
      }
      return 0;
    }
    if (w[1] == "list" && w.size() == 2) {
      if (!call({{"op", "workflow.list"}})) return code;
      if (a.as_json) {
        Print(resp["workflows"]);
      } else {
        printf("%-24s %-14s %-24s %s\n", "WORKFLOW", "HASH", "TARGET", "SITES");
        for (const auto& d : resp["workflows"]) {
          std::string sites;
          for (const auto& s : d["sites"]) sites += (sites.empty() ? "" : ",") + s.get<std::string>();
          printf("%-24s %-14s %-24s %s\n", Cell(d["name"]).c_str(),
                 Cell(d["hash"]).substr(0, 12).c_str(), Labels(d["target"]).c_str(),
                 sites.empty() ? "-" : sites.c_str());
        }
      }
      return 0;
    }
    if (w[1] == "remove" && w.size() == 3) {
      if (!call({{"op", "workflow.remove"}, {"name", w[2]}})) return code;
      if (a.as_json) Print(resp);
      else std::cout << "workflow " << w[2] << " removed from " << resp["sites"].size() << " site(s)\n";
      return 0;
    }
    return Usage("unknown workflow command");
  }
  if (w[0] == "run" && w.size() >= 2) {
    if (w[1] == "start") return HubRunStart(a, hub);
    if (w[1] == "list" && w.size() == 2) {
      json req = {{"op", "run.list"}, {"limit", a.limit}};
      if (!a.site.empty()) req["site"] = a.site;
      if (!a.workflow.empty()) req["workflow"] = a.workflow;
      if (!a.state.empty()) req["state"] = a.state;
      if (!call(req)) return code;
      if (a.as_json) Print(resp["runs"]);
      else PrintRunList(resp["runs"]);
      return 0;
    }
    if (w[1] == "show" && w.size() == 3) {
      if (!call({{"op", "run.show"}, {"id", w[2]}})) return code;
      if (a.as_json) Print(resp["run"]);
      else PrintHubRun(resp["run"]);
      return 0;
    }
    if (w[1] == "logs" && w.size() == 4) {
      if (!call({{"op", "run.logs"}, {"id", w[2]}, {"task", w[3]}})) return code;
      if (a.as_json) Print({{"run", w[2]}, {"task", w[3]}, {"output", resp["output"]}});
      else std::cout << resp["output"].get<std::string>();
      return 0;
    }
    if (w[1] == "approve" && w.size() == 4) {
      if (!call({{"op", "run.approve"}, {"id", w[2]}, {"task", w[3]}, {"reject", a.reject}})) return code;
      if (a.as_json) Print(resp);
      else std::cout << w[2] << " " << w[3] << ": " << Cell(resp["message"]) << "\n";
      return 0;
    }
    if (w[1] == "cancel" && w.size() == 3) {
      if (!call({{"op", "run.cancel"}, {"id", w[2]}})) return code;
      if (a.as_json) Print(resp);
      else std::cout << w[2] << ": " << Cell(resp["message"]) << "\n";
      return 0;
    }
  }
  return Usage("unknown command");
}

int Dispatch(const Args& a) {
  const auto& w = a.words;
  if (w.empty()) return Usage("no command");
  if (w[0] == "workflow" && w.size() == 3 && w[1] == "validate") {
    auto def = outpost::LoadWorkflowFile(w[2]);
    if (!def.ok()) {
      if (a.as_json) Print({{"valid", false}, {"errors", def.status().message()}});
      else std::cerr << def.status().message() << "\n";
      return kExitUsage;
    }
    if (a.as_json) {
      Print({{"valid", true}, {"name", def->name}, {"hash", def->hash},
             {"tasks", def->tasks.size()}});
    } else {
      std::cout << w[2] << ": ok (workflow '" << def->name << "', " << def->tasks.size()
                << " tasks, hash " << def->hash << ")\n";
    }
    return 0;
  }
  if (w[0] == "workflow" && w.size() == 3 && w[1] == "schedule") return WorkflowSchedule(a, w[2]);
  if (w[0] == "key" && w.size() == 3 && w[1] == "create") return KeyCreate(a, w[2]);
  if (!a.local) return HubDispatch(a);
  json resp;
  int code = 0;
  if (w[0] == "status" && w.size() == 1) {
    if (!Call(a, {{"op", "status"}}, &resp, &code, a.timeout_ms)) return code;
    Print(resp["status"]);
    return 0;
  }
  if (w.size() == 2 && w[0] == "workflow" && w[1] == "list") {
    if (!Call(a, {{"op", "workflow.list"}}, &resp, &code, a.timeout_ms)) return code;
    if (a.as_json) {
      Print(resp["workflows"]);
    } else {
      printf("%-24s %-14s %-7s %-20s %s\n", "WORKFLOW", "HASH", "SOURCE", "SCHEDULE", "NEXT");
      for (const auto& d : resp["workflows"]) {
        std::string cron = "-", next = "-";
        if (d.contains("schedule")) {
          cron = d["schedule"]["cron"].get<std::string>();
          next = d["schedule"]["next"].get<std::string>();
        }
        printf("%-24s %-14s %-7s %-20s %s\n", d["name"].get<std::string>().c_str(),
               d["hash"].get<std::string>().substr(0, 12).c_str(),
               d.value("source", std::string("-")).c_str(), cron.c_str(), next.c_str());
      }
    }
    return 0;
  }
  if (w.size() == 2 && w[0] == "retention" && w[1] == "trim") {
    if (!Call(a, {{"op", "retention.trim"}}, &resp, &code, a.timeout_ms)) return code;
    if (a.as_json) {
      Print(resp["trimmed"]);
    } else {
      const json& t = resp["trimmed"];
      std::cout << "removed " << t["outputs"] << " output(s) of " << t["runs"] << " finished run(s), "
                << t["bytes"] << " bytes; " << t["kept_bytes"] << " bytes of output kept\n";
    }
    return 0;
  }
  if (w[0] != "run" || w.size() < 2) return Usage("unknown command");
  if (w[1] == "start") return RunStart(a);
  if (w[1] == "list" && w.size() == 2) {
    if (!Call(a, {{"op", "run.list"}, {"limit", a.limit}}, &resp, &code, a.timeout_ms)) return code;
    if (a.as_json) {
      Print(resp["runs"]);
    } else {
      printf("%-40s %-20s %-10s %s\n", "RUN", "WORKFLOW", "STATE", "CREATED");
      for (const auto& r : resp["runs"]) {
        printf("%-40s %-20s %-10s %s\n", r["id"].get<std::string>().c_str(),
               r["workflow"].get<std::string>().c_str(), r["state"].get<std::string>().c_str(),
               r["created"].get<std::string>().c_str());
      }
    }
    return 0;
  }
  if (w[1] == "show" && w.size() == 3) {
    if (!Call(a, {{"op", "run.show"}, {"id", w[2]}}, &resp, &code, a.timeout_ms)) return code;
    if (a.as_json) Print(resp["run"]);
    else PrintRunTable(resp["run"]);
    return 0;
  }
  if (w[1] == "logs" && w.size() == 4) {
    json req = {{"op", "run.logs"}, {"id", w[2]}, {"task", w[3]}, {"attempt", a.attempt}};
    if (!Call(a, req, &resp, &code, a.timeout_ms)) return code;
    if (a.as_json) Print({{"run", w[2]}, {"task", w[3]}, {"output", resp["output"]}});
    else std::cout << resp["output"].get<std::string>();
    return 0;
  }
  if (w[1] == "approve" && w.size() == 4) {
    const char* user = getenv("USER");
    json req = {{"op", "run.approve"}, {"id", w[2]}, {"task", w[3]}, {"reject", a.reject},
                {"by", std::string(user ? user : "local operator") + " (local)"}};
    if (!Call(a, req, &resp, &code, a.timeout_ms)) return code;
    if (a.as_json) Print(resp);
    else std::cout << w[2] << " " << w[3] << ": " << (a.reject ? "rejected" : "approved") << "\n";
    return 0;
  }
  if (w[1] == "cancel" && w.size() == 3) {
    if (!Call(a, {{"op", "run.cancel"}, {"id", w[2]}}, &resp, &code, a.timeout_ms)) return code;
    if (a.as_json) Print(resp);
    else std::cout << w[2] << ": " << resp.value("message", resp.value("state", std::string())) << "\n";
    return 0;
  }
  return Usage("unknown command");
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  std::string err = ParseArgs(argc, argv, &a);
  if (!err.empty()) return Usage(err);
  return Dispatch(a);
}
