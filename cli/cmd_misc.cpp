// outpostctl status, events, key create and retention trim: the commands outside the
// site, workflow and run groups.
#include <filesystem>
#include <iostream>
#include <string>

#include "cli/commands.h"
#include "common/keys.h"

namespace outpost::cli {

using json = nlohmann::json;

int HubStatus(const Args& a, HubClient& hub) {
  Reply r = hub.Call({{"op", "status"}});
  if (!r.ok()) return r.code;
  PrintResult(a.as_json, r.body["status"], PrintHubStatus);
  return kExitOk;
}

// The hub's audit log, one JSON object a line (an array with --json).
int HubEvents(const Args& a, HubClient& hub) {
  Reply r = hub.Call({{"op", "events"}, {"limit", a.limit}});
  if (!r.ok()) return r.code;
  if (a.as_json) {
    PrintJson(r.body["events"]);
  } else {
    for (const auto& e : r.body["events"]) std::cout << e.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  }
  return kExitOk;
}

// A one-time link that opens a dashboard session as this operator (hub/dashboard.h).
int DashboardLogin(const Args& a, HubClient& hub) {
  Reply r = hub.Call({{"op", "dashboard.login"}});
  if (!r.ok()) return r.code;
  if (a.as_json) {
    PrintJson(r.body);
    return kExitOk;
  }
  std::cout << Cell(r.body["url"]) << "\n";
  std::cerr << "Open this link within " << Cell(r.body["valid_seconds"]) << " s; it works once and logs "
            << "you in as " << Cell(r.body["operator"]) << " (" << Cell(r.body["role"]) << ").\n"
            << "Through an SSH tunnel, keep the path and put your end of the tunnel in place of "
            << "the host.\n";
  return kExitOk;
}

// The agent's status is printed as JSON, with or without --json.
int LocalStatus(const LocalClient& agent) {
  Reply r = agent.Call({{"op", "status"}});
  if (!r.ok()) return r.code;
  PrintJson(r.body["status"]);
  return kExitOk;
}

int RetentionTrim(const Args& a, const LocalClient& agent) {
  Reply r = agent.Call({{"op", "retention.trim"}});
  if (!r.ok()) return r.code;
  const json& t = r.body["trimmed"];
  if (a.as_json) {
    PrintJson(t);
  } else {
    std::cout << "removed " << t["outputs"] << " output(s) of " << t["runs"] << " finished run(s), "
              << t["bytes"] << " bytes; " << t["kept_bytes"] << " bytes of output kept\n";
  }
  return kExitOk;
}

// Makes DIR/NAME.key and DIR/NAME.pub for PATH (DIR/NAME or DIR/NAME.key); never
// overwrites a key.
int KeyCreate(const Args& a, const std::string& path) {
  std::filesystem::path p(path);
  std::string name = p.filename().string();
  if (name.size() > 4 && name.ends_with(".key")) name.resize(name.size() - 4);
  const std::string dir = p.parent_path().empty() ? "." : p.parent_path().string();
  const std::string secret_file = dir + "/" + name + ".key";
  if (std::filesystem::exists(secret_file)) {
    PrintError(secret_file + " already exists");
    return kExitConflict;
  }
  auto keys = LoadOrCreateKeys(dir, name);
  if (!keys.ok()) {
    PrintError(keys.status().message());
    return kExitFailed;
  }
  if (a.as_json) {
    PrintJson({{"public_key", keys->public_z85}, {"secret_file", secret_file}});
  } else {
    std::cout << keys->public_z85 << "\n";
  }
  return kExitOk;
}

}  // namespace outpost::cli
