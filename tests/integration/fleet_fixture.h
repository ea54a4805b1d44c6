// The fleet fixture for integration tests: the real outpost-hub, real outpost-agent
// processes and outpostctl, over CURVE on loopback. Waits are bounded polls, never bare
// sleeps. Used by fleet_process_test.cpp and trust_process_test.cpp.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <thread>

#include "common/codec.h"
#include "common/protocol/control.h"
#include "common/protocol/wire.h"
#include "common/transport/zmq_link.h"
#include "simulator/processes.h"

namespace outpost::testing {

using json = nlohmann::json;
namespace fs = std::filesystem;

using sim::ReadAll;
using sim::Spawn;

inline bool Eventually(const std::function<bool()>& cond, int timeout_ms = 20000) {
  return sim::Eventually(cond, timeout_ms, 50);
}

inline void Stop(pid_t* pid, int sig) { sim::Kill(pid, sig); }

class FleetTest : public ::testing::Test {
 protected:
  struct Site {
    std::string name;
    std::string role;
    pid_t pid = -1;
  };

  void SetUp() override {
    static int n = 0;
    dir_ = fs::temp_directory_path() /
           ("outpost_fleet_" + std::to_string(getpid()) + "_" + std::to_string(++n));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    sites_ = {{"alpha", "web"}, {"beta", "web"}, {"gamma", "db"}};
  }
  void TearDown() override {
    for (auto& s : sites_) Stop(&s.pid, SIGKILL);
    Stop(&hub_pid_, SIGKILL);
    if (!HasFailure()) {
      fs::remove_all(dir_);
    } else {
      std::cerr << "fleet data and logs kept in " << dir_ << "\n";
    }
  }

  std::string HubDir() const { return (dir_ / "hub").string(); }
  std::string SiteDir(const std::string& s) const { return (dir_ / s).string(); }

  // Starts the hub; the first start picks free ports, later starts reuse them.
  void StartHub() {
    std::string sites_ep = "tcp://127.0.0.1:0", ops_ep = "tcp://127.0.0.1:0";
    if (!sites_endpoint_.empty()) {
      sites_ep = sites_endpoint_;
      ops_ep = ops_endpoint_;
    }
    fs::remove(HubDir() + "/hub.endpoints");
    hub_pid_ = Spawn({OUTPOST_HUB_BIN, "--data-dir", HubDir(), "--sites-endpoint", sites_ep,
                      "--operators-endpoint", ops_ep, "--offline-after-ms", "3000", "--ping-ms",
                      "500", "--resend-ms", "1000"},
                     (dir_ / "hub.log").string());
    ASSERT_TRUE(Eventually([&] { return fs::exists(HubDir() + "/hub.endpoints"); }, 10000))
        << "hub did not come up; see " << dir_ / "hub.log";
    json ep = json::parse(ReadAll(HubDir() + "/hub.endpoints"));
    sites_endpoint_ = ep["sites"];
    ops_endpoint_ = ep["operators"];
    hub_key_ = ep["hub_key"];
  }

  void StartAgent(Site& s, const std::string& data_dir = "") {
    const std::string dir = data_dir.empty() ? SiteDir(s.name) : data_dir;
    std::vector<std::string> argv = {OUTPOST_AGENT_BIN, "--data-dir", dir, "--site", s.name, "--hub",
                   sites_endpoint_, "--hub-key", hub_key_, "--sync-ping-ms", "500",
                   "--sync-dead-ms", "3000", "--sync-resend-ms", "1000", "--reconnect-max-ms",
                   "1000", "--kill-grace-ms", "300", "--label", "role=" + s.role};
    argv.insert(argv.end(), agent_extra_.begin(), agent_extra_.end());
    s.pid = Spawn(argv, (dir_ / (s.name + ".log")).string());
    ASSERT_TRUE(Eventually([&] {
      return ControlCall(dir + "/agent.sock", {{"op", "status"}}, 1000).ok();
    }, 10000)) << "agent " << s.name << " did not come up";
  }

  std::string AgentKey(const std::string& dir) {
    std::string out;
    Run(std::string(OUTPOST_AGENT_BIN) + " --data-dir " + dir + " --show-key", &out);
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }

