// Integration tests of a fleet: the real outpost-hub, three real outpost-agent processes
// and outpostctl, over CURVE on loopback (tests/integration/fleet_fixture.h).
#include "tests/integration/fleet_fixture.h"

namespace outpost {
namespace {

using namespace outpost::testing;
const char* kHello = R"(
name: hello
tasks:
  - id: greet
    shell: echo "hello from $OUTPOST_RUN_ID"
  - id: done
    run: [true]
    needs: [greet]
)";

TEST_F(FleetTest, WorkflowAppliedByLabelRunsOnlyOnMatchingSitesAndFollowsLabelChanges) {
  StartFleet();
  json r;
  ASSERT_EQ(Ctl("workflow apply " + WriteWorkflow("hello", kHello) + " --target role=web", &r), 0)
      << last_err_;
  EXPECT_EQ(r["sites"], json::array({"alpha", "beta"}));

  ASSERT_EQ(Ctl("run start hello --wait", &r), 0) << last_err_;
  ASSERT_EQ(r.size(), 2u);
  std::set<std::string> ran;
  for (const auto& run : r) {
    EXPECT_EQ(run["state"], "succeeded");
    ran.insert(run["site"]);
  }
  EXPECT_EQ(ran, (std::set<std::string>{"alpha", "beta"}));
  EXPECT_TRUE(Agent("gamma", {{"op", "run.list"}})["runs"].empty());
  // The output the site captured is readable at the hub.
  json logs;
  ASSERT_EQ(Ctl("run logs " + r[0]["id"].get<std::string>() + " greet", &logs), 0);
  EXPECT_NE(logs["output"].get<std::string>().find("hello from " + r[0]["id"].get<std::string>()),
            std::string::npos);

  // gamma does not have it: asking for it there is a conflict (exit 5), not a silent no-op.
  EXPECT_EQ(Ctl("run start hello --site gamma"), 5);
  // gamma gains the label, so it gains the workflow; alpha loses it.
  ASSERT_EQ(Ctl("site label gamma role=web"), 0);
  ASSERT_EQ(Ctl("site label alpha role-"), 0);
  ASSERT_EQ(Ctl("workflow list", &r), 0);
  EXPECT_EQ(r[0]["sites"], json::array({"beta", "gamma"}));
  ASSERT_EQ(Ctl("run start hello --site gamma --wait", &r), 0) << last_err_;
  EXPECT_EQ(r[0]["site"], "gamma");
  EXPECT_EQ(Ctl("run start hello --site alpha"), 5);

  // A retried request id makes no second run.
  json first, again;
  ASSERT_EQ(Ctl("run start hello --request req-42", &first), 0);
  ASSERT_EQ(Ctl("run start hello --request req-42", &again), 0);
  EXPECT_EQ(first["runs"], again["runs"]);
  EXPECT_EQ(again["duplicate"], true);
  // The same request id for another start is a conflict, not the old runs passed off as
  // this start's.
  json other;
  EXPECT_EQ(Ctl("run start hello --request req-42 --site beta", &other), 5) << other.dump();
  EXPECT_NE(other.dump().find("already used for another start"), std::string::npos) << other.dump();
  // Unknown things give distinct exit codes.
  EXPECT_EQ(Ctl("run show no-such-run"), 4);
  EXPECT_EQ(Ctl("run start no-such-workflow"), 4);
  ExpectConverged();
}

// A placement too large to validate on the agent's loop is validated on its worker: the
// batch waits there, is applied when the definition is ready and acknowledged at once, and
// the commands behind it follow.
TEST_F(FleetTest, ALargePlacedWorkflowIsValidatedOffTheLoopAndTheCommandsBehindItFollow) {
  StartFleet();
  std::string big = "name: big\ntasks:\n";
  for (int i = 0; i < 5000; ++i) {
    big += "  - id: t" + std::to_string(i) + "\n    run: [true]\n";
    if (i > 0) big += "    needs: [t" + std::to_string(i - 1) + "]\n";
  }
  ASSERT_GT(big.size(), 64u * 1024);  // past what the agent validates on its loop
  ASSERT_EQ(Ctl("workflow apply " + WriteWorkflow("big", big) + " --target role=web"), 0) << last_err_;
  ASSERT_EQ(Ctl("workflow apply " + WriteWorkflow("hello", kHello) + " --target role=web"), 0)
      << last_err_;
  json r;
  ASSERT_EQ(Ctl("run start hello --site alpha --wait", &r), 0) << last_err_;
  EXPECT_EQ(r[0]["state"], "succeeded");
  auto placed = [this](const std::string& site) {
    const json list = Agent(site, {{"op", "workflow.list"}});
    for (const auto& w : list.value("workflows", json::array())) {
      if (w["name"] == "big") return true;
    }
    return false;
  };
  for (const char* site : {"alpha", "beta"}) {
    ASSERT_TRUE(Eventually([&] { return placed(site); })) << site;
    json v = Agent(site, {{"op", "status"}})["status"]["validation"];
    EXPECT_GE(v.value("parsed_background", 0), 1) << site << " " << v.dump();
    EXPECT_GE(v.value("command_batches_waited", 0), 1) << site << " " << v.dump();
    EXPECT_EQ(v.value("waiting", -1), 0) << site << " " << v.dump();
  }
  EXPECT_FALSE(placed("gamma"));
  ExpectConverged();
}

TEST_F(FleetTest, APlacedScheduleIsActiveOnTheSiteAndEndsWhenTheWorkflowIsRemoved) {
  StartFleet();
  const std::string yaml = R"(
name: nightly
schedule: {cron: "0 2 * * *", timezone: Europe/Berlin, catch_up: latest}
tasks:
  - id: backup
    run: [true]
)";
  ASSERT_EQ(Ctl("workflow apply " + WriteWorkflow("nightly", yaml) + " --target role=web"), 0) << last_err_;
  auto schedule_of = [this](const std::string& site) {
    json list = Agent(site, {{"op", "workflow.list"}});
    for (const auto& w : list["workflows"]) {
      if (w["name"] == "nightly") return w.value("schedule", json(nullptr));
    }
    return json(nullptr);
  };
  ASSERT_TRUE(Eventually([&] { return !schedule_of("alpha").is_null(); }));
  json sched = schedule_of("alpha");
  EXPECT_EQ(sched["cron"], "0 2 * * *");
  EXPECT_EQ(sched["timezone"], "Europe/Berlin");
  EXPECT_FALSE(sched["next"].get<std::string>().empty());
  EXPECT_TRUE(schedule_of("gamma").is_null());  // not placed there
  ASSERT_EQ(Ctl("workflow remove nightly"), 0);
  ASSERT_TRUE(Eventually([&] { return Agent("alpha", {{"op", "status"}})["status"]["schedules"] == 0; }));
  ExpectConverged();
}

