// Trust with real processes: sites with a fleet root run only what an operator their
// root-signed policy names has signed, whatever a hub with an edited store sends them.
// The hub's store is edited the way an attacker who owns the hub machine would: stop the
// hub, append commands to a site's command log in its RocksDB, start it again.
#include "tests/integration/fleet_fixture.h"

#include "common/protocol/command.h"
#include "common/protocol/event.h"
#include "common/trust.h"
#include "common/workflow/workflow.h"
#include "hub/rocks_hub_store.h"

namespace outpost {
namespace {

using namespace outpost::testing;

const char* kHelloSigned = R"(
name: hello
params:
  who: {default: world}
tasks:
  - id: greet
    shell: echo "hello $OUTPOST_PARAM_WHO"
)";

class TrustTest : public FleetTest {
 protected:
  void SetUp() override {
    FleetTest::SetUp();
    sites_ = {{"alpha", "web"}, {"beta", "web"}};
    root_path_ = (dir_ / "root.key").string();
    alice_path_ = (dir_ / "alice.key").string();
    root_ = *GenerateSigningKey();
    alice_ = *GenerateSigningKey();
    mallory_ = *GenerateSigningKey();
    ASSERT_TRUE(WriteSigningKey(root_path_, root_).ok());
    ASSERT_TRUE(WriteSigningKey(alice_path_, alice_).ok());
    agent_extra_ = {"--trust-root", root_path_ + ".pub"};
    pwned_ = (dir_ / "pwned").string();
  }

  // A policy body naming alice for workflow hello on role=web sites.
  nlohmann::json PolicyBody(int version) const {
    return {{"kind", "policy"},
            {"fleet", "test"},
            {"version", version},
            {"issued", SystemClock().Now()},
            {"expires", SystemClock().Now() + 3600'000},
            {"operators",
             {{{"name", "alice"},
               {"key", alice_.public_key},
               {"may", {"apply", "start", "cancel", "approve"}},
               {"workflows", {"hello"}},
               {"sites", {{"role", "web"}}}}}}};
  }

  // The root signs `body` offline (outpostctl trust sign-policy); the hub hands it out.
  void SignAndPushPolicy(const json& body) {
    const std::string file = (dir_ / "policy.json").string();
    std::ofstream(file) << body.dump();
    std::string out;
    ASSERT_EQ(Run(std::string(OUTPOSTCTL_BIN) + " trust sign-policy " + file + " --root-key " +
                      root_path_ + " --out " + file + ".signed",
                  &out),
              0)
        << last_err_;
    ASSERT_EQ(Ctl("policy push " + file + ".signed"), 0) << last_err_;
  }

  std::string SitePublicKey(const std::string& site) {
    json s;
    EXPECT_EQ(Ctl("site show " + site, &s), 0) << last_err_;
    return s.value("key", "");
  }

  // Stops the hub, lets `edit` append to command logs of its store, starts it again.
  void EditHubStore(const std::function<void(std::map<std::string, SiteRecord>&, HubTxn&)>& edit) {
    Stop(&hub_pid_, SIGTERM);
    {
      auto store = RocksHubStore::Open(HubDir() + "/db", RocksHubStore::Options{});
      ASSERT_TRUE(store.ok()) << store.status().ToString();
      std::vector<SiteRecord> list;
      ASSERT_TRUE((*store)->LoadSites(&list).ok());
      std::map<std::string, SiteRecord> sites;
      for (auto& s : list) sites[s.name] = s;
      HubTxn txn;
      edit(sites, txn);
      for (auto& [name, s] : sites) txn.PutSite(s);
      ASSERT_TRUE((*store)->Commit(txn).ok());
    }
    StartHub();
  }
  static void Append(SiteRecord& s, const Command& c, HubTxn& t) {
    t.PutDown(s.name, s.down_epoch, ++s.down_head, EncodeCommand(c));
  }

  // The command.rejected messages in `site`'s event stream as the hub received it.
  std::vector<std::string> Rejections(const std::string& site) {
    Stop(&hub_pid_, SIGTERM);
    std::vector<std::string> out;
    {
      auto store = RocksHubStore::Open(HubDir() + "/db", RocksHubStore::Options{});
      EXPECT_TRUE(store.ok());
      std::vector<SiteRecord> list;
      EXPECT_TRUE((*store)->LoadSites(&list).ok());
      for (const auto& s : list) {
        if (s.name != site) continue;
        auto up = (*store)->ReadUp(site, s.incarnation, 0, 100000);
        EXPECT_TRUE(up.ok());
        for (const auto& rec : *up) {
          Event e;
          if (Decode(rec.payload, &e).ok() &&
              e.type == static_cast<uint8_t>(EventType::kCommandRejected)) {
            out.push_back(e.message);
          }
        }
      }
    }
    StartHub();
    return out;
  }

  bool Converged(const std::string& site) {
    return Eventually([&] {
      json st = Agent(site, {{"op", "status"}});
      json hub;
      if (Ctl("site show " + site, &hub) != 0 || !st.contains("status")) return false;
      return hub["events_received"] == st["status"]["log_head"] && hub["commands_pending"] == 0;
    }, 30000);
  }

  std::string root_path_, alice_path_, pwned_;
  SigningKey root_, alice_, mallory_;
};

std::string Joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& m : v) s += "  " + m + "\n";
  return s;
}