  int Run(const std::string& cmd, std::string* out) {
    const std::string file = (dir_ / "cmd.out").string();
    int rc = system((cmd + " > " + file + " 2>" + file + ".err").c_str());
    *out = ReadAll(file);
    last_err_ = ReadAll(file + ".err");
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  }
  // outpostctl against the hub; returns the exit code and parses --json output.
  int Ctl(const std::string& args, json* out = nullptr) { return CtlAt(HubDir(), args, out); }
  // The same through the hub whose data directory is hub_dir (several hub processes).
  int CtlAt(const std::string& hub_dir, const std::string& args, json* out = nullptr) {
    std::string text;
    int rc = Run(std::string(OUTPOSTCTL_BIN) + " --hub-dir " + hub_dir +
                     " --timeout-ms 10000 --json " + args,
                 &text);
    if (out) *out = json::parse(text, nullptr, false);
    return rc;
  }
  json Agent(const std::string& site, const json& req) {
    auto r = ControlCall(SiteDir(site) + "/agent.sock", req, 10000);
    return r.ok() ? *r : json::object();
  }

  // Hub up, three agents up and enrolled with role labels, all online.
  void StartFleet() {
    StartHub();
    for (auto& s : sites_) {
      std::string key = AgentKey(SiteDir(s.name));
      ASSERT_EQ(Ctl("site add " + s.name + " --key '" + key + "' --label role=" + s.role), 0)
          << last_err_;
      StartAgent(s);
    }
    ASSERT_TRUE(AllOnline()) << ReadAll((dir_ / "hub.log").string());
  }
  bool AllOnline() {
    return Eventually([&] {
      json st;
      if (Ctl("status", &st) != 0) return false;
      return st["sites"]["online"] == sites_.size();
    });
  }

  std::string WriteWorkflow(const std::string& name, const std::string& yaml) {
    const std::string path = (dir_ / (name + ".yaml")).string();
    std::ofstream(path) << yaml;
    return path;
  }

  // Every site's events are at the hub exactly once, and the hub's view of each run
  // equals the site's own record of it.
  void ExpectConverged() {
    for (const auto& s : sites_) {
      ASSERT_TRUE(Eventually([&] {
        json st = Agent(s.name, {{"op", "status"}});
        json hub;
        if (Ctl("site show " + s.name, &hub) != 0 || !st.contains("status")) return false;
        return hub["events_received"] == st["status"]["log_head"] &&
               st["status"]["log_acked"] == st["status"]["log_head"] &&
               hub["events_behind"] == 0;
      }, 30000)) << "site " << s.name << " did not converge";
      json st = Agent(s.name, {{"op", "status"}});
      json hub;
      Ctl("site show " + s.name, &hub);
      EXPECT_EQ(hub["events_received"], st["status"]["log_head"]) << s.name;
      json local = Agent(s.name, {{"op", "run.list"}, {"limit", 1000}});
      for (const auto& r : local["runs"]) {
        json mine = Agent(s.name, {{"op", "run.show"}, {"id", r["id"]}})["run"];
        json theirs;
        ASSERT_EQ(Ctl("run show " + r["id"].get<std::string>(), &theirs), 0) << last_err_;
        EXPECT_EQ(theirs["state"], mine["state"]) << r["id"];
        EXPECT_EQ(theirs["site"], s.name);
        ASSERT_EQ(theirs["tasks"].size(), mine["tasks"].size()) << r["id"];
        for (size_t i = 0; i < mine["tasks"].size(); ++i) {
          EXPECT_EQ(theirs["tasks"][i]["id"], mine["tasks"][i]["id"]);
          EXPECT_EQ(theirs["tasks"][i]["state"], mine["tasks"][i]["state"]) << r["id"];
          EXPECT_EQ(theirs["tasks"][i]["attempts"], mine["tasks"][i]["attempts"]) << r["id"];
        }
      }
    }
  }

  fs::path dir_;
  std::vector<Site> sites_;
  pid_t hub_pid_ = -1;
  std::string sites_endpoint_, ops_endpoint_, hub_key_, last_err_;
  std::vector<std::string> agent_extra_;  // more agent options (a trust root, ...)
};

}  // namespace outpost::testing