TEST_F(FleetTest, ApprovalGatesAreDecidedFromTheHubOrOnTheSite) {
  StartFleet();
  const char* canary = R"(
name: canary
tasks:
  - id: deploy
    run: [true]
  - id: gate
    type: approval
    needs: [deploy]
  - id: rollout
    run: [true]
    needs: [gate]
)";
  ASSERT_EQ(Ctl("workflow apply " + WriteWorkflow("canary", canary) + " --target role=web"), 0);
  json r;
  ASSERT_EQ(Ctl("run start canary", &r), 0) << last_err_;
  ASSERT_EQ(r["runs"].size(), 2u);
  const std::string by_hub = r["runs"][0], on_site = r["runs"][1];
  for (const auto& id : {by_hub, on_site}) {
    ASSERT_TRUE(Eventually([&] {
      json show;
      return Ctl("run show " + id, &show) == 0 && show["tasks"][1]["state"] == "awaiting_approval";
    })) << id;
  }
  // From the hub: delivered to the site as a command, author recorded.
  ASSERT_EQ(Ctl("run approve " + by_hub + " gate"), 0) << last_err_;
  // On the site itself, with no hub involved: rejected.
  const std::string site = on_site.substr(0, on_site.find('-'));
  std::string out;
  ASSERT_EQ(Run(std::string(OUTPOSTCTL_BIN) + " --local --data-dir " + SiteDir(site) + " run approve " +
                    on_site + " gate --reject", &out), 0) << last_err_;
  ASSERT_TRUE(Eventually([&] {
    json a, b;
    return Ctl("run show " + by_hub, &a) == 0 && a["state"] == "succeeded" &&
           Ctl("run show " + on_site, &b) == 0 && b["state"] == "failed";
  })) << last_err_;
  json a;
  Ctl("run show " + by_hub, &a);
  EXPECT_EQ(a["tasks"][1]["message"], "approved by admin");
  // Deciding a gate that is no longer waiting is refused at the site, not run twice.
  json again = Agent(site, {{"op", "run.approve"}, {"id", on_site}, {"task", "gate"}});
  EXPECT_FALSE(again.value("ok", true));
  ExpectConverged();
}