bool Has(const std::vector<std::string>& v, const std::string& part) {
  return std::any_of(v.begin(), v.end(), [&](const std::string& m) { return m.find(part) != std::string::npos; });
}

TEST_F(TrustTest, AHubWithAnEditedStoreGetsNothingRunThatWasNotSigned) {
  StartFleet();
  // The root signs policy v1 offline; the hub hands it to the sites.
  SignAndPushPolicy(PolicyBody(1));
  // Alice applies hello, signed, and starts it on alpha, signed.
  const std::string wf = WriteWorkflow("hello", kHelloSigned);
  ASSERT_EQ(Ctl("workflow apply " + wf + " --signing-key " + alice_path_), 0) << last_err_;
  json started;
  ASSERT_EQ(Ctl("run start hello --site alpha --param who=alice --wait --timeout 30 --signing-key " +
                    alice_path_,
                &started),
            0)
      << last_err_;
  // Unsigned work, even through the real operator API, is refused by the site.
  json unsigned_run;
  EXPECT_NE(Ctl("run start hello --site alpha --wait --timeout 30", &unsigned_run), 0);
  ASSERT_TRUE(Converged("alpha"));
  ASSERT_TRUE(Converged("beta"));

  const std::string alpha_key = SitePublicKey("alpha"), beta_key = SitePublicKey("beta");
  const std::string evil = "name: hello\ntasks:\n  - id: x\n    shell: touch " + pwned_ + "\n";
  auto signed_start = [&](const SigningKey& who, const std::string& request,
                          const std::vector<std::string>& sites, const std::string& source) {
    nlohmann::json body = {{"kind", "start"},       {"request", request},
                           {"workflow", "hello"},   {"digest", ContentDigest(source)},
                           {"params", {{"who", "x"}}}, {"sites", sites},
                           {"expires", SystemClock().Now() + 600'000}};
    return *Sign(body, who);
  };
  auto start_cmd = [&](const std::string& run, const std::string& request, const std::string& source,
                       const Signed& s) {
    Command c;
    c.type = static_cast<uint8_t>(CommandType::kStartRun);
    c.run = run;
    c.request = request;
    c.workflow = "hello";
    c.source = source;
    c.params = {{"who", "x"}};
    c.author = "hub-attacker";
    c.grant = s.body;
    c.signer = s.signer;
    c.sig = s.sig;
    return c;
  };
  const std::string placed = kHelloSigned;
  EditHubStore([&](std::map<std::string, SiteRecord>& sites, HubTxn& t) {
    // 1. Alter the placed workflow: the signed apply over a different definition.
    Command place;
    place.type = static_cast<uint8_t>(CommandType::kPlaceWorkflow);
    place.workflow = "hello";
    place.source = evil;
    Signed real_apply = *Sign({{"kind", "apply"}, {"workflow", "hello"},
                               {"digest", ContentDigest(placed)}, {"signed", SystemClock().Now()}},
                              alice_);
    place.grant = real_apply.body;
    place.signer = real_apply.signer;
    place.sig = real_apply.sig;
    Append(sites["beta"], place, t);
    // 2. Forge a start: no signature at all, the evil definition.
    Command forged = start_cmd("beta-forged", "forged-1", evil, Signed{});
    forged.grant.clear();
    forged.signer.clear();
    forged.sig.clear();
    Append(sites["beta"], forged, t);
    // 3. Replay a start signed for alpha to beta.
    Signed for_alpha = signed_start(alice_, "req-alpha", {alpha_key}, placed);
    Append(sites["beta"], start_cmd("beta-replayed", "req-alpha", placed, for_alpha), t);
    // 4. Alter a signed start's params on its way to alpha.
    Command altered = start_cmd("alpha-altered", "req-alpha", placed, for_alpha);
    altered.params = {{"who", "$(touch " + pwned_ + ")"}};
    Append(sites["alpha"], altered, t);
    // 5. The genuine start to alpha, then the same again under another run id: one run.
    Append(sites["alpha"], start_cmd("alpha-genuine", "req-alpha", placed, for_alpha), t);
    Append(sites["alpha"], start_cmd("alpha-again", "req-alpha", placed, for_alpha), t);
    // 6. Signed by a key the policy does not name.
    Signed by_mallory = signed_start(mallory_, "req-mallory", {alpha_key}, placed);
    Append(sites["alpha"], start_cmd("alpha-mallory", "req-mallory", placed, by_mallory), t);
    // 7. A policy signed by another key; then a genuine v2; then the genuine, older v1.
    auto policy_cmd = [](const Signed& s) {
      Command c;
      c.type = static_cast<uint8_t>(CommandType::kSetPolicy);
      c.grant = s.body;
      c.signer = s.signer;
      c.sig = s.sig;
      return c;
    };
    Append(sites["alpha"], policy_cmd(*Sign(PolicyBody(9), mallory_)), t);
    Append(sites["alpha"], policy_cmd(*Sign(PolicyBody(2), root_)), t);
    Append(sites["alpha"], policy_cmd(*Sign(PolicyBody(1), root_)), t);
  });
  ASSERT_TRUE(Converged("alpha"));
  ASSERT_TRUE(Converged("beta"));
  const auto beta = Rejections("beta");
  const auto alpha = Rejections("alpha");
  EXPECT_TRUE(Has(beta, "workflow.place: altered: the command's workflow definition is not the signed one"))
      << Joined(beta);
  EXPECT_TRUE(Has(beta, "run.start: unsigned")) << Joined(beta);
  EXPECT_TRUE(Has(beta, "run.start: meant for another site")) << Joined(beta);
  EXPECT_TRUE(Has(alpha, "run.start: altered: the command's params is not the signed one"))
      << Joined(alpha);
  EXPECT_TRUE(Has(alpha, "run.start: replayed: signed request req-alpha already started a run here"))
      << Joined(alpha);
  EXPECT_TRUE(Has(alpha, "not allowed by policy v1: " + mallory_.public_key)) << Joined(alpha);
  EXPECT_TRUE(Has(alpha, "policy.set: policy signed by " + mallory_.public_key)) << Joined(alpha);
  EXPECT_TRUE(Has(alpha, "policy.set: policy v1 is older than v2 in force (no rollback)"))
      << Joined(alpha);
  // The operator's own unsigned start was refused too.
  EXPECT_TRUE(Has(alpha, "run.start: unsigned: no operator signed it (asked by admin)")) << Joined(alpha);
  // Nothing the attacker sent ran; the genuine signed start ran exactly once.
  EXPECT_FALSE(fs::exists(pwned_));
  json genuine = Agent("alpha", {{"op", "run.show"}, {"id", "alpha-genuine"}});
  EXPECT_EQ(genuine["run"]["state"], "succeeded") << genuine.dump();
  EXPECT_FALSE(Agent("alpha", {{"op", "run.show"}, {"id", "alpha-again"}}).value("ok", false));
  EXPECT_FALSE(Agent("beta", {{"op", "run.show"}, {"id", "beta-forged"}}).value("ok", false));
  // The placed definition on beta is still the signed one.
  json wfl = Agent("beta", {{"op", "workflow.list"}});
  EXPECT_NE(wfl.dump().find(HexHash(placed)), std::string::npos) << wfl.dump();
  // The hub shows what the sites refused: the altered placement, and every reason.
  json beta_site;
  ASSERT_EQ(Ctl("site show beta", &beta_site), 0);
  EXPECT_NE(beta_site["refused_workflows"].dump().find("workflow definition is not the signed one"),
            std::string::npos) << beta_site.dump();
  EXPECT_GE(beta_site["commands_refused"].get<int>(), 3);
  json events;
  ASSERT_EQ(Ctl("site events alpha --limit 200", &events), 0);
  EXPECT_NE(events.dump().find("replayed: signed request req-alpha"), std::string::npos);
  json alpha_site;
  ASSERT_EQ(Ctl("site show alpha", &alpha_site), 0);
  EXPECT_NE(alpha_site["policy"].get<std::string>().find("refused: policy.set: policy v1 is older"),
            std::string::npos) << alpha_site.dump();
  // status says the site checks signatures, under policy v2, and counts the refusals.
  json st = Agent("alpha", {{"op", "status"}});
  EXPECT_EQ(st["status"]["trust"]["mode"], "signed");
  EXPECT_EQ(st["status"]["trust"]["policy"]["version"], 2);
  EXPECT_GE(st["status"]["trust"]["refused"].get<int>(), 4);
}

TEST_F(TrustTest, ASiteWithoutATrustRootSaysItTrustsItsHubAndViewersCannotStartRuns) {
  agent_extra_.clear();
  sites_ = {{"alpha", "web"}};
  StartFleet();
  json st = Agent("alpha", {{"op", "status"}});
  EXPECT_EQ(st["status"]["trust"]["mode"], "hub-trusted");
  EXPECT_NE(ReadAll((dir_ / "alpha.log").string()).find("agent.trust mode=hub-trusted"),
            std::string::npos);
  // A viewer key at the hub may look but not act.
  ASSERT_EQ(Run(std::string(OUTPOSTCTL_BIN) + " key create " + (dir_ / "viewer").string(), &last_err_), 0);
  {
    std::ofstream pub(HubDir() + "/operators/viewer.pub");
    pub << ReadAll((dir_ / "viewer.pub").string()) << "role = viewer\n";
  }
  const std::string as_viewer = "--key " + (dir_ / "viewer.key").string() + " ";
  EXPECT_EQ(Ctl(as_viewer + "status"), 0) << last_err_;
  json r;
  EXPECT_EQ(Ctl(as_viewer + "run cancel alpha-01", &r), 7) << r.dump();
  EXPECT_NE(r.dump().find("has role viewer; run.cancel needs operator"), std::string::npos)
      << r.dump();
  EXPECT_EQ(Ctl(as_viewer + "site remove alpha", &r), 7) << r.dump();
  // Two role lines contradict each other: the key is refused, not given the last one.
  ASSERT_EQ(Run(std::string(OUTPOSTCTL_BIN) + " key create " + (dir_ / "both").string(), &last_err_), 0);
  {
    std::ofstream pub(HubDir() + "/operators/both.pub");
    pub << ReadAll((dir_ / "both.pub").string()) << "role = viewer\nrole = admin\n";
  }
  ASSERT_TRUE(Eventually([&] {
    return ReadAll((dir_ / "hub.log").string()).find("a second role line") != std::string::npos;
  }));
  EXPECT_NE(Ctl("--key " + (dir_ / "both.key").string() + " site label alpha x=y"), 0);
  json sites;
  ASSERT_EQ(Ctl("site list", &sites), 0);
  EXPECT_EQ(sites.dump().find("\"x\""), std::string::npos) << sites.dump();
}

const char* kSecretFlow = R"(
name: deploy-key
params:
  token: {secret: true}
  who: {default: ops}
tasks:
  - id: use
    shell: |
      [ -n "$OUTPOST_PARAM_TOKEN" ] || { echo "no token"; exit 1; }
      echo "token is $OUTPOST_PARAM_TOKEN for {{ params.who }}"
      sleep 2
)";

// Every file under `dir` (recursively) that holds `needle`.
std::vector<std::string> FilesHolding(const fs::path& dir, const std::string& needle) {
  std::vector<std::string> hits;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    if (!e.is_regular_file(ec)) continue;
    if (ReadAll(e.path().string()).find(needle) != std::string::npos) hits.push_back(e.path().string());
  }
  return hits;
}

