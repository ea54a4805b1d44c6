// Three outpost-hub processes over one PostgreSQL (the "pg" fixture's server,
// $OUTPOST_TEST_PG) and six agents that know all three: hubs are killed with SIGKILL in
// turn while the sites stream and operators start runs through whichever hub is up, and
// the sites move between hubs. Afterwards every event is at the hubs exactly once, every
// run's view equals the site's record, every command was applied once, and no request
// made two runs.
#include <atomic>

#include "tests/integration/fleet_fixture.h"

namespace outpost::testing {
namespace {

class HubClusterTest : public FleetTest {
 protected:
  static constexpr int kHubs = 3;

  void SetUp() override {
    FleetTest::SetUp();
    const char* pg = std::getenv("OUTPOST_TEST_PG");
    ASSERT_TRUE(pg) << "OUTPOST_TEST_PG is not set: run through ctest (fixture pg)";
    conninfo_ = pg;
    schema_ = "cluster_" + std::to_string(getpid());
    sites_ = {{"s1", "web"}, {"s2", "web"}, {"s3", "web"},
              {"s4", "db"},  {"s5", "db"},  {"s6", "db"}};
  }
  void TearDown() override {
    for (auto& p : hub_pids_) Stop(&p, SIGKILL);
    FleetTest::TearDown();
  }
  std::string HubN(int i) const { return (dir_ / ("hub" + std::to_string(i))).string(); }

  // Hub i on its own ports (kept across restarts), with the fleet's hub key and admin
  // operator copied from hub 0.
  void StartHubN(int i) {
    if (i > 0 && !fs::exists(HubN(i) + "/keys")) {
      fs::create_directories(HubN(i));
      for (const char* sub : {"keys", "admin", "operators"}) {
        fs::copy(HubN(0) + "/" + sub, HubN(i) + "/" + sub, fs::copy_options::recursive);
      }
    }
    std::string sites_ep = "tcp://127.0.0.1:0", ops_ep = "tcp://127.0.0.1:0";
    if (!hub_sites_[i].empty()) {
      sites_ep = hub_sites_[i];
      ops_ep = hub_ops_[i];
    }
    fs::remove(HubN(i) + "/hub.endpoints");
    hub_pids_[i] = Spawn({OUTPOST_HUB_BIN, "--data-dir", HubN(i), "--store", conninfo_,
                          "--store-schema", schema_, "--sites-endpoint", sites_ep,
                          "--operators-endpoint", ops_ep, "--offline-after-ms", "3000",
                          "--ping-ms", "500", "--resend-ms", "1000"},
                         (dir_ / ("hub" + std::to_string(i) + ".log")).string());
    ASSERT_TRUE(Eventually([&] { return fs::exists(HubN(i) + "/hub.endpoints"); }, 15000))
        << "hub " << i << " did not come up; see " << dir_ / ("hub" + std::to_string(i) + ".log");
    json ep = json::parse(ReadAll(HubN(i) + "/hub.endpoints"));
    hub_sites_[i] = ep["sites"];
    hub_ops_[i] = ep["operators"];
    if (i == 0) hub_key_ = ep["hub_key"];
    EXPECT_EQ(ep["hub_key"], hub_key_) << "every hub process has the fleet's hub key";
  }
  // outpostctl through hub i.
  int CtlVia(int i, const std::string& args, json* out = nullptr) {
    return CtlAt(HubN(i), args, out);
  }
  int LiveHub() const {
    for (int i = 0; i < kHubs; ++i) {
      if (hub_pids_[i] > 0) return i;
    }
    return -1;
  }
  bool AllSessionsUp() {
    return Eventually([&] {
      for (const auto& s : sites_) {
        json st = Agent(s.name, {{"op", "status"}});
        if (!st.contains("status") || st["status"]["hub"]["state"] != "established") return false;
      }
      return true;
    }, 30000);
  }