TEST_F(FleetTest, AgentsKeepWorkingWithTheHubDownAndEveryEventArrivesOnceAfterItReturns) {
  StartFleet();
  const std::string gate = (dir_ / "gate").string();
  const std::string yaml = std::string(R"(
name: gated
tasks:
  - id: wait
    shell: "for i in $(seq 1 400); do [ -e )") + gate + R"( ] && exit 0; sleep 0.05; done; exit 1"
  - id: after
    run: [true]
    needs: [wait]
)";
  ASSERT_EQ(Ctl("workflow apply " + WriteWorkflow("gated", yaml)), 0) << last_err_;
  json r;
  ASSERT_EQ(Ctl("run start gated", &r), 0) << last_err_;
  ASSERT_EQ(r["runs"].size(), 3u);
  // Every site has the run before the hub goes away.
  for (const auto& s : sites_) {
    ASSERT_TRUE(Eventually([&] { return !Agent(s.name, {{"op", "run.list"}})["runs"].empty(); }));
  }
  Stop(&hub_pid_, SIGTERM);
  // With no hub: the requested runs finish, and new local runs start and finish.
  std::ofstream(gate) << "go";
  for (const auto& s : sites_) {
    for (const auto& id : r["runs"]) {
      if (id.get<std::string>().rfind(s.name + "-", 0) != 0) continue;
      json done = Agent(s.name, {{"op", "run.wait"}, {"id", id}});
      EXPECT_EQ(done["run"]["state"], "succeeded") << done.dump();
    }
    json local = Agent(s.name, {{"op", "run.start"}, {"source", kHello}, {"file", "hello.yaml"}});
    ASSERT_TRUE(local.value("ok", false)) << local.dump();
    EXPECT_EQ(Agent(s.name, {{"op", "run.wait"}, {"id", local["id"]}})["run"]["state"], "succeeded");
    json st = Agent(s.name, {{"op", "status"}});
    EXPECT_GT(st["status"]["log_head"].get<uint64_t>(), st["status"]["log_acked"].get<uint64_t>());
  }
  // A workflow the hub placed earlier starts locally by name while the hub is away.
  json placed = Agent("alpha", {{"op", "workflow.list"}});
  ASSERT_EQ(placed["workflows"].size(), 1u) << placed.dump();
  EXPECT_EQ(placed["workflows"][0]["name"], "gated");
  json by_name = Agent("alpha", {{"op", "run.start"}, {"workflow", "gated"}});
  ASSERT_TRUE(by_name.value("ok", false)) << by_name.dump();
  EXPECT_EQ(Agent("alpha", {{"op", "run.wait"}, {"id", by_name["id"]}})["run"]["state"], "succeeded");
  EXPECT_FALSE(Agent("alpha", {{"op", "run.start"}, {"workflow", "nope"}}).value("ok", true));
  StartHub();
  ASSERT_TRUE(AllOnline());
  ExpectConverged();
  json runs;
  ASSERT_EQ(Ctl("run list --workflow gated --state succeeded", &runs), 0);
  EXPECT_EQ(runs.size(), 4u);  // three requested, one started locally by name
  ASSERT_EQ(Ctl("run list --workflow hello", &runs), 0);
  EXPECT_EQ(runs.size(), 3u);  // the offline runs, reported once each
}

