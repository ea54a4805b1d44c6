// Air-gapped sites and artifacts with the real binaries (docs/operations.md, "An
// air-gapped site"): a site with no network at all gets a workflow, an artifact and a run
// by bundle, runs it and returns its events by bundle, every event at the hub exactly
// once; every courier fault; kill -9 during an import on both ends; a site that
// alternates the network and bundles; an artifact fetched over a link cut several times.
#include <fcntl.h>

#include "common/bundle.h"
#include "common/trust.h"
#include "simulator/fault_proxy.h"
#include "tests/integration/fleet_fixture.h"

namespace outpost::testing {
namespace {

class AirGapTest : public FleetTest {
 protected:
  void SetUp() override {
    FleetTest::SetUp();
    sites_ = {{"ship", "vessel"}};
  }

  // The site with no --hub at all: only the hub's key, to check bundles against.
  void StartAirAgent(Site& s, const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv = {OUTPOST_AGENT_BIN, "--data-dir", SiteDir(s.name), "--site",
                                     s.name, "--hub-key", hub_key_, "--kill-grace-ms", "300",
                                     "--label", "role=" + s.role};
    argv.insert(argv.end(), agent_extra_.begin(), agent_extra_.end());
    s.pid = Spawn(argv, (dir_ / (s.name + ".log")).string(), env);
    ASSERT_TRUE(Eventually([&] {
      return ControlCall(SiteDir(s.name) + "/agent.sock", {{"op", "status"}}, 1000).ok();
    }, 10000)) << "agent " << s.name << " did not come up";
  }

  void EnrollShip() {
    StartHub();
    ASSERT_EQ(Ctl("site add ship --key '" + AgentKey(SiteDir("ship")) + "' --label role=vessel"), 0)
        << last_err_;
  }

  // outpostctl --local against the site.
  int Local(const std::string& site, const std::string& args, json* out = nullptr) {
    std::string text;
    int rc = Run(std::string(OUTPOSTCTL_BIN) + " --local --data-dir " + SiteDir(site) + " --json " + args,
                 &text);
    if (out) *out = json::parse(text, nullptr, false);
    last_err_ += text;  // with --json an error is on stdout
    return rc;
  }

  std::string File(const std::string& name) const { return (dir_ / name).string(); }

  // The hub, and the ship enrolled and online through `proxy` (route 0), which can cut it.
  void StartShipBehind(sim::FaultProxy* proxy) {
    StartHub();
    const int hub_port = std::stoi(sites_endpoint_.substr(sites_endpoint_.rfind(':') + 1));
    auto port = proxy->AddRoute(hub_port);
    ASSERT_TRUE(port.ok());
    ASSERT_TRUE(proxy->Start().ok());
    ASSERT_EQ(Ctl("site add ship --key '" + AgentKey(SiteDir("ship")) + "' --label role=vessel"), 0);
    const std::string real = sites_endpoint_;
    sites_endpoint_ = "tcp://127.0.0.1:" + std::to_string(*port);
    StartAgent(sites_[0]);
    sites_endpoint_ = real;
    ASSERT_TRUE(AllOnline());
  }

  std::string MakeFile(const std::string& name, size_t bytes, uint32_t seed) {
    std::string data(bytes, '\0');
    uint32_t x = seed;
    for (auto& c : data) {
      x = x * 1664525u + 1013904223u;
      c = static_cast<char>(x >> 24);
    }
    std::ofstream(File(name), std::ios::binary) << data;
    return ContentDigest(data);
  }

  json SiteStatus(const std::string& site) { return Agent(site, {{"op", "status"}})["status"]; }

  // The hub's copy of the site's events equals the site's log, exactly once.
  void ExpectEventsOnce(const std::string& site) {
    json st = SiteStatus(site), hub;
    ASSERT_EQ(Ctl("site show " + site, &hub), 0) << last_err_;
    EXPECT_EQ(hub["events_received"], st["log_head"]);
    EXPECT_EQ(hub["events_behind"], 0);
    json local = Agent(site, {{"op", "run.list"}, {"limit", 1000}});
    for (const auto& r : local["runs"]) {
      json theirs;
      ASSERT_EQ(Ctl("run show " + r["id"].get<std::string>(), &theirs), 0) << last_err_;
      EXPECT_EQ(theirs["state"], r["state"]) << r["id"];
    }
  }