  std::string conninfo_, schema_;
  pid_t hub_pids_[kHubs] = {-1, -1, -1};
  std::string hub_sites_[kHubs], hub_ops_[kHubs];
};

TEST_F(HubClusterTest, HubsKilledInTurnLoseAndDuplicateNothing) {
  for (int i = 0; i < kHubs; ++i) StartHubN(i);
  std::string all;
  for (int i = 0; i < kHubs; ++i) all += (i ? "," : "") + hub_sites_[i];
  agent_extra_ = {"--hub-failover-ms", "1500"};
  for (auto& s : sites_) {
    std::string key = AgentKey(SiteDir(s.name));
    ASSERT_EQ(CtlVia(0, "site add " + s.name + " --key '" + key + "' --label role=" + s.role), 0)
        << last_err_;
  }
  // Every agent knows the three hubs; each starts at its own.
  sites_endpoint_ = all;
  for (auto& s : sites_) StartAgent(s);
  ASSERT_TRUE(AllSessionsUp()) << "not every agent reached a hub";
  const std::string wf = WriteWorkflow("tick", R"(name: tick
tasks:
  - id: a
    run: ["true"]
  - id: b
    run: ["true"]
    needs: [a]
)");
  ASSERT_EQ(CtlVia(1, "workflow apply " + wf), 0) << last_err_;

  // Operators start runs through whichever hub is up, each request sent twice (to two
  // hubs) as a client retrying after a timeout would; hubs die in turn meanwhile.
  std::set<std::string> runs_started;
  int requests = 0;
  // The run ids of outpostctl's answer to `req`, read with type checks (its dump never
  // throws on bad UTF-8).
  auto take_runs = [&](const json& answer, const std::string& req) {
    ASSERT_TRUE(answer.is_object() && answer.contains("runs") && answer["runs"].is_array())
        << req << ": " << answer.dump(-1, ' ', false, json::error_handler_t::replace);
    for (const auto& id : answer["runs"]) {
      ASSERT_TRUE(id.is_string()) << req << ": a run id that is not a string";
      runs_started.insert(id.get<std::string>());
    }
  };
  auto start_some = [&](int n) {
    for (int k = 0; k < n; ++k) {
      const std::string req = "req-" + std::to_string(++requests);
      json first, again;
      int via = LiveHub();
      ASSERT_GE(via, 0);
      ASSERT_EQ(CtlVia(via, "run start tick --request " + req, &first), 0) << last_err_;
      int other = (via + 1) % kHubs;
      if (hub_pids_[other] <= 0) other = via;
      ASSERT_EQ(CtlVia(other, "run start tick --request " + req, &again), 0) << last_err_;
      EXPECT_EQ(again["runs"], first["runs"]) << req;
      EXPECT_EQ(again["duplicate"], true) << req;
      take_runs(first, req);
    }
  };
  start_some(2);
  for (int round = 0; round < kHubs; ++round) {
    Stop(&hub_pids_[round], SIGKILL);
    start_some(2);
    // Sites of the dead hub move to the others (each agent's failover).
    ASSERT_TRUE(AllSessionsUp()) << "round " << round << ": sites did not move on";
    StartHubN(round);
  }
  start_some(2);
  // Bursts: starts through all three hubs at once, so each hub enqueues commands for sites
  // whose sessions another hub holds while that hub is sending them theirs.
  for (int burst = 0; burst < 4; ++burst) {
    std::string cmd = "(";
    for (int i = 0; i < kHubs; ++i) {
      const std::string req = "burst-" + std::to_string(burst) + "-" + std::to_string(i);
      cmd += std::string(OUTPOSTCTL_BIN) + " --hub-dir " + HubN(i) +
             " --timeout-ms 10000 --json run start tick --request " + req + " > " +
             (dir_ / (req + ".json")).string() + " & ";
    }
    cmd += "wait)";
    std::string ignored;
    Run(cmd, &ignored);
    for (int i = 0; i < kHubs; ++i) {
      const std::string req = "burst-" + std::to_string(burst) + "-" + std::to_string(i);
      json got = json::parse(ReadAll((dir_ / (req + ".json")).string()), nullptr, false);
      ++requests;
      take_runs(got, req);
      if (HasFatalFailure()) return;
    }
  }
  ASSERT_EQ(runs_started.size(), static_cast<size_t>(requests) * sites_.size());

  // Everything converges: each run finished on its site and the same in the hubs' view.
  for (const auto& id : runs_started) {
    ASSERT_TRUE(Eventually([&] {
      json r;
      return CtlVia(LiveHub(), "run show " + id, &r) == 0 && r["state"] == "succeeded";
    }, 60000)) << "run " << id << " did not finish in the view";
  }
  for (const auto& s : sites_) {
    ASSERT_TRUE(Eventually([&] {
      json st = Agent(s.name, {{"op", "status"}});
      json hub;
      if (CtlVia(0, "site show " + s.name, &hub) != 0 || !st.contains("status")) return false;
      return hub["events_received"] == st["status"]["log_head"] &&
             st["status"]["log_acked"] == st["status"]["log_head"];
    }, 30000)) << "site " << s.name << " did not converge";
    // Each command once: the site's own runs are one per request, none duplicated.
    json local = Agent(s.name, {{"op", "run.list"}, {"limit", 1000}});
    std::set<std::string> ids;
    for (const auto& r : local["runs"]) {
      EXPECT_TRUE(ids.insert(r["id"].get<std::string>()).second);
      EXPECT_EQ(r["state"], "succeeded") << r.dump();
    }
    EXPECT_EQ(ids.size(), static_cast<size_t>(requests)) << s.name;
    json st = Agent(s.name, {{"op", "status"}});
    EXPECT_EQ(st["status"]["hub"]["commands"]["duplicate"], 0) << s.name;
    // No hub ever sent the site a batch past the head it declared (a protocol breach the
    // site answers by ending the session).
    EXPECT_EQ(st["status"]["hub"]["counters"]["protocol_errors"], 0) << s.name;
    EXPECT_EQ(ReadAll((dir_ / (s.name + ".log")).string()).find("past the sender's own head"),
              std::string::npos)
        << s.name;
  }
  // Sites did move: each hub's death sent its sites to the others.
  uint64_t failovers = 0;
  for (const auto& s : sites_) {
    failovers += Agent(s.name, {{"op", "status"}})["status"]["hub"].value("failovers", uint64_t{0});
  }
  EXPECT_GE(failovers, 3u);
  std::cout << "requests " << requests << ", runs " << runs_started.size() << ", failovers "
            << failovers << "\n";
  // Run counts come from the store and every site is online, the same through every hub
  // (the counts are read and the sessions told every 5 s).
  for (int i = 0; i < kHubs; ++i) {
    json status;
    EXPECT_TRUE(Eventually([&] {
      return CtlVia(i, "status", &status) == 0 &&
             status["runs"].value("succeeded", uint64_t{0}) == runs_started.size() &&
             status["sites"].value("online", uint64_t{0}) == sites_.size();
    }, 15000)) << "hub " << i << ": " << status.dump();
  }
}

// A hub process started over the shared store without the fleet's keys (a forgotten copy
// of keys/) would hold a key no agent trusts: it refuses to start, naming both keys.
TEST_F(HubClusterTest, AHubWithAnotherKeyRefusesToStart) {
  StartHubN(0);
  const std::string stranger = (dir_ / "stranger").string();
  const std::string log = (dir_ / "stranger.log").string();
  pid_t pid = Spawn({OUTPOST_HUB_BIN, "--data-dir", stranger, "--store", conninfo_,
                     "--store-schema", schema_, "--sites-endpoint", "tcp://127.0.0.1:0",
                     "--operators-endpoint", "tcp://127.0.0.1:0"},
                    log);
  int status = 0;
  ASSERT_TRUE(Eventually([&] { return waitpid(pid, &status, WNOHANG) == pid; }, 15000))
      << "a hub with another key kept running";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
  const std::string text = ReadAll(log);
  EXPECT_NE(text.find("is not the fleet's"), std::string::npos) << text;
  EXPECT_NE(text.find(hub_key_), std::string::npos) << text;
}

}  // namespace
}  // namespace outpost::testing
