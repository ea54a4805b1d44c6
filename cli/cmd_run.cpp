// outpostctl run ...: starting runs (and, with --wait, waiting for them), listing and
// showing them, their task output, approval gates and cancelling; on the fleet through
// the hub, or with --local on the agent here.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>

#include "cli/commands.h"
#include "cli/signing.h"
#include "common/workflow/workflow.h"

namespace outpost::cli {
namespace {

using json = nlohmann::json;

// ---------------------------------------------------------------------------------------
// The hub.

bool IsFinal(const std::string& state) {
  return state == "succeeded" || state == "failed" || state == "cancelled" ||
         state == "compensated" || state == "compensation_failed";
}

// One line of progress for a run as the hub sees it: where it is on the way to the site
// and how far its tasks are.
std::string Progress(const json& run) {
  auto str = [&](const char* k) {
    auto it = run.find(k);
    return it != run.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  auto flag = [&](const char* k) {
    auto it = run.find(k);
    return it != run.end() && it->is_boolean() && it->get<bool>();
  };
  if (!flag("delivered")) {
    return "waiting for site " + str("site") + " to take the start (queued at the hub)";
  }
  size_t done = 0, total = 0;
  if (auto t = run.find("tasks"); t != run.end() && t->is_array()) {
    for (const auto& task : *t) {
      ++total;
      auto st = task.find("state");
      if (st != task.end() && st->is_string() && st->get<std::string>() != "pending" &&
          st->get<std::string>() != "running" && st->get<std::string>() != "waiting" &&
          st->get<std::string>() != "awaiting_approval") {
        ++done;
      }
    }
  }
  return str("state") + " on " + str("site") + ", " + std::to_string(done) + "/" +
         std::to_string(total) + " tasks done";
}

// Polls the hub's view of run `id` until it is final or `deadline` (0: none) passes; the
// reply holds that view. Progress goes to stderr when it changes (not with --json).
Reply WaitForHubRun(const Args& a, HubClient& hub, const std::string& id,
                    std::chrono::steady_clock::time_point deadline) {
  std::string last;
  while (true) {
    Reply show = hub.Call({{"op", "run.show"}, {"id", id}});
    if (!show.ok()) return show;
    const json& run = show.body["run"];
    const std::string state = run.contains("state") && run["state"].is_string()
                                  ? run["state"].get<std::string>()
                                  : "";
    if (IsFinal(state)) return show;
    if (std::string p = Progress(run); !a.as_json && p != last) {
      std::cerr << id << ": " << p << "\n";
      last = p;
    }
    if (deadline != std::chrono::steady_clock::time_point{} &&
        std::chrono::steady_clock::now() >= deadline) {
      PrintError("gave up waiting for run " + id + " after --timeout " +
                 std::to_string(a.wait_timeout_s) + "s (" + Progress(run) +
                 "); it goes on: outpostctl run show " + id);
      return {kExitTimeout, show.body};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

// --wait: each run of a start once it is final; fails unless all of them succeeded.
int WaitForHubRuns(const Args& a, HubClient& hub, const json& ids) {
  json finals = json::array();
  bool all_ok = true;
  const auto deadline = a.wait_timeout_s > 0 ? std::chrono::steady_clock::now() +
                                                   std::chrono::seconds(a.wait_timeout_s)
                                             : std::chrono::steady_clock::time_point{};
  if (!ids.is_array()) {
    PrintError("the hub's reply names no runs");
    return kExitFailed;
  }
  for (const auto& id : ids) {
    if (!id.is_string()) continue;  // the hub's reply: run ids are strings
    Reply show = WaitForHubRun(a, hub, id.get<std::string>(), deadline);
    if (!show.ok()) return show.code;
    all_ok = all_ok && show.body["run"]["state"] == "succeeded";
    finals.push_back(show.body["run"]);
  }
  if (a.as_json) {
    PrintJson(finals);
  } else {
    for (const auto& r : finals) {
      PrintHubRun(r);
      printf("\n");
    }
  }
  return all_ok ? kExitOk : kExitFailed;
}

int HubStart(const Args& a, HubClient& hub) {
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
  int code = kExitOk;
  auto key = LoadOperatorSigningKey(a, &code);
  if (code != kExitOk) return code;
  if (int c = PrepareStart(a, key, hub, &req); c != kExitOk) return c;
  Reply r = hub.Call(req);
  if (!r.ok()) return r.code;
  if (a.wait) return WaitForHubRuns(a, hub, r.body["runs"]);
  if (a.as_json) {
    PrintJson({{"request", r.body["request"]},
               {"runs", r.body["runs"]},
               {"sites", r.body["sites"]},
               {"duplicate", r.body["duplicate"]}});
  } else {
    const json& dup = r.body.contains("duplicate") ? r.body["duplicate"] : json();
    if (dup.is_boolean() && dup.get<bool>()) {
      const json& id = r.body.contains("request") ? r.body["request"] : json();
      std::cerr << "request " << (id.is_string() ? id.get<std::string>() : "")
                << " was made before: these are the runs it started then (nothing new was "
                << "started)\n";
    }
    for (const auto& id : r.body["runs"]) {
      if (id.is_string()) std::cout << id.get<std::string>() << "\n";
    }
  }
  return kExitOk;
}

int HubList(const Args& a, HubClient& hub) {
  json req = {{"op", "run.list"}, {"limit", a.limit}};
  if (!a.site.empty()) req["site"] = a.site;
  if (!a.workflow.empty()) req["workflow"] = a.workflow;
  if (!a.state.empty()) req["state"] = a.state;
  if (!a.after.empty()) req["after"] = a.after;
  Reply r = hub.Call(req);
  if (!r.ok()) return r.code;
  PrintResult(a.as_json, r.body["runs"], PrintHubRunList);
  // More runs than this page: where the next one starts (on stderr, so --json stays a list).
  if (auto next = r.body.find("next"); next != r.body.end() && next->is_string()) {
    std::cerr << "more: outpostctl run list --after " << next->get<std::string>()
              << " (with the same filters)\n";
  }
  return kExitOk;
}

int HubShow(const Args& a, HubClient& hub, const std::string& id) {
  Reply r = hub.Call({{"op", "run.show"}, {"id", id}});
  if (!r.ok()) return r.code;
  PrintResult(a.as_json, r.body["run"], PrintHubRun);
  return kExitOk;
}

int HubLogs(const Args& a, HubClient& hub, const std::string& id, const std::string& task) {
  Reply r = hub.Call({{"op", "run.logs"}, {"id", id}, {"task", task}});
  if (!r.ok()) return r.code;
  if (a.as_json) {
    PrintJson({{"run", id}, {"task", task}, {"output", r.body["output"]}});
  } else {
    std::cout << r.body["output"].get<std::string>();
  }
  return kExitOk;
}

int HubApprove(const Args& a, HubClient& hub, const std::string& id, const std::string& task) {
  json req = {{"op", "run.approve"}, {"id", id}, {"task", task}, {"reject", a.reject}};
  int code = kExitOk;
  if (auto key = LoadOperatorSigningKey(a, &code)) {
    if (int c = SignRunDecision(a, *key, hub, "approve", id, task, &req); c != kExitOk) return c;
  } else if (code != kExitOk) {
    return code;
  }
  Reply r = hub.Call(req);
  if (!r.ok()) return r.code;
  if (a.as_json) {
    PrintJson(r.body);
  } else {
    std::cout << id << " " << task << ": " << Cell(r.body["message"]) << "\n";
  }
  return kExitOk;
}

int HubCancel(const Args& a, HubClient& hub, const std::string& id) {
  json req = {{"op", "run.cancel"}, {"id", id}};
  int code = kExitOk;
  if (auto key = LoadOperatorSigningKey(a, &code)) {
    if (int c = SignRunDecision(a, *key, hub, "cancel", id, "", &req); c != kExitOk) return c;
  } else if (code != kExitOk) {
    return code;
  }
  Reply r = hub.Call(req);
  if (!r.ok()) return r.code;
  if (a.as_json) {
    PrintJson(r.body);
  } else {
    std::cout << id << ": " << Cell(r.body["message"]) << "\n";
  }
  return kExitOk;
}

// ---------------------------------------------------------------------------------------
// The agent here (--local).

// The run.start request for a workflow FILE, or by name for a workflow placed here (when
// there is no such file); kExitOk, or kExitUsage (printed) for an invalid file or params.
int LocalStartRequest(const Args& a, json* req) {
  const std::string& what = a.words[2];
  if (!std::filesystem::exists(what) && what.find('/') == std::string::npos) {
    *req = {{"op", "run.start"}, {"workflow", what}, {"params", a.params}};
    return kExitOk;
  }
  auto def = LoadWorkflowFile(what);
  if (!def.ok()) {
    PrintWorkflowErrors(def.status());
    return kExitUsage;
  }
  auto params = def->ResolveParams(a.params);
  if (!params.ok()) {
    PrintError(params.status().message());
    return kExitUsage;
  }
  *req = {{"op", "run.start"}, {"source", def->source}, {"file", what}, {"params", a.params}};
  return kExitOk;
}

// Prints the new run's id; with --wait, waits for it and fails unless it succeeded.
int LocalStart(const Args& a, const LocalClient& agent) {
  if (a.words.size() != 3) return Usage("run start needs FILE or the name of a placed workflow");
  json req;
  if (int code = LocalStartRequest(a, &req); code != kExitOk) return code;
  if (a.priority) req["priority"] = *a.priority;
  Reply r = agent.Call(req);
  if (!r.ok()) return r.code;
  const std::string id = r.body["id"];
  if (!a.wait) {
    if (a.as_json) {
      PrintJson({{"id", id}});
    } else {
      std::cout << id << "\n";
    }
    return kExitOk;
  }
  if (!a.as_json) std::cerr << id << "\n";
  Reply done = agent.Call({{"op", "run.wait"}, {"id", id}}, -1);
  if (!done.ok()) return done.code;
  PrintResult(a.as_json, done.body["run"], PrintRunTable);
  return done.body["run"]["state"] == "succeeded" ? kExitOk : kExitFailed;
}

int LocalList(const Args& a, const LocalClient& agent) {
  Reply r = agent.Call({{"op", "run.list"}, {"limit", a.limit}});
  if (!r.ok()) return r.code;
  PrintResult(a.as_json, r.body["runs"], PrintLocalRunList);
  return kExitOk;
}

int LocalShow(const Args& a, const LocalClient& agent, const std::string& id) {
  Reply r = agent.Call({{"op", "run.show"}, {"id", id}});
  if (!r.ok()) return r.code;
  PrintResult(a.as_json, r.body["run"], PrintRunTable);
  return kExitOk;
}

int LocalLogs(const Args& a, const LocalClient& agent, const std::string& id,
              const std::string& task) {
  Reply r = agent.Call({{"op", "run.logs"}, {"id", id}, {"task", task}, {"attempt", a.attempt}});
  if (!r.ok()) return r.code;
  if (a.as_json) {
    PrintJson({{"run", id}, {"task", task}, {"output", r.body["output"]}});
  } else {
    std::cout << r.body["output"].get<std::string>();
  }
  return kExitOk;
}

// Decided "by" the local user, so the run's history says who it was.
int LocalApprove(const Args& a, const LocalClient& agent, const std::string& id,
                 const std::string& task) {
  const char* user = getenv("USER");
  const std::string by = std::string(user ? user : "local operator") + " (local)";
  Reply r = agent.Call(
      {{"op", "run.approve"}, {"id", id}, {"task", task}, {"reject", a.reject}, {"by", by}});
  if (!r.ok()) return r.code;
  if (a.as_json) {
    PrintJson(r.body);
  } else {
    std::cout << id << " " << task << ": " << (a.reject ? "rejected" : "approved") << "\n";
  }
  return kExitOk;
}

int LocalCancel(const Args& a, const LocalClient& agent, const std::string& id) {
  Reply r = agent.Call({{"op", "run.cancel"}, {"id", id}});
  if (!r.ok()) return r.code;
  if (a.as_json) {
    PrintJson(r.body);
  } else {
    std::cout << id << ": " << r.body.value("message", r.body.value("state", std::string()))
              << "\n";
  }
  return kExitOk;
}

}  // namespace

int HubRunCommand(const Args& a, HubClient& hub) {
  const auto& w = a.words;
  if (w[1] == "start") return HubStart(a, hub);
  if (w[1] == "list" && w.size() == 2) return HubList(a, hub);
  if (w[1] == "show" && w.size() == 3) return HubShow(a, hub, w[2]);
  if (w[1] == "logs" && w.size() == 4) return HubLogs(a, hub, w[2], w[3]);
  if (w[1] == "approve" && w.size() == 4) return HubApprove(a, hub, w[2], w[3]);
  if (w[1] == "cancel" && w.size() == 3) return HubCancel(a, hub, w[2]);
  return Usage("unknown command");
}

int LocalRunCommand(const Args& a, const LocalClient& agent) {
  const auto& w = a.words;
  if (w[1] == "start") return LocalStart(a, agent);
  if (w[1] == "list" && w.size() == 2) return LocalList(a, agent);
  if (w[1] == "show" && w.size() == 3) return LocalShow(a, agent, w[2]);
  if (w[1] == "logs" && w.size() == 4) return LocalLogs(a, agent, w[2], w[3]);
  if (w[1] == "approve" && w.size() == 4) return LocalApprove(a, agent, w[2], w[3]);
  if (w[1] == "cancel" && w.size() == 3) return LocalCancel(a, agent, w[2]);
  return Usage("unknown command");
}

}  // namespace outpost::cli