  std::string FlashWorkflow(const std::string& digest) {
    return WriteWorkflow("flash", "name: flash\nartifacts:\n  firmware: " + digest +
                                      "\ntasks:\n  - id: check\n    shell: 'b2sum -l 256 "
                                      "\"$OUTPOST_ARTIFACT_FIRMWARE\" | cut -c1-64'\n");
  }
};

TEST_F(AirGapTest, AnAirGappedSiteRunsByBundleAndReturnsEveryEventOnce) {
  EnrollShip();
  const std::string digest = MakeFile("fw.bin", 2'500'000, 7);
  json pushed;
  ASSERT_EQ(Ctl("artifact push " + File("fw.bin") + " --name firmware", &pushed), 0) << last_err_;
  EXPECT_EQ(pushed["digest"], digest);
  ASSERT_EQ(Ctl("workflow apply " + FlashWorkflow(digest) + " --target role=vessel"), 0) << last_err_;
  json started;
  ASSERT_EQ(Ctl("run start flash --site ship", &started), 0) << last_err_;
  const std::string run = started["runs"][0];
  json exp;
  ASSERT_EQ(Ctl("bundle export --site ship --out " + File("to-ship") + " --volume-size 2M", &exp), 0)
      << last_err_;
  const size_t n = exp["files"].size();
  ASSERT_GE(n, 2u) << exp;  // 2.5 MB of chunks in 2 MiB volumes, then the commands

  StartAirAgent(sites_[0]);
  // The courier brings the volumes in reverse order, then all of them again.
  for (size_t v = n; v >= 1; --v) {
    ASSERT_EQ(Local("ship", "bundle import " + exp["files"][v - 1].get<std::string>()), 0) << last_err_;
  }
  std::string all;
  for (const auto& f : exp["files"]) all += " " + f.get<std::string>();
  json again;
  ASSERT_EQ(Local("ship", "bundle import" + all, &again), 0) << last_err_;
  EXPECT_EQ(again[n - 1]["commands"]["applied"], 0);
  EXPECT_EQ(again[n - 1]["commands"]["duplicates"], 2);  // the placement and the start
  ASSERT_TRUE(Eventually([&] {
    return Agent("ship", {{"op", "run.show"}, {"id", run}})["run"]["state"] == "succeeded";
  })) << Agent("ship", {{"op", "run.show"}, {"id", run}}).dump();
  json logs = Agent("ship", {{"op", "run.logs"}, {"id", run}, {"task", "check"}});
  EXPECT_NE(logs.dump().find(digest), std::string::npos) << "the task read the artifact: " << logs;

  // Back at the hub: the return bundle, twice.
  ASSERT_EQ(Local("ship", "bundle export --out " + File("from-ship-1")), 0) << last_err_;
  json imp;
  ASSERT_EQ(Ctl("bundle import " + File("from-ship-1"), &imp), 0) << last_err_;
  EXPECT_GT(imp[0]["events"]["applied"].get<int>(), 0);
  ASSERT_EQ(Ctl("bundle import " + File("from-ship-1"), &imp), 0) << last_err_;
  EXPECT_EQ(imp[0]["events"]["applied"], 0);
  ExpectEventsOnce("ship");
  json hub_run;
  ASSERT_EQ(Ctl("run show " + run, &hub_run), 0);
  EXPECT_EQ(hub_run["state"], "succeeded");
  json site;
  ASSERT_EQ(Ctl("site show ship", &site), 0);
  EXPECT_EQ(site["commands_pending"], 0) << "the return bundle acknowledged the commands";
  EXPECT_EQ(site["artifacts"][0]["state"], "cached") << site["artifacts"];

  // The next bundle carries the hub's watermark: the site trims what the hub has.
  ASSERT_EQ(Ctl("bundle export --site ship --out " + File("to-ship-2"), &exp), 0) << last_err_;
  ASSERT_EQ(exp["commands"], 0);
  ASSERT_EQ(Local("ship", "bundle import " + File("to-ship-2")), 0) << last_err_;
  json st = SiteStatus("ship");
  EXPECT_EQ(st["log_acked"], site["events_received"]);
}

TEST_F(AirGapTest, CourierFaultsChangeNothingWrongly) {
  EnrollShip();
  // A second site, so there is a bundle for someone else.
  sites_.push_back({"tug", "vessel"});
  ASSERT_EQ(Ctl("site add tug --key '" + AgentKey(SiteDir("tug")) + "' --label role=vessel"), 0);
  ASSERT_EQ(Ctl("workflow apply " +
                    WriteWorkflow("hello", "name: hello\ntasks:\n  - id: a\n    shell: 'true'\n") +
                    " --target role=vessel"),
            0)
      << last_err_;
  ASSERT_EQ(Ctl("run start hello --site ship"), 0) << last_err_;
  ASSERT_EQ(Ctl("bundle export --site ship --out " + File("old")), 0) << last_err_;
  ASSERT_EQ(Ctl("run start hello --site ship"), 0) << last_err_;
  ASSERT_EQ(Ctl("bundle export --site ship --out " + File("new")), 0) << last_err_;
  ASSERT_EQ(Ctl("bundle export --site tug --out " + File("for-tug")), 0) << last_err_;
  StartAirAgent(sites_[0]);
  auto applied = [&] { return SiteStatus("ship")["hub"]["commands_applied_through"].get<uint64_t>(); };

  // Truncated: refused whole, nothing applied.
  std::string bytes = ReadAll(File("new"));
  std::ofstream(File("cut"), std::ios::binary) << bytes.substr(0, bytes.size() - 10);
  EXPECT_NE(Local("ship", "bundle import " + File("cut")), 0);
  EXPECT_NE(last_err_.find("cut short"), std::string::npos) << last_err_;
  EXPECT_EQ(applied(), 0u);
  std::string shown;
  EXPECT_NE(Run(std::string(OUTPOSTCTL_BIN) + " bundle show " + File("cut"), &shown), 0);
  EXPECT_NE(shown.find("cut short"), std::string::npos) << shown;
  // Corrupted: one byte inside the sealed record.
  std::string bad = bytes = ReadAll(File("new"));
  bad[bad.size() - 20] ^= 0x40;
  std::ofstream(File("bad"), std::ios::binary) << bad;
  EXPECT_NE(Local("ship", "bundle import " + File("bad")), 0);
  EXPECT_NE(last_err_.find("does not open"), std::string::npos) << last_err_;
  EXPECT_EQ(applied(), 0u);
  // For another site.
  EXPECT_NE(Local("ship", "bundle import " + File("for-tug")), 0);
  EXPECT_NE(last_err_.find("for site 'tug'"), std::string::npos) << last_err_;
  // Not a bundle at all.
  std::ofstream(File("junk")) << "hello\n";
  EXPECT_NE(Local("ship", "bundle import " + File("junk")), 0);
  EXPECT_NE(last_err_.find("not an Outpost bundle"), std::string::npos) << last_err_;
  // A return bundle given to the site, and a site's bundle given to the wrong hub end.
  EXPECT_EQ(applied(), 0u);

  // The newer one, then the older one: the older one's commands are all duplicates.
  json r;
  ASSERT_EQ(Local("ship", "bundle import " + File("new"), &r), 0) << last_err_;
  EXPECT_EQ(r[0]["commands"]["applied"], 3);  // placement and two starts
  ASSERT_EQ(Local("ship", "bundle import " + File("old"), &r), 0) << last_err_;
  EXPECT_EQ(r[0]["commands"]["applied"], 0);
  EXPECT_EQ(r[0]["commands"]["duplicates"], 2);
  ASSERT_TRUE(Eventually([&] {
    json l = Agent("ship", {{"op", "run.list"}});
    if (l["runs"].size() != 2u) return false;
    for (const auto& x : l["runs"]) if (x["state"] != "succeeded") return false;
    return true;
  }));
  EXPECT_EQ(Agent("ship", {{"op", "run.list"}})["runs"].size(), 2u) << "each start ran once";

  // The hub refuses a down bundle, and a return bundle with a damaged record.
  EXPECT_NE(Ctl("bundle import " + File("new")), 0);
  ASSERT_EQ(Local("ship", "bundle export --out " + File("ret")), 0) << last_err_;
  std::string ret = ReadAll(File("ret"));
  ret[ret.size() - 5] ^= 1;
  std::ofstream(File("ret-bad"), std::ios::binary) << ret;
  EXPECT_NE(Ctl("bundle import " + File("ret-bad")), 0);
  json site;
  ASSERT_EQ(Ctl("site show ship", &site), 0);
  EXPECT_EQ(site["events_received"], 0);
  ASSERT_EQ(Ctl("bundle import " + File("ret")), 0) << last_err_;
  ExpectEventsOnce("ship");
}

TEST_F(AirGapTest, TheInboxImportsMediaAndKeepsTheReturnBundleCurrent) {
  EnrollShip();
  ASSERT_EQ(Ctl("workflow apply " +
                    WriteWorkflow("hello", "name: hello\ntasks:\n  - id: a\n    shell: 'sleep 0.3'\n") +
                    " --target role=vessel"),
            0)
      << last_err_;
  json started;
  ASSERT_EQ(Ctl("run start hello --site ship", &started), 0) << last_err_;
  const std::string media = File("media");
  fs::create_directories(media);
  agent_extra_ = {"--inbox-dir", media};
  StartAirAgent(sites_[0]);
  // The courier copies the volume onto the media while the agent watches.
  ASSERT_EQ(Ctl("bundle export --site ship --out " + media + "/to-ship"), 0) << last_err_;
  const std::string ret = media + "/outpost-return-ship.bundle";
  ASSERT_TRUE(Eventually([&] {
    json runs = Agent("ship", {{"op", "run.list"}})["runs"];
    if (runs.size() != 1u || runs[0]["state"] != "succeeded" || !fs::exists(ret)) return false;
    json st = SiteStatus("ship");
    std::string shown;
    Run(std::string(OUTPOSTCTL_BIN) + " bundle show --json " + ret, &shown);
    json j = json::parse(shown, nullptr, false);
    // The return bundle on the media holds the run's end once it ended.
    return j.is_array() && j[0]["events"]["last"] == st["log_head"];
  })) << ReadAll((dir_ / "ship.log").string());
  json imp;
  ASSERT_EQ(Ctl("bundle import " + ret, &imp), 0) << last_err_;
  json hub_run;
  ASSERT_EQ(Ctl("run show " + started["runs"][0].get<std::string>(), &hub_run), 0);
  EXPECT_EQ(hub_run["state"], "succeeded");
  ExpectEventsOnce("ship");
  // By hand, several files: a bad one is named and the others are still imported.
  ASSERT_EQ(Ctl("run start hello --site ship"), 0) << last_err_;
  ASSERT_EQ(Ctl("bundle export --site ship --out " + File("next")), 0) << last_err_;
  std::ofstream(File("junk")) << "not a bundle\n";
  last_err_.clear();
  EXPECT_EQ(Local("ship", "bundle import " + File("junk") + " " + File("next")), 2);
  EXPECT_NE(last_err_.find(File("junk") + ": not an Outpost bundle"), std::string::npos) << last_err_;
  EXPECT_TRUE(Eventually([&] { return Agent("ship", {{"op", "run.list"}})["runs"].size() == 2u; }));
  // Media already in the inbox when the agent starts is imported at once (it used to wait
  // for the loop's first other wake-up, 30-60 s on an idle air-gapped site).
  Stop(&sites_[0].pid, SIGTERM);
  ASSERT_EQ(Ctl("run start hello --site ship"), 0) << last_err_;
  ASSERT_EQ(Ctl("bundle export --site ship --out " + media + "/to-ship-2"), 0) << last_err_;
  StartAirAgent(sites_[0]);
  EXPECT_TRUE(Eventually([&] { return Agent("ship", {{"op", "run.list"}})["runs"].size() == 3u; },
                         10000))
      << ReadAll((dir_ / "ship.log").string());
}

// With a fleet root, the commands a bundle carries stay operator-signed: the site runs
// what the policy's operator signed and refuses what the hub made up, however it arrived.
TEST_F(AirGapTest, BundledCommandsStaySignedAndAHubCannotAddOne) {
  const std::string root = File("root.key"), alice = File("alice.key");
  std::string out;
  ASSERT_EQ(Run(std::string(OUTPOSTCTL_BIN) + " trust keygen " + root, &out), 0) << last_err_;
  ASSERT_EQ(Run(std::string(OUTPOSTCTL_BIN) + " trust keygen " + alice, &out), 0) << last_err_;
  agent_extra_ = {"--trust-root", root + ".pub"};
  EnrollShip();
  const json body = {{"fleet", "sea"},
                     {"version", 1},
                     {"operators",
                      {{{"name", "alice"},
                        {"key", ReadAll(alice + ".pub").substr(0, ReadAll(alice + ".pub").find('\n'))},
                        {"may", {"apply", "start"}},
                        {"workflows", {"hello"}},
                        {"sites", json::object()}}}}};
  std::ofstream(File("policy.json")) << body.dump();
  ASSERT_EQ(Run(std::string(OUTPOSTCTL_BIN) + " trust sign-policy " + File("policy.json") +
                    " --root-key " + root + " --out " + File("policy.signed"),
                &out),
            0)
      << last_err_;
  ASSERT_EQ(Ctl("policy push " + File("policy.signed")), 0) << last_err_;
  const std::string wf =
      WriteWorkflow("hello", "name: hello\ntasks:\n  - id: a\n    shell: 'true'\n");
  ASSERT_EQ(Ctl("workflow apply " + wf + " --target role=vessel --signing-key " + alice), 0) << last_err_;
  json signed_run, forged_run;
  ASSERT_EQ(Ctl("run start hello --site ship --signing-key " + alice, &signed_run), 0) << last_err_;
  // The hub (or whoever holds it) starts a run nobody signed.
  ASSERT_EQ(Ctl("run start hello --site ship", &forged_run), 0) << last_err_;
  ASSERT_EQ(Ctl("bundle export --site ship --out " + File("to-ship")), 0) << last_err_;
  StartAirAgent(sites_[0]);
  ASSERT_EQ(Local("ship", "bundle import " + File("to-ship")), 0) << last_err_;
  const std::string good = signed_run["runs"][0], bad = forged_run["runs"][0];
  ASSERT_TRUE(Eventually([&] {
    return Agent("ship", {{"op", "run.show"}, {"id", good}})["run"]["state"] == "succeeded";
  })) << Agent("ship", {{"op", "run.list"}}).dump();
  EXPECT_FALSE(Agent("ship", {{"op", "run.show"}, {"id", bad}}).value("ok", false))
      << "an unsigned start ran on a site with a trust root";
  json st = SiteStatus("ship");
  EXPECT_GE(st["trust"]["refused"].get<int>(), 1) << st.dump();
  EXPECT_GE(st["hub"]["commands"]["rejected"].get<int>(), 1) << st.dump();
  // Back at the hub, the refusal is on record for the forged run.
  ASSERT_EQ(Local("ship", "bundle export --out " + File("back")), 0) << last_err_;
  ASSERT_EQ(Ctl("bundle import " + File("back")), 0) << last_err_;
  json hub_bad;
  ASSERT_EQ(Ctl("run show " + bad, &hub_bad), 0) << last_err_;
  EXPECT_EQ(hub_bad["state"], "failed") << hub_bad.dump();
  ExpectEventsOnce("ship");
}

TEST_F(AirGapTest, KillDuringImportOnEitherEndLosesAndDuplicatesNothing) {
  EnrollShip();
  ASSERT_EQ(Ctl("workflow apply " +
                    WriteWorkflow("hello", "name: hello\ntasks:\n  - id: a\n    shell: 'true'\n") +
                    " --target role=vessel"),
            0)
      << last_err_;
  const std::string digest = MakeFile("cfg.bin", 1'500'000, 3);
  ASSERT_EQ(Ctl("artifact push " + File("cfg.bin")), 0) << last_err_;
  ASSERT_EQ(Ctl("workflow apply " + FlashWorkflow(digest) + " --target role=vessel"), 0) << last_err_;
  for (int i = 0; i < 3; ++i) ASSERT_EQ(Ctl("run start hello --site ship"), 0) << last_err_;
  ASSERT_EQ(Ctl("run start flash --site ship"), 0) << last_err_;
  ASSERT_EQ(Ctl("bundle export --site ship --out " + File("to-ship")), 0) << last_err_;

  // The site dies (SIGKILL) after the first record (an artifact chunk), then after the
  // second; each restart imports the same volume again.
  for (const char* after : {"1", "2"}) {
    StartAirAgent(sites_[0], {std::string("OUTPOST_TEST_KILL_IMPORT_AFTER=") + after});
    EXPECT_NE(Local("ship", "bundle import " + File("to-ship")), 0);
    int status = 0;
    ASSERT_EQ(waitpid(sites_[0].pid, &status, 0), sites_[0].pid);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    sites_[0].pid = -1;
  }
  StartAirAgent(sites_[0]);
  ASSERT_EQ(Local("ship", "bundle import " + File("to-ship")), 0) << last_err_;
  ASSERT_TRUE(Eventually([&] {
    json l = Agent("ship", {{"op", "run.list"}});
    if (l["runs"].size() != 4u) return false;
    for (const auto& x : l["runs"]) if (x["state"] != "succeeded") return false;
    return true;
  })) << Agent("ship", {{"op", "run.list"}}).dump();

  // The hub dies after applying the return bundle's first record, before it answers.
  ASSERT_EQ(Local("ship", "bundle export --out " + File("from-ship")), 0) << last_err_;
  Stop(&hub_pid_, SIGTERM);
  setenv("OUTPOST_TEST_KILL_IMPORT_AFTER", "1", 1);
  StartHub();
  unsetenv("OUTPOST_TEST_KILL_IMPORT_AFTER");
  EXPECT_NE(Ctl("bundle import " + File("from-ship")), 0);
  int status = 0;
  ASSERT_EQ(waitpid(hub_pid_, &status, 0), hub_pid_);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  hub_pid_ = -1;
  StartHub();
  json imp;
  ASSERT_EQ(Ctl("bundle import " + File("from-ship"), &imp), 0) << last_err_;
  EXPECT_EQ(imp[0]["events"]["applied"], 0) << "the killed import had committed them";
  ExpectEventsOnce("ship");
}

TEST_F(AirGapTest, ASiteAlternatesTheNetworkAndBundles) {
  sim::FaultProxy proxy;
  ASSERT_NO_FATAL_FAILURE(StartShipBehind(&proxy));
  ASSERT_EQ(Ctl("workflow apply " +
                    WriteWorkflow("hello", "name: hello\ntasks:\n  - id: a\n    shell: 'true'\n") +
                    " --target role=vessel"),
            0);
  ASSERT_EQ(Ctl("run start hello --site ship --wait"), 0) << last_err_;  // in port: the link

  // At sea: the link is down; bundles carry a run out and its events back.
  sim::LinkFaults down;
  down.refuse = true;
  proxy.SetFaults(0, down);
  proxy.Reset(0);
  ASSERT_TRUE(Eventually([&] {
    json s;
    return Ctl("site show ship", &s) == 0 && s["online"] == false;
  })) << "the site still looks online";
  json started;
  ASSERT_EQ(Ctl("run start hello --site ship", &started), 0);
  ASSERT_EQ(Ctl("bundle export --site ship --out " + File("sea")), 0) << last_err_;
  ASSERT_EQ(Local("ship", "bundle import " + File("sea")), 0) << last_err_;
  ASSERT_TRUE(Eventually([&] {
    return Agent("ship", {{"op", "run.show"}, {"id", started["runs"][0]}})["run"]["state"] ==
           "succeeded";
  }));
  ASSERT_EQ(Local("ship", "bundle export --out " + File("sea-return")), 0) << last_err_;
  ASSERT_EQ(Ctl("bundle import " + File("sea-return")), 0) << last_err_;
  json hub_run;
  ASSERT_EQ(Ctl("run show " + started["runs"][0].get<std::string>(), &hub_run), 0);
  EXPECT_EQ(hub_run["state"], "succeeded");

  // In port again: the session picks up from the watermarks the bundles moved.
  proxy.SetFaults(0, sim::LinkFaults{});
  ASSERT_TRUE(AllOnline());
  ASSERT_EQ(Ctl("run start hello --site ship --wait"), 0) << last_err_;
  ExpectConverged();
  json r = Agent("ship", {{"op", "run.list"}});
  EXPECT_EQ(r["runs"].size(), 3u);
  proxy.Stop();
}

TEST_F(AirGapTest, AnArtifactCrossesALinkCutSeveralTimesAndResumes) {
  sim::FaultProxy proxy;
  ASSERT_NO_FATAL_FAILURE(StartShipBehind(&proxy));
  constexpr size_t kSize = 12 << 20;
  const std::string digest = MakeFile("image.bin", kSize, 11);
  ASSERT_EQ(Ctl("artifact push " + File("image.bin")), 0) << last_err_;
  // The link is cut after every 2 MiB or so, up to four times (each cut is armed again as
  // soon as the test sees the last one, so a fast transfer may see fewer).
  sim::LinkFaults cut;
  cut.cut_after = 2 << 20;
  proxy.SetFaults(0, cut);
  ASSERT_EQ(Ctl("workflow apply " + FlashWorkflow(digest) + " --target role=vessel"), 0) << last_err_;
  uint64_t cuts = 0;
  ASSERT_TRUE(Eventually([&] {
    if (proxy.resets() > cuts) {
      cuts = proxy.resets();
      if (cuts < 4) proxy.SetFaults(0, cut);  // arm the next cut
      else proxy.SetFaults(0, sim::LinkFaults{});
    }
    json a = Agent("ship", {{"op", "artifact.list"}})["artifacts"];
    return a["cached"].size() == 1u;
  }, 90000)) << Agent("ship", {{"op", "artifact.list"}}).dump();
  EXPECT_GE(proxy.resets(), 2u) << "the link was cut more than once";
  json a = Agent("ship", {{"op", "artifact.list"}})["artifacts"];
  EXPECT_EQ(a["cached"][0]["digest"], digest);
  // Resumed, never from zero: chunks fetched in all are the file's plus at most a window
  // lost at each cut.
  const uint64_t chunks = (kSize + kArtifactChunkBytes - 1) / kArtifactChunkBytes;
  EXPECT_LE(a["counters"]["chunks_received"].get<uint64_t>(), chunks + 4 * proxy.resets());
  EXPECT_EQ(ContentDigest(ReadAll(SiteDir("ship") + "/artifacts/" + digest)), digest);
  // The hub shows the site has it; a run uses it offline-safe from the cache.
  ASSERT_TRUE(Eventually([&] {
    json s;
    return Ctl("site show ship", &s) == 0 && s["artifacts"][0]["state"] == "cached";
  }));
  json run;
  ASSERT_EQ(Ctl("run start flash --site ship --wait", &run), 0) << last_err_;
  proxy.Stop();
}

}  // namespace
}  // namespace outpost::testing