// The hub's disk is lost and an older backup put back (docs/operations.md, "Restoring the
// hub from a backup"): undeclared, every site refuses it; after outpost-hub
// --declare-restored every site reconciles, the runs started after the backup are known
// again from the sites' events where they kept them, and a run started now reaches every
// site instead of being taken for a command it already applied.
TEST_F(FleetTest, AHubRestoredFromABackupIsRefusedUntilDeclaredThenEverySiteResumes) {
  StartFleet();
  ASSERT_EQ(Ctl("workflow apply " + WriteWorkflow("hello", kHello)), 0) << last_err_;
  auto run_everywhere = [&](size_t expect_per_site, const std::string& request = "") {
    json r;
    ASSERT_EQ(Ctl("run start hello" + (request.empty() ? "" : " --request " + request), &r), 0)
        << last_err_;
    ASSERT_EQ(r["runs"].size(), sites_.size()) << r.dump();
    for (const auto& s : sites_) {
      ASSERT_TRUE(Eventually([&] {
        json l = Agent(s.name, {{"op", "run.list"}, {"limit", 100}});
        if (l["runs"].size() != expect_per_site) return false;
        for (const auto& run : l["runs"]) {
          if (run["state"] != "succeeded") return false;
        }
        return true;
      })) << s.name << ": " << Agent(s.name, {{"op", "run.list"}}).dump();
    }
  };
  run_everywhere(1);
  ExpectConverged();
  // The backup, taken with the hub stopped.
  Stop(&hub_pid_, SIGTERM);
  const fs::path backup = dir_ / "hub-backup";
  fs::copy(HubDir(), backup, fs::copy_options::recursive);
  StartHub();
  ASSERT_TRUE(AllOnline());
  run_everywhere(2, "after-backup");  // acknowledged (so trimmed) on every site
  ExpectConverged();

  // The disk is lost; the backup is put back and started as it is.
  Stop(&hub_pid_, SIGKILL);
  fs::remove_all(HubDir());
  fs::copy(backup, HubDir(), fs::copy_options::recursive);
  StartHub();
  for (const auto& s : sites_) {
    ASSERT_TRUE(Eventually([&] {
      json st = Agent(s.name, {{"op", "status"}});
      return st["status"]["hub"]["last_error"].get<std::string>().find("--declare-restored") !=
             std::string::npos;
    })) << Agent(s.name, {{"op", "status"}}).dump();
  }
  json st;
  ASSERT_EQ(Ctl("status", &st), 0);
  EXPECT_EQ(st["sites"]["online"], 0) << st.dump();
  EXPECT_GT(st["counters"]["sites_ahead"].get<int>(), 0) << st.dump();
  // A run requested of the undeclared hub is not lost: it reaches every site once declared.
  json early;
  ASSERT_EQ(Ctl("run start hello --request before-declaring", &early), 0) << last_err_;

  // Declared, with the hub stopped.
  Stop(&hub_pid_, SIGTERM);
  std::string out;
  ASSERT_EQ(Run(std::string(OUTPOST_HUB_BIN) + " --data-dir " + HubDir() + " --declare-restored", &out), 0)
      << out << last_err_;
  EXPECT_NE(out.find("restore declared, hub epoch"), std::string::npos) << out;
  StartHub();
  ASSERT_TRUE(AllOnline()) << ReadAll((dir_ / "hub.log").string());
  for (const auto& s : sites_) {
    ASSERT_TRUE(Eventually([&] {
      json l = Agent(s.name, {{"op", "run.list"}, {"limit", 100}});
      return l["runs"].size() == 3u;
    })) << s.name;
  }
  run_everywhere(4);
  json audit;
  ASSERT_EQ(Ctl("events --limit 1000", &audit), 0);
  std::set<std::string> reconciled, lost;
  for (const auto& e : audit) {
    if (e["event"] == "site.restore_reconciled" && e["commands_adopted"] == 1) reconciled.insert(e["site"]);
    if (e["event"] == "site.events_lost_in_restore") lost.insert(e["site"]);
  }
  EXPECT_EQ(reconciled.size(), sites_.size()) << audit.dump();
  EXPECT_EQ(lost.size(), sites_.size()) << audit.dump();
  for (const auto& s : sites_) {
    json hub;
    ASSERT_TRUE(Eventually([&] {
      return Ctl("site show " + s.name, &hub) == 0 && hub["events_behind"] == 0;
    })) << hub.dump();
    json a = Agent(s.name, {{"op", "status"}});
    EXPECT_GT(a["status"]["hub"]["hub_epoch"].get<uint64_t>(), 0u) << a.dump();
    EXPECT_EQ(a["status"]["hub"]["last_error"], "") << a.dump();
  }
  // A request the backup never saw, asked again: the restored hub makes new runs for it,
  // and every site refuses them — the request already made its run there.
  json again;
  ASSERT_EQ(Ctl("run start hello --request after-backup", &again), 0) << last_err_;
  for (const auto& id : again["runs"]) {
    json shown;
    ASSERT_TRUE(Eventually([&] {
      return Ctl("run show " + id.get<std::string>(), &shown) == 0 && shown["state"] == "failed";
    })) << shown.dump();
    EXPECT_NE(shown["message"].get<std::string>().find("already started run"), std::string::npos)
        << shown.dump();
  }
  for (const auto& s : sites_) {
    json l = Agent(s.name, {{"op", "run.list"}, {"limit", 100}});
    EXPECT_EQ(l["runs"].size(), 4u) << s.name;
  }
  // The run started after the restore is known to the hub as it is on each site.
  json runs;
  ASSERT_EQ(Ctl("run list --workflow hello --state succeeded", &runs), 0);
  EXPECT_GE(runs.size(), 3 * sites_.size()) << runs.dump();
}