// Whether any process's command line holds `needle`.
bool InSomeCommandLine(const std::string& needle) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    std::string cmd = ReadAll((e.path() / "cmdline").string());
    if (cmd.find(needle) != std::string::npos) return true;
  }
  return false;
}

TEST_F(TrustTest, ASecretReachesOnlyTheTasksEnvironment) {
  const std::string secret = "s3cr3t-Value-42";
  // Given in a file, so not even outpostctl's own command line shows it.
  const std::string secret_file = (dir_ / "token").string();
  std::ofstream(secret_file) << secret << "\n";
  StartFleet();
  json policy = PolicyBody(1);
  policy["operators"][0]["workflows"] = {"deploy-key"};
  SignAndPushPolicy(policy);
  const std::string wf = WriteWorkflow("deploy-key", kSecretFlow);
  ASSERT_EQ(Ctl("workflow apply " + wf + " --signing-key " + alice_path_), 0) << last_err_;
  // The hub refuses a secret sent in clear (outpostctl never does that).
  json clear;
  EXPECT_NE(Ctl("--json run start deploy-key --site alpha", &clear), 0);
  // outpostctl seals it to each site; both sites run it with the value in their task's env.
  const std::string start = std::string(OUTPOSTCTL_BIN) + " --hub-dir " + HubDir() +
                            " --timeout-ms 10000 run start deploy-key --param-file token=" + secret_file +
                            " --signing-key " + alice_path_ + " --json";
  const std::string file = (dir_ / "start.out").string();
  pid_t starter = Spawn({"/bin/sh", "-c", start + " > " + file}, (dir_ / "start.err").string());
  // While the tasks sleep, no command line on this machine shows the value.
  bool seen_running = false;
  for (int i = 0; i < 100 && !seen_running; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    json st = Agent("alpha", {{"op", "status"}});
    seen_running = st["status"]["running_attempts"] == 1;
  }
  EXPECT_TRUE(seen_running);
  EXPECT_FALSE(InSomeCommandLine(secret));
  int status = 0;
  waitpid(starter, &status, 0);
  json started = json::parse(ReadAll(file), nullptr, false);
  ASSERT_TRUE(started.contains("runs")) << ReadAll(file) << ReadAll((dir_ / "start.err").string());
  for (const auto& id : started["runs"]) {
    ASSERT_TRUE(Eventually([&] {
      json r;
      return Ctl("run show " + id.get<std::string>(), &r) == 0 && r["state"] == "succeeded";
    }, 30000)) << id;
    json logs;
    ASSERT_EQ(Ctl("run logs " + id.get<std::string>() + " use", &logs), 0);
    EXPECT_NE(logs.dump().find("token is [secret] for ops"), std::string::npos) << logs.dump();
    json r;
    Ctl("run show " + id.get<std::string>(), &r);
    EXPECT_EQ(r["params"]["token"], "[secret]") << r.dump();
  }
  ASSERT_TRUE(Converged("alpha"));
  Stop(&hub_pid_, SIGTERM);
  for (auto& s : sites_) Stop(&s.pid, SIGTERM);
  // Not in the hub's store, the sites' databases, any log, or outpostctl's output.
  fs::remove(secret_file);
  EXPECT_EQ(FilesHolding(dir_ / "hub", secret), std::vector<std::string>{});
  EXPECT_EQ(FilesHolding(dir_ / "alpha", secret), std::vector<std::string>{});
  EXPECT_EQ(FilesHolding(dir_ / "beta", secret), std::vector<std::string>{});
  for (const char* log : {"hub.log", "alpha.log", "beta.log", "start.out", "start.err"}) {
    EXPECT_EQ(ReadAll((dir_ / log).string()).find(secret), std::string::npos) << log;
  }
}

