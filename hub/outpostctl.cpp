// outpostctl: the operator's command line. With --local it talks to the agent on this
// machine through the control socket in the agent's data directory.
//
// Exit codes: 0 success; 1 the operation failed (or, with --wait, the run did not
// succeed); 2 usage or validation error; 3 the agent could not be reached.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "common/control.h"
#include "common/workflow.h"

namespace {

using json = nlohmann::json;
using outpost::ControlCall;

constexpr int kExitFailed = 1, kExitUsage = 2, kExitUnreachable = 3;

const char* kUsage = R"(usage: outpostctl --local [--data-dir DIR | --socket PATH] [--json] COMMAND

commands:
  workflow validate FILE                  check a workflow file; print every problem
  run start FILE [--param k=v]... [--wait]  start a run on the local agent; print its id
  run list [--limit N]                    recent runs, oldest first
  run show ID                             a run and its tasks
  run logs ID TASK [--attempt N]          captured output of a task's attempt (default: last)
  run cancel ID                           cancel a run (a finished run is left as it is)
  status                                  the agent's state and counters

options:
  --local          talk to the agent on this machine (the hub is not part of this build)
  --data-dir DIR   the agent's data directory (default $OUTPOST_DATA_DIR or /var/lib/outpost-agent)
  --socket PATH    the agent's control socket (default DIR/agent.sock)
  --json           machine-readable output
  --timeout-ms N   how long to wait for the agent (default 30000; --wait waits forever)
exit codes: 0 ok, 1 failed, 2 usage or invalid workflow, 3 agent unreachable
)";

struct Args {
  bool local = false, as_json = false, wait = false;
  std::string data_dir, socket;
  int timeout_ms = 30000;
  int attempt = 0;
  int limit = 100;
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
    else if (w == "--data-dir") { if (!next(&a->data_dir)) return "--data-dir needs a value"; }
    else if (w == "--socket") { if (!next(&a->socket)) return "--socket needs a value"; }
    else if (w == "--timeout-ms") {
      if (!next(&v) || !ParseInt(v, &a->timeout_ms)) return "--timeout-ms needs a number";
    } else if (w == "--attempt") {
      if (!next(&v) || !ParseInt(v, &a->attempt)) return "--attempt needs a number";
    } else if (w == "--limit") {
      if (!next(&v) || !ParseInt(v, &a->limit)) return "--limit needs a number";
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
  if (a.words.size() != 3) return Usage("run start needs FILE");
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
  json req = {{"op", "run.start"}, {"source", def->source}, {"file", a.words[2]},
              {"params", a.params}};
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
  if (!a.local) {
    return Usage("this build talks to a local agent only; pass --local");
  }
  json resp;
  int code = 0;
  if (w[0] == "status" && w.size() == 1) {
    if (!Call(a, {{"op", "status"}}, &resp, &code, a.timeout_ms)) return code;
    Print(resp["status"]);
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