TEST_F(FleetTest, SigkillOfAgentAndHubMidSyncLosesAndDuplicatesNothing) {
  StartFleet();
  // Many small tasks: a steady stream of events while processes are killed.
  std::string yaml = "name: busy\ntasks:\n";
  for (int i = 0; i < 60; ++i) {
    // An attempt running when the agent is killed is retried under its policy.
    yaml += "  - id: t" + std::to_string(i) +
            "\n    run: [sleep, '0.02']\n    retry: {max: 3, backoff: 10ms}\n";
  }
  ASSERT_EQ(Ctl("workflow apply " + WriteWorkflow("busy", yaml)), 0) << last_err_;
  auto alpha_head = [&] {
    json st = Agent("alpha", {{"op", "status"}});
    return st.contains("status") ? st["status"]["log_head"].get<uint64_t>() : 0;
  };
  for (int round = 0; round < 3; ++round) {
    const uint64_t before = alpha_head();
    json r;
    ASSERT_EQ(Ctl("run start busy --request round-" + std::to_string(round), &r), 0) << last_err_;
    // Kill the hub and alpha while alpha's run is producing events and shipping them.
    ASSERT_TRUE(Eventually([&] { return alpha_head() > before + 20; }));
    Stop(&hub_pid_, SIGKILL);
    Stop(&sites_[0].pid, SIGKILL);
    StartAgent(sites_[0]);
    StartHub();
    ASSERT_TRUE(AllOnline());
  }
  for (const auto& s : sites_) {
    json local = Agent(s.name, {{"op", "run.list"}, {"limit", 100}});
    for (const auto& run : local["runs"]) {
      EXPECT_EQ(Agent(s.name, {{"op", "run.wait"}, {"id", run["id"]}})["run"]["state"], "succeeded");
    }
    EXPECT_EQ(local["runs"].size(), 3u) << s.name;  // one run per request id, never two
  }
  // The kills did land mid-run: alpha retried attempts that were running.
  int retried = 0;
  const json runs = Agent("alpha", {{"op", "run.list"}});
  for (const auto& run : runs["runs"]) {
    const json shown = Agent("alpha", {{"op", "run.show"}, {"id", run["id"]}});
    for (const auto& t : shown["run"]["tasks"]) retried += t["attempts"].get<int>() > 1 ? 1 : 0;
  }
  EXPECT_GT(retried, 0);
  ExpectConverged();
}