const char* kNosyTask = R"(
name: nosy
params:
  data_dir: {}
  ctl: {}
tasks:
  - id: gate
    type: approval
    timeout: 1h
  - id: probe
    shell: |
      id -un
      cat {{ params.data_dir }}/agent.key && echo "READ THE KEY"
      ls {{ params.data_dir }}/db && echo "LISTED THE DB"
      ls {{ params.data_dir }} && echo "LISTED THE DATA DIR"
      {{ params.ctl }} --local --data-dir {{ params.data_dir }} run approve "$OUTPOST_RUN_ID" gate && echo "APPROVED MY GATE"
      echo "HOME=$HOME"
      env | grep -c . | sed 's/^/env vars: /'
      true
)";

TEST_F(TrustTest, ATaskRunsAsTheTaskUserAndCannotReachTheAgent) {
  if (geteuid() != 0) GTEST_SKIP() << "switching to a task user needs root";
  // nobody's group may use the socket, so the connection gets as far as SO_PEERCRED.
  agent_extra_ = {"--task-user", "nobody", "--control-group", "nogroup"};
  sites_ = {{"alpha", "web"}};
  StartFleet();
  const std::string wf = WriteWorkflow("nosy", kNosyTask);
  std::string out;
  ASSERT_EQ(Run(std::string(OUTPOSTCTL_BIN) + " --local --data-dir " + SiteDir("alpha") +
                    " --json run start " + wf + " --param data_dir=" + SiteDir("alpha") +
                    " --param ctl=" + OUTPOSTCTL_BIN,
                &out),
            0)
      << out << last_err_;
  const std::string id = json::parse(out)["id"];
  json run;
  ASSERT_TRUE(Eventually([&] {
    run = Agent("alpha", {{"op", "run.show"}, {"id", id}});
    for (const auto& t : run["run"]["tasks"]) {
      if (t["id"] == "probe" && t["state"] == "succeeded") return true;
    }
    return false;
  }, 20000)) << run.dump(2);
  json logs = Agent("alpha", {{"op", "run.logs"}, {"id", id}, {"task", "probe"}});
  const std::string text = logs.value("output", "");
  EXPECT_NE(text.find("nobody"), std::string::npos) << text;
  EXPECT_EQ(text.find("READ THE KEY"), std::string::npos) << text;
  EXPECT_EQ(text.find("LISTED THE DB"), std::string::npos) << text;
  EXPECT_EQ(text.find("LISTED THE DATA DIR"), std::string::npos) << text;
  EXPECT_EQ(text.find("APPROVED MY GATE"), std::string::npos) << text;
  // The agent hung up on it (SO_PEERCRED: the task user), whatever it sent.
  EXPECT_NE(text.find("outpostctl: "), std::string::npos) << text;
  // The gate still waits for a person.
  json again = Agent("alpha", {{"op", "run.show"}, {"id", id}});
  EXPECT_EQ(again["run"]["tasks"][0]["state"], "awaiting_approval") << again.dump(2);
  json st = Agent("alpha", {{"op", "status"}});
  EXPECT_GE(st["status"]["counters"]["control_peers_refused"].get<int>(), 1) << st.dump();
}

}  // namespace
}  // namespace outpost