TEST_F(FleetTest, UnknownKeyNeverReachesTheHubAndARevokedSiteIsCutOff) {
  StartFleet();
  json before;
  ASSERT_EQ(Ctl("status", &before), 0);
  // An agent whose key was never enrolled.
  Site stranger{"stranger", "web"};
  StartAgent(stranger);
  ASSERT_TRUE(Eventually([&] {
    json st = Agent("stranger", {{"op", "status"}});
    return st.contains("status") && st["status"]["hub"]["counters"]["auth_failures"] > 0;
  }));
  json after;
  ASSERT_EQ(Ctl("status", &after), 0);
  EXPECT_GT(after["counters"]["keys_refused"], before["counters"]["keys_refused"]);
  EXPECT_EQ(after["counters"]["frames_refused"], 0);
  EXPECT_EQ(after["sites"]["enrolled"], 3);
  // Enrolled later, the same running agent comes online by itself: a refused key is
  // tried again after the backoff.
  const std::string key = AgentKey(SiteDir("stranger"));
  ASSERT_EQ(Ctl("site add stranger --key '" + key + "' --label role=web"), 0);
  EXPECT_TRUE(Eventually([&] {
    json st = Agent("stranger", {{"op", "status"}});
    return st.contains("status") && st["status"]["hub"]["state"] == "established";
  }, 15000)) << Agent("stranger", {{"op", "status"}}).dump();
  ASSERT_EQ(Ctl("site revoke stranger"), 0);
  Stop(&stranger.pid, SIGKILL);

  // Revoking beta cuts its open connection: its session ends and new events stay home.
  json show;
  ASSERT_EQ(Ctl("site show beta", &show), 0);
  const auto received = show["events_received"];
  ASSERT_EQ(Ctl("site revoke beta"), 0);
  ASSERT_TRUE(Eventually([&] {
    json st = Agent("beta", {{"op", "status"}});
    return st.contains("status") && st["status"]["hub"]["state"] != "established" &&
           st["status"]["hub"]["counters"]["auth_failures"] > 0;
  })) << Agent("beta", {{"op", "status"}}).dump();
  json local = Agent("beta", {{"op", "run.start"}, {"source", kHello}, {"file", "hello.yaml"}});
  EXPECT_EQ(Agent("beta", {{"op", "run.wait"}, {"id", local["id"]}})["run"]["state"], "succeeded");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // give a leak time to show
  ASSERT_EQ(Ctl("site show beta", &show), 0);
  EXPECT_EQ(show["events_received"], received);
  EXPECT_EQ(show["online"], false);
}

TEST_F(FleetTest, MalformedOversizedAndBombFramesFromAnEnrolledKeyAreRefusedAndCounted) {
  StartHub();
  auto keys = GenerateCurveKeys();
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(Ctl("site add rogue --key '" + keys->public_z85 + "'"), 0) << last_err_;
  auto ctx = ZmqContext::Create(1, 16);
  ASSERT_TRUE(ctx.ok());
  Connector::Options o;
  o.endpoint = sites_endpoint_;
  o.server_public_z85 = hub_key_;
  o.keys = *keys;
  o.max_message_bytes = 64 << 20;
  auto conn = Connector::Connect(**ctx, o);
  ASSERT_TRUE(conn.ok());
  ASSERT_TRUE(Eventually([&] {
    std::vector<Connector::Event> ev;
    (*conn)->Drain(&ev);
    for (const auto& e : ev) {
      if (e.kind == Connector::EventKind::kConnected) return true;
    }
    return false;
  }));
  std::string bomb = "\xdd\xff\xff\xff\xff";  // array32 claiming 4 billion elements
  std::string deep(200, '\x91');              // 200 nested one-element arrays
  deep += '\xc0';
  Message hello;
  hello.t = static_cast<uint8_t>(MsgType::kHello);
  hello.v = 99;  // a protocol version this hub does not speak
  std::vector<std::string> frames = {"not msgpack at all", bomb, deep,
                                     std::string(kMaxFrameBytes + 1024, 'x'),
                                     EncodeMessage(hello) + "trailing"};
  for (const auto& f : frames) ASSERT_TRUE((*conn)->Send(f).ok());
  hello.v = kProtocolVersion;
  hello.incarnation = 7;
  Message wrong_version = hello;
  wrong_version.v = 99;
  ASSERT_TRUE((*conn)->Send(EncodeMessage(wrong_version)).ok());
  json st;
  ASSERT_TRUE(Eventually([&] {
    return Ctl("status", &st) == 0 && st["counters"]["frames_malformed"] == 6;
  })) << st.dump();
  // Each refusal was answered with an ERROR; the hub is up and still serves a valid HELLO.
  ASSERT_TRUE((*conn)->Send(EncodeMessage(hello)).ok());
  bool welcomed = Eventually([&] {
    std::vector<Connector::Event> ev;
    (*conn)->Drain(&ev);
    for (const auto& e : ev) {
      Message m;
      if (e.kind == Connector::EventKind::kFrame && DecodeMessage(e.payload, &m).ok() &&
          m.type() == MsgType::kWelcome) {
        return true;
      }
    }
    return false;
  });
  EXPECT_TRUE(welcomed);
  EXPECT_EQ(kill(hub_pid_, 0), 0);
  conn->reset();
}

// The example configs document every option of the daemons' option tables.
TEST_F(FleetTest, ExampleConfigsExplainEveryOption) {
  for (const auto& [bin, conf] : {std::pair<std::string, std::string>{OUTPOST_HUB_BIN, "hub.conf"},
                                  {OUTPOST_AGENT_BIN, "agent.conf"}}) {
    std::string help;
    ASSERT_EQ(Run(bin + " --help", &help), 0);
    const std::string text = ReadAll(std::string(OUTPOST_SOURCE_DIR) + "/config/" + conf);
    std::istringstream lines(help);
    std::string line;
    int options = 0;
    while (std::getline(lines, line)) {
      const auto start = line.find_first_not_of(' ');
      if (start == std::string::npos || line.compare(start, 2, "--") != 0) continue;
      std::string name = line.substr(start + 2);
      name = name.substr(0, name.find_first_of(" \t"));
      if (name == "help" || name == "config" || name == "check-config" || name == "show-key" ||
          name == "declare-restored") {
        continue;  // one-shot actions, not settings
      }
      ++options;
      EXPECT_TRUE(text.find("\n" + name + " =") != std::string::npos ||
                  text.find("# " + name + " =") != std::string::npos)
          << conf << " does not explain --" << name;
    }
    EXPECT_GT(options, 5) << bin;
  }
}

TEST_F(FleetTest, ExampleConfigsAreValidAndBadOptionsAreRefused) {
  std::string out;
  EXPECT_EQ(Run(std::string(OUTPOST_HUB_BIN) + " --config " OUTPOST_SOURCE_DIR
                    "/config/hub.conf --check-config", &out), 0) << last_err_;
  EXPECT_EQ(Run(std::string(OUTPOST_AGENT_BIN) + " --config " OUTPOST_SOURCE_DIR
                    "/config/agent.conf --check-config", &out), 0) << last_err_;
  const std::string bad = (dir_ / "bad.conf").string();
  std::ofstream(bad) << "data-dir = /tmp/x\nsites-endpont = tcp://127.0.0.1:1\n";
  EXPECT_EQ(Run(std::string(OUTPOST_HUB_BIN) + " --config " + bad + " --check-config", &out), 2);
  EXPECT_NE(last_err_.find("sites-endpont"), std::string::npos) << last_err_;
  // An agent pointed at a hub without the hub's key is refused before it starts.
  EXPECT_EQ(Run(std::string(OUTPOST_AGENT_BIN) + " --data-dir " + (dir_ / "a").string() +
                    " --hub tcp://127.0.0.1:1 --check-config", &out), 2);
  // outpostctl with no hub to talk to says so (usage), and with a wrong hub dir: unreachable.
  EXPECT_EQ(Run(std::string(OUTPOSTCTL_BIN) + " site list", &out), 2);
  EXPECT_EQ(Run(std::string(OUTPOSTCTL_BIN) + " --hub-dir " + (dir_ / "nohub").string() +
                    " site list", &out), 3);
}

}  // namespace
}  // namespace outpost
