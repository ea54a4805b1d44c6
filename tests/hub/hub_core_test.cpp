// HubCore under a manual clock with its store on an in-memory Env, talking to simulated
// sites (a real SyncSession in the site role over in-memory streams) through the wire
// codec. No sockets, no sleeps.
#include <algorithm>
#include <map>
#include <set>

#include "hub/hub_core.h"
#include "hub/rocks_hub_store.h"

#include <gtest/gtest.h>
#include <rocksdb/env.h>

#include "../common/mem_streams.h"
#include "tests/hub/fake_site.h"
#include "common/bundle.h"
#include "common/keys.h"
#include "common/trust.h"

namespace outpost {
namespace {

using json = nlohmann::json;
using testing::MemIncoming;
using testing::MemOutgoing;

const char* kWf = R"(
name: deploy
params:
  version: "1"
tasks:
  - id: fetch
    run: [true]
  - id: install
    run: [true]
    needs: [fetch]
)";

class HubCoreTest : public ::testing::Test {
 protected:
  HubCoreTest() : env_(rocksdb::NewMemEnv(rocksdb::Env::Default())), rng_(42) { Open(); }

  void Open() {
    core_.reset();
    store_.reset();
    RocksHubStore::Options so;
    so.env = env_.get();
    auto s = RocksHubStore::Open("/hub", so);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
    auto c = HubCore::Open(store_.get(), clock_, &rng_, options_);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    core_ = std::move(c).value();
  }

  json Op(json req, const std::string& who = "tester") {
    HubOutput out;
    json r = core_->OnOperator(who, req, &out);
    Deliver(out);
    return r;
  }

  std::string AddSite(const std::string& name, const std::string& role) {
    auto keys = GenerateCurveKeys();
    EXPECT_TRUE(keys.ok());
    json r = Op({{"op", "site.add"}, {"name", name}, {"key", keys->public_z85},
                 {"labels", {{"role", role}}}});
    EXPECT_TRUE(r["ok"].get<bool>()) << r.dump();
    return keys->public_z85;
  }

  // Frames from the hub to the sites' peers.
  void Deliver(const HubOutput& out) {
    for (const auto& f : out.send) {
      for (auto* s : sites_) {
        if (s->peer != f.peer) continue;
        // Through the codec both ways, as on the wire.
        Message m;
        ASSERT_TRUE(DecodeMessage(EncodeMessage(f.message), &m).ok());
        if (m.type() == MsgType::kError) last_error_ = m.message;
        SyncOutput so;
        s->session.OnMessage(m, &so);
        pending_[s].push_back(std::move(so));
      }
    }
  }
  // Runs the conversation until nobody has anything to say (bounded).
  void Settle() {
    for (int i = 0; i < 1000; ++i) {
      bool any = false;
      for (auto* s : sites_) {
        SyncOutput so;
        s->session.Poke(&so);
        pending_[s].push_back(std::move(so));
      }
      auto batch = std::move(pending_);
      pending_.clear();
      for (auto& [site, outs] : batch) {
        for (auto& so : outs) {
          for (const auto& m : so.send) {
            any = true;
            HubOutput out;
            core_->OnSiteFrame(site->name, site->peer, EncodeMessage(m), &out);
            Deliver(out);
          }
        }
      }
      // As the hub's driver does when no frame is waiting: the group's sync, its ACKs.
      HubOutput flushed;
      EXPECT_TRUE(core_->Flush(&flushed).ok());
      any = any || !flushed.send.empty();
      Deliver(flushed);
      if (!any) return;
    }
    FAIL() << "conversation did not settle";
  }
  void Connect(FakeSite* s) {
    if (std::find(sites_.begin(), sites_.end(), s) == sites_.end()) sites_.push_back(s);
    SyncOutput so;
    s->session.OnConnected(&so);
    pending_[s].push_back(std::move(so));
    Settle();
  }
  void Disconnect(FakeSite* s) {
    s->session.OnDisconnected();
    sites_.erase(std::find(sites_.begin(), sites_.end(), s));
  }

  std::unique_ptr<rocksdb::Env> env_;
  ManualClock clock_;
  Rng rng_;
  HubOptions options_;
  std::unique_ptr<HubStore> store_;
  std::unique_ptr<HubCore> core_;
  std::vector<FakeSite*> sites_;
  std::map<FakeSite*, std::vector<SyncOutput>> pending_;
  std::string last_error_;
};

TEST_F(HubCoreTest, PlacementFollowsTargetsAndLabelsAndSurvivesAHubRestart) {
  AddSite("a", "web");
  AddSite("b", "db");
  FakeSite a("a", 1, clock_), b("b", 2, clock_);
  Connect(&a);
  Connect(&b);
  json r = Op({{"op", "workflow.apply"}, {"source", kWf}, {"target", {{"role", "web"}}}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  EXPECT_EQ(r["sites"], json::array({"a"}));
  Settle();
  ASSERT_EQ(a.Commands().size(), 1u);
  EXPECT_EQ(a.Commands()[0].command_type(), CommandType::kPlaceWorkflow);
  EXPECT_EQ(a.Commands()[0].workflow, "deploy");
  EXPECT_TRUE(b.Commands().empty());

  // b gains the label: it gains the workflow. a loses it: it is told to remove it.
  ASSERT_TRUE(Op({{"op", "site.label"}, {"name", "b"}, {"set", {{"role", "web"}}}})["ok"].get<bool>());
  ASSERT_TRUE(Op({{"op", "site.label"}, {"name", "a"}, {"remove", {"role"}}})["ok"].get<bool>());
  Settle();
  ASSERT_EQ(b.Commands().size(), 1u);
  EXPECT_EQ(b.Commands()[0].command_type(), CommandType::kPlaceWorkflow);
  ASSERT_EQ(a.Commands().size(), 2u);
  EXPECT_EQ(a.Commands()[1].command_type(), CommandType::kRemoveWorkflow);
  // Applying the same definition again changes nothing anywhere.
  r = Op({{"op", "workflow.apply"}, {"source", kWf}, {"target", {{"role", "web"}}}});
  EXPECT_TRUE(r["unchanged"].get<bool>());
  Settle();
  EXPECT_EQ(a.Commands().size(), 2u);
  EXPECT_EQ(b.Commands().size(), 1u);

  // The hub restarts: registry, placement and watermarks come back from the store.
  Disconnect(&a);
  Disconnect(&b);
  Open();
  r = Op({{"op", "workflow.list"}});
  EXPECT_EQ(r["workflows"][0]["sites"], json::array({"b"}));
  Connect(&b);
  Settle();
  EXPECT_EQ(b.Commands().size(), 1u);  // nothing delivered twice
  EXPECT_TRUE(core_->online("b"));
}

// A retry still gets its runs after the workflow was removed (the simulator's operator
// actions found it answered not_found); a new request for it is refused.
TEST_F(HubCoreTest, ARetriedRequestGetsItsRunsAfterTheWorkflowWasRemoved) {
  AddSite("a", "web");
  ASSERT_TRUE(Op({{"op", "workflow.apply"}, {"source", kWf}})["ok"].get<bool>());
  json r = Op({{"op", "run.start"}, {"workflow", "deploy"}, {"request", "r-1"}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  ASSERT_TRUE(Op({{"op", "workflow.remove"}, {"name", "deploy"}})["ok"].get<bool>());
  json late = Op({{"op", "run.start"}, {"workflow", "deploy"}, {"request", "r-1"}});
  EXPECT_TRUE(late["ok"].get<bool>()) << late.dump();
  EXPECT_TRUE(late["duplicate"].get<bool>());
  EXPECT_EQ(late["runs"], r["runs"]);
  EXPECT_EQ(Op({{"op", "run.start"}, {"workflow", "deploy"}, {"request", "r-9"}})["code"], "not_found");
}

TEST_F(HubCoreTest, RunRequestsAreIdempotentAndTheViewFollowsTheSitesEvents) {
  AddSite("a", "web");
  FakeSite a("a", 1, clock_);
  Connect(&a);
  ASSERT_TRUE(Op({{"op", "workflow.apply"}, {"source", kWf}})["ok"].get<bool>());
  json r = Op({{"op", "run.start"}, {"workflow", "deploy"}, {"request", "r-1"},
               {"params", {{"version", "7"}}}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  ASSERT_EQ(r["runs"].size(), 1u);
  const std::string run = r["runs"][0];
  json again = Op({{"op", "run.start"}, {"workflow", "deploy"}, {"request", "r-1"},
                   {"params", {{"version", "7"}}}});
  EXPECT_TRUE(again["duplicate"].get<bool>()) << again.dump();
  EXPECT_EQ(again["runs"], r["runs"]);
  // The same request id for another start (other params) is a conflict.
  json other = Op({{"op", "run.start"}, {"workflow", "deploy"}, {"request", "r-1"},
                   {"params", {{"version", "8"}}}});
  EXPECT_FALSE(other["ok"].get<bool>());
  EXPECT_EQ(other["code"], "conflict") << other.dump();
  Settle();
  auto cmds = a.Commands();
  ASSERT_EQ(cmds.size(), 2u);  // place + one start, not two
  EXPECT_EQ(cmds[1].command_type(), CommandType::kStartRun);
  EXPECT_EQ(cmds[1].run, run);
  EXPECT_EQ(cmds[1].request, "r-1");
  EXPECT_EQ(cmds[1].params.at("version"), "7");
  EXPECT_FALSE(cmds[1].has_priority);  // the definition's priority applies
  json pr = Op({{"op", "run.start"}, {"workflow", "deploy"}, {"request", "r-2"}, {"priority", 50}});
  ASSERT_TRUE(pr["ok"].get<bool>()) << pr.dump();
  Settle();
  ASSERT_EQ(a.Commands().size(), 3u);
  EXPECT_TRUE(a.Commands()[2].has_priority);
  EXPECT_EQ(a.Commands()[2].priority, 50);
  EXPECT_FALSE(Op({{"op", "run.start"}, {"workflow", "deploy"}, {"priority", "high"}})["ok"].get<bool>());

  // Not yet reported by the site: pending and undelivered.
  json show = Op({{"op", "run.show"}, {"id", run}});
  EXPECT_EQ(show["run"]["state"], "pending");
  EXPECT_FALSE(show["run"]["delivered"].get<bool>());
  EXPECT_EQ(show["run"]["tasks"].size(), 2u);

  // The site runs it and reports.
  Event e;
  e.run = run;
  e.time = clock_.Now();
  e.type = static_cast<uint8_t>(EventType::kRunCreated);
  e.workflow = "deploy";
  e.request = "r-1";
  e.tasks = {"fetch", "install"};
  a.Emit(e);
  e.type = static_cast<uint8_t>(EventType::kRunStarted);
  a.Emit(e);
  for (const char* t : {"fetch", "install"}) {
    Event te = e;
    te.task = t;
    te.attempt = 1;
    te.type = static_cast<uint8_t>(EventType::kAttemptStarted);
    te.state = "running";
    a.Emit(te);
    te.type = static_cast<uint8_t>(EventType::kAttemptFinished);
    te.exit_code = 0;
    te.output = std::string("out of ") + t;
    a.Emit(te);
    te.type = static_cast<uint8_t>(EventType::kTaskFinished);
    te.state = "succeeded";
    a.Emit(te);
  }
  Settle();
  show = Op({{"op", "run.show"}, {"id", run}});
  EXPECT_EQ(show["run"]["state"], "running");
  EXPECT_TRUE(show["run"]["delivered"].get<bool>());
  EXPECT_EQ(show["run"]["tasks"][1]["state"], "succeeded");
  EXPECT_EQ(show["run"]["tasks"][1]["attempts"], 1);
  EXPECT_EQ(Op({{"op", "run.logs"}, {"id", run}, {"task", "install"}})["output"], "out of install");

  // A cancel while it runs is sent; once it finished, a cancel is a no-op.
  json c = Op({{"op", "run.cancel"}, {"id", run}});
  EXPECT_FALSE(c["noop"].get<bool>());
  Settle();
  ASSERT_EQ(a.Commands().size(), 4u);
  EXPECT_EQ(a.Commands().back().command_type(), CommandType::kCancelRun);
  e.type = static_cast<uint8_t>(EventType::kRunFinished);
  e.state = "succeeded";  // it finished before the cancel reached it
  a.Emit(e);
  Settle();
  c = Op({{"op", "run.cancel"}, {"id", run}});
  EXPECT_TRUE(c["noop"].get<bool>());
  EXPECT_EQ(Op({{"op", "run.show"}, {"id", run}})["run"]["state"], "succeeded");
  EXPECT_EQ(a.up.acked(), a.up.head());
  EXPECT_EQ(core_->counters().events_applied, a.up.head());
}

TEST_F(HubCoreTest, RunStartRefusesSitesWithoutTheWorkflowAndBadParams) {
  AddSite("a", "web");
  AddSite("b", "db");
  ASSERT_TRUE(Op({{"op", "workflow.apply"}, {"source", kWf}, {"target", {{"role", "web"}}}})["ok"]
                  .get<bool>());
  json r = Op({{"op", "run.start"}, {"workflow", "deploy"}, {"site", "b"}});
  EXPECT_EQ(r["code"], "conflict");
  r = Op({{"op", "run.start"}, {"workflow", "deploy"}, {"params", {{"nope", "1"}}}});
  EXPECT_FALSE(r["ok"].get<bool>());
  EXPECT_NE(r["error"].get<std::string>().find("nope"), std::string::npos) << r.dump();
  r = Op({{"op", "run.start"}, {"workflow", "missing"}});
  EXPECT_EQ(r["code"], "not_found");
  // Commands queue for an offline site; status shows them pending.
  r = Op({{"op", "run.start"}, {"workflow", "deploy"}});
  ASSERT_TRUE(r["ok"].get<bool>());
  EXPECT_EQ(r["sites"], json::array({"a"}));
  json st = Op({{"op", "status"}});
  EXPECT_EQ(st["status"]["commands_pending"], 2);  // place + start for a
  EXPECT_EQ(st["status"]["sites"]["offline"], 2);
}

TEST_F(HubCoreTest, RevokedAndUnknownIdentitiesAreRefusedAndMalformedFramesCounted) {
  const std::string key = AddSite("a", "web");
  EXPECT_EQ(core_->AuthorizeSite(key), "a");
  FakeSite a("a", 1, clock_);
  Connect(&a);
  EXPECT_TRUE(core_->online("a"));

  HubOutput out;
  core_->OnSiteFrame("a", a.peer, "\xdd\xff\xff\xff\xff", &out);  // msgpack bomb
  EXPECT_EQ(core_->counters().frames_malformed, 1u);
  ASSERT_EQ(out.send.size(), 1u);
  EXPECT_EQ(out.send[0].message.type(), MsgType::kError);
  EXPECT_FALSE(core_->online("a"));  // the session is reset; the site says HELLO again
  Disconnect(&a);
  Connect(&a);
  EXPECT_TRUE(core_->online("a"));

  ASSERT_TRUE(Op({{"op", "site.revoke"}, {"name", "a"}})["ok"].get<bool>());
  EXPECT_FALSE(core_->online("a"));
  EXPECT_EQ(a.session.state(), SyncSession::State::kDisconnected);  // told at once
  EXPECT_NE(last_error_.find("revoked"), std::string::npos);
  EXPECT_EQ(core_->AuthorizeSite(key), std::nullopt);
  a.Emit(Event{});
  const uint64_t before = core_->counters().events_applied;
  Disconnect(&a);
  Connect(&a);  // the open connection keeps talking: every frame is refused
  EXPECT_GT(core_->counters().frames_refused, 0u);
  EXPECT_EQ(core_->counters().events_applied, before);
  EXPECT_EQ(core_->AuthorizeSite("no-such-key-0000000000000000000000000000"), std::nullopt);
}

TEST_F(HubCoreTest, UnknownKeysWaitAsPendingUntilAccepted) {
  options_.accept_unknown = true;
  Open();
  auto keys = GenerateCurveKeys();
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(core_->AuthorizeSite(keys->public_z85), std::nullopt);
  json list = Op({{"op", "site.list"}});
  ASSERT_EQ(list["sites"].size(), 1u);
  EXPECT_EQ(list["sites"][0]["state"], "pending");
  const std::string pending = list["sites"][0]["name"];
  json r = Op({{"op", "site.accept"}, {"name", pending}, {"as", "plant-7"},
               {"labels", {{"role", "db"}}}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  EXPECT_EQ(core_->AuthorizeSite(keys->public_z85), "plant-7");
  list = Op({{"op", "site.list"}});
  ASSERT_EQ(list["sites"].size(), 1u);
  EXPECT_EQ(list["sites"][0]["name"], "plant-7");
  EXPECT_EQ(list["sites"][0]["state"], "enrolled");
  // Bad names and keys are refused with the reason.
  r = Op({{"op", "site.add"}, {"name", "Bad_Name"}, {"key", keys->public_z85}});
  EXPECT_NE(r["error"].get<std::string>().find("site name"), std::string::npos);
  r = Op({{"op", "site.add"}, {"name", "other"}, {"key", keys->public_z85}});
  EXPECT_EQ(r["code"], "conflict");
}

TEST_F(HubCoreTest, NewIncarnationStartsANewStreamAndRedeliversUnacknowledgedCommands) {
  AddSite("a", "web");
  ASSERT_TRUE(Op({{"op", "workflow.apply"}, {"source", kWf}})["ok"].get<bool>());
  FakeSite a1("a", 111, clock_);
  for (int i = 0; i < 5; ++i) a1.Emit(Event{});
  Connect(&a1);
  EXPECT_EQ(a1.up.acked(), 5u);
  Disconnect(&a1);
  // While the site is away it loses its disk; a run is requested meanwhile.
  json r = Op({{"op", "run.start"}, {"workflow", "deploy"}});
  ASSERT_TRUE(r["ok"].get<bool>());
  FakeSite a2("a", 222, clock_);
  a2.Emit(Event{});
  Connect(&a2);
  // The new history is a new stream: its event 1 is applied, not taken for a duplicate.
  EXPECT_EQ(a2.up.acked(), 1u);
  json site = Op({{"op", "site.show"}, {"name", "a"}});
  EXPECT_EQ(site["site"]["events_received"], 6);
  EXPECT_EQ(site["site"]["incarnation"], "00000000000000de");
  // The old copy is kept, never merged.
  auto old = store_->ReadUp("a", 111, 0, 100);
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->size(), 5u);
  // The new database gets the placement again and the start it never acknowledged.
  auto cmds = a2.Commands();
  ASSERT_EQ(cmds.size(), 2u);
  EXPECT_EQ(cmds[0].command_type(), CommandType::kPlaceWorkflow);
  EXPECT_EQ(cmds[1].command_type(), CommandType::kStartRun);
  json events = Op({{"op", "events"}, {"limit", 100}});
  bool recorded = false;
  for (const auto& e : events["events"]) recorded = recorded || e["event"] == "site.new_incarnation";
  EXPECT_TRUE(recorded);
}

// A hub restored from an older backup (docs/protocol.md, "A hub restored from a backup"):
// undeclared, the sites refuse it; declared, each site resumes. The events the sites had
// trimmed after the lost hub acknowledged them are recorded as lost, the commands they
// applied that the backup lacks are adopted, and a command enqueued after the restore is
// moved after them, so the site applies it instead of taking it for one it has.
TEST_F(HubCoreTest, ARestoredHubIsRefusedUntilDeclaredThenSitesResumeWithoutReusingCommands) {
  AddSite("a", "web");
  ASSERT_TRUE(Op({{"op", "workflow.apply"}, {"source", kWf}})["ok"].get<bool>());
  FakeSite a("a", 7, clock_);
  for (int i = 0; i < 3; ++i) a.Emit(Event{});
  Connect(&a);
  ASSERT_EQ(a.up.acked(), 3u);
  ASSERT_EQ(a.Commands().size(), 1u);  // the placement
  Disconnect(&a);

  // The backup: the hub's files while it is stopped.
  auto files = [&](bool take, std::map<std::string, std::string>* backup) {
    core_.reset();
    store_.reset();
    std::vector<std::string> names;
    ASSERT_TRUE(env_->GetChildren("/hub", &names).ok());
    for (const auto& n : names) {
      if (n == "." || n == ".." || n == "LOCK") continue;
      if (take) {
        std::string content;
        ASSERT_TRUE(rocksdb::ReadFileToString(env_.get(), "/hub/" + n, &content).ok()) << n;
        (*backup)[n] = content;
      } else {
        ASSERT_TRUE(env_->DeleteFile("/hub/" + n).ok());
      }
    }
    if (!take) {
      for (const auto& [n, content] : *backup) {
        ASSERT_TRUE(rocksdb::WriteStringToFile(env_.get(), content, "/hub/" + n).ok());
      }
    }
    Open();
  };
  std::map<std::string, std::string> backup;
  files(true, &backup);

  // After the backup: 4 more events (acknowledged, so trimmed at the site) and two runs
  // the site applied. Then the hub's disk is lost and the backup put back.
  for (int i = 0; i < 4; ++i) a.Emit(Event{});
  ASSERT_TRUE(Op({{"op", "run.start"}, {"workflow", "deploy"}})["ok"].get<bool>());
  ASSERT_TRUE(Op({{"op", "run.start"}, {"workflow", "deploy"}})["ok"].get<bool>());
  Connect(&a);
  ASSERT_EQ(a.up.acked(), 7u);
  ASSERT_EQ(a.Commands().size(), 3u);
  Disconnect(&a);
  files(false, &backup);
  ASSERT_EQ(core_->site("a")->up_applied, 3u);
  ASSERT_EQ(core_->site("a")->down_head, 1u);

  // Undeclared, the hub refuses a site that applied more than it has, and says why. A run
  // requested meanwhile gets command 2 of the restored log, which the site already has
  // from the lost one.
  a.Emit(Event{});  // event 8
  Connect(&a);
  EXPECT_FALSE(a.session.established());
  EXPECT_NE(last_error_.find("--declare-restored"), std::string::npos) << last_error_;
  EXPECT_EQ(core_->counters().sites_ahead, 1u);
  Disconnect(&a);
  EXPECT_EQ(core_->site("a")->up_applied, 3u);
  json undeclared = Op({{"op", "run.start"}, {"workflow", "deploy"}, {"request", "undeclared"}});
  ASSERT_TRUE(undeclared["ok"].get<bool>()) << undeclared.dump();

  // Declared: a new epoch. Another run is requested before the site reconnects.
  auto epoch = core_->DeclareRestored();
  ASSERT_TRUE(epoch.ok()) << epoch.status().ToString();
  json r = Op({{"op", "run.start"}, {"workflow", "deploy"}, {"request", "after-restore"}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  const std::string run = r["runs"][0].get<std::string>();
  Connect(&a);
  ASSERT_TRUE(a.session.established()) << last_error_;
  // Events 4-7 are gone (recorded), event 8 arrives; the site records the epoch.
  EXPECT_EQ(core_->site("a")->up_applied, 8u);
  EXPECT_EQ(core_->counters().events_lost_in_restore, 4u);
  EXPECT_EQ(a.down.hub_epoch(), *epoch);
  auto copy = store_->ReadUp("a", 7, 0, 100);
  ASSERT_TRUE(copy.ok());
  ASSERT_EQ(copy->size(), 4u);
  EXPECT_EQ(copy->back().seq, 8u);
  // The two commands the backup did not see acknowledged are adopted; both starts made
  // by the restored hub come after them, undeclared or not.
  EXPECT_EQ(core_->counters().commands_adopted_in_restore, 2u);
  auto cmds = a.Commands();
  ASSERT_EQ(cmds.size(), 5u);
  EXPECT_EQ(cmds[3].command_type(), CommandType::kStartRun);
  EXPECT_EQ(cmds[3].run, undeclared["runs"][0].get<std::string>());
  EXPECT_EQ(cmds[4].run, run);
  EXPECT_EQ(core_->site("a")->down_acked, 5u);
  bool lost = false, reconciled = false;
  const json audit = Op({{"op", "events"}, {"limit", 100}});
  for (const auto& e : audit["events"]) {
    lost = lost || (e["event"] == "site.events_lost_in_restore" && e["from"] == 4 && e["to"] == 7);
    reconciled = reconciled || (e["event"] == "site.restore_reconciled" && e["commands_adopted"] == 2 &&
                               e["commands_resent"] == 2);
  }
  EXPECT_TRUE(lost) << audit.dump();
  EXPECT_TRUE(reconciled);

  // Reconnecting later is an ordinary session: nothing skipped or adopted again.
  Disconnect(&a);
  a.Emit(Event{});
  Connect(&a);
  EXPECT_EQ(core_->site("a")->up_applied, 9u);
  EXPECT_EQ(core_->counters().events_lost_in_restore, 4u);

  // An older copy still (the backup again, undeclared) is refused by the site's epoch.
  Disconnect(&a);
  files(false, &backup);
  last_error_.clear();
  Connect(&a);
  EXPECT_FALSE(a.session.established());
  EXPECT_NE(last_error_.find("old copy"), std::string::npos) << last_error_;
}

TEST_F(HubCoreTest, ASilentSiteGoesOfflineUnderTheManualClock) {
  AddSite("a", "web");
  FakeSite a("a", 1, clock_);
  Connect(&a);
  EXPECT_TRUE(core_->online("a"));
  EXPECT_GT(core_->NextDeadline(), 0);
  clock_.Advance(SyncOptions{}.idle_ping);
  HubOutput out;
  core_->Tick(&out);
  ASSERT_FALSE(out.send.empty());
  EXPECT_EQ(out.send[0].message.type(), MsgType::kPing);
  EXPECT_TRUE(core_->online("a"));
  clock_.Advance(SyncOptions{}.dead_after);
  out.send.clear();
  core_->Tick(&out);
  EXPECT_FALSE(core_->online("a"));
  json events = Op({{"op", "events"}});
  EXPECT_EQ(events["events"].back()["event"], "site.offline");
}

}  // namespace
}  // namespace outpost

namespace outpost {
namespace {

TEST_F(HubCoreTest, WronglyTypedOperatorRequestsAreInvalidNamingTheField) {
  AddSite("a", "web");
  const std::vector<std::pair<json, std::string>> cases = {
      {json{{"op", 5}}, "'op'"},
      {json{{"op", nullptr}}, "'op'"},
      {json::array({1, 2}), "not a JSON object"},
      {json{{"op", "events"}, {"limit", "ten"}}, "'limit'"},
      {json{{"op", "events"}, {"limit", -1}}, "'limit'"},
      {json{{"op", "run.approve"}, {"id", "x"}, {"task", "t"}, {"reject", "yes"}}, "'reject'"},
      {json{{"op", "site.add"}, {"name", json::array({"a"})}, {"key", "k"}}, "'name'"},
      {json{{"op", "site.label"}, {"name", "a"}, {"set", {{"role", 1}}}}, "'set.role'"},
      {json{{"op", "site.label"}, {"name", "a"}, {"remove", "role"}}, "'remove'"},
      {json{{"op", "run.start"}, {"workflow", "deploy"}, {"priority", 1e9}}, "'priority'"},
      {json{{"op", "run.start"}}, "'workflow' is required"},
      {json{{"op", "no.such"}}, "unknown op"},
  };
  for (const auto& [req, needle] : cases) {
    json r = Op(req);
    EXPECT_EQ(r["ok"], false) << req.dump();
    EXPECT_EQ(r["code"], "invalid") << req.dump();
    EXPECT_NE(r["error"].get<std::string>().find(needle), std::string::npos)
        << req.dump() << " -> " << r.dump();
  }
  EXPECT_EQ(core_->counters().operator_invalid, cases.size());
  EXPECT_EQ(core_->counters().operator_exceptions, 0u);
  EXPECT_TRUE(Op({{"op", "status"}})["ok"].get<bool>());  // the hub goes on
}

TEST_F(HubCoreTest, AReplacedIncarnationIsRefusedWithOnlyAnErrorAndNeverReapplied) {
  AddSite("a", "web");
  FakeSite a1("a", 111, clock_);
  for (int i = 0; i < 5; ++i) a1.Emit(Event{});
  Connect(&a1);
  Disconnect(&a1);
  FakeSite a2("a", 222, clock_);
  a2.Emit(Event{});
  Connect(&a2);
  Disconnect(&a2);
  // The old disk image comes back: refused, recorded, nothing applied again.
  FakeSite old("a", 111, clock_);
  for (int i = 0; i < 8; ++i) old.Emit(Event{});
  last_error_.clear();
  Connect(&old);
  EXPECT_FALSE(old.session.established());
  EXPECT_NE(last_error_.find("replaced"), std::string::npos) << last_error_;
  EXPECT_EQ(core_->counters().stale_incarnations, 1u);
  EXPECT_EQ(Op({{"op", "site.show"}, {"name", "a"}})["site"]["events_received"], 6);
  auto copy = store_->ReadUp("a", 111, 0, 100);
  ASSERT_TRUE(copy.ok());
  EXPECT_EQ(copy->size(), 5u);
  // It stays refused after a hub restart.
  Disconnect(&old);
  Open();
  FakeSite again("a", 111, clock_);
  Connect(&again);
  EXPECT_FALSE(again.session.established());
  EXPECT_EQ(core_->counters().stale_incarnations, 1u);
}

TEST_F(HubCoreTest, AnImpossibleHelloGetsOnlyAnError) {
  AddSite("a", "web");
  FakeSite a("a", 1, clock_);
  Connect(&a);
  Disconnect(&a);
  // A HELLO that claims the site applied commands the hub never wrote.
  Message hello;
  hello.t = static_cast<uint8_t>(MsgType::kHello);
  hello.incarnation = 1;
  hello.down_applied = 50;
  HubOutput out;
  core_->OnSiteFrame("a", "peer-x", EncodeMessage(hello), &out);
  ASSERT_EQ(out.send.size(), 1u);
  EXPECT_EQ(out.send[0].message.type(), MsgType::kError);
  EXPECT_FALSE(core_->online("a"));
  // A head past the protocol's limit does not even decode: refused, counted, not stored.
  hello.down_applied = 0;
  hello.up_head = ~uint64_t{0};
  out.send.clear();
  core_->OnSiteFrame("a", "peer-x", EncodeMessage(hello), &out);
  ASSERT_EQ(out.send.size(), 1u);
  EXPECT_EQ(out.send[0].message.type(), MsgType::kError);
  EXPECT_EQ(core_->counters().frames_malformed, 1u);
  EXPECT_EQ(Op({{"op", "site.show"}, {"name", "a"}})["site"]["events_behind"], 0);
}

TEST_F(HubCoreTest, TextFromASiteThatIsNotUtf8IsMadeSafe) {
  AddSite("a", "web");
  FakeSite a("a", 1, clock_);
  Connect(&a);
  Message err;
  err.t = static_cast<uint8_t>(MsgType::kError);
  err.message = std::string("\xff\xfe\xc3 bad", 7);
  HubOutput out;
  core_->OnSiteFrame("a", a.peer, EncodeMessage(err), &out);
  EXPECT_TRUE(out.send.empty());  // the site ended its session; nothing is sent back
  json events = Op({{"op", "events"}, {"limit", 10}});
  ASSERT_TRUE(events["ok"].get<bool>());
  EXPECT_NO_THROW(events.dump());
  EXPECT_FALSE(core_->online("a"));
}

TEST_F(HubCoreTest, RevokedOrPendingSitesCanBeRemovedWithOrWithoutHistory) {
  const std::string key = AddSite("a", "web");
  FakeSite a("a", 1, clock_);
  a.Emit(Event{});
  Connect(&a);
  Disconnect(&a);
  EXPECT_EQ(Op({{"op", "site.remove"}, {"name", "a"}})["code"], "conflict");  // enrolled
  ASSERT_TRUE(Op({{"op", "site.revoke"}, {"name", "a"}})["ok"].get<bool>());
  json r = Op({{"op", "site.remove"}, {"name", "a"}, {"purge", true}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  EXPECT_EQ(Op({{"op", "site.show"}, {"name", "a"}})["code"], "not_found");
  auto copy = store_->ReadUp("a", 1, 0, 100);
  ASSERT_TRUE(copy.ok());
  EXPECT_TRUE(copy->empty());
  // The same key may be enrolled again.
  json again = Op({{"op", "site.add"}, {"name", "a2"}, {"key", key}});
  EXPECT_TRUE(again["ok"].get<bool>()) << again.dump();
}

}  // namespace
}  // namespace outpost

namespace outpost {
namespace {

class HubTrustTest : public HubCoreTest {};

TEST_F(HubTrustTest, RolesLimitTheOperatorApi) {
  AddSite("gw-1", "edge");
  HubOutput out;
  auto as = [&](OperatorRole role, json req) { return core_->OnOperator("someone", req, &out, role); };
  EXPECT_TRUE(as(OperatorRole::kViewer, {{"op", "status"}})["ok"].get<bool>());
  EXPECT_TRUE(as(OperatorRole::kViewer, {{"op", "site.list"}})["ok"].get<bool>());
  for (const char* op : {"run.start", "run.cancel", "run.approve", "site.add", "workflow.apply",
                         "policy.push", "site.remove"}) {
    json r = as(OperatorRole::kViewer, {{"op", op}});
    // A request that does not decode is refused first; one that does, by role.
    if (r["code"] != "invalid") {
      EXPECT_EQ(r["code"], "forbidden") << op << " " << r.dump();
    }
  }
  json r = as(OperatorRole::kViewer, {{"op", "run.cancel"}, {"id", "x"}});
  EXPECT_EQ(r["code"], "forbidden");
  EXPECT_EQ(r["error"], "operator 'someone' has role viewer; run.cancel needs operator");
  r = as(OperatorRole::kOperator, {{"op", "workflow.apply"}, {"source", kWf}});
  EXPECT_EQ(r["code"], "forbidden");
  r = as(OperatorRole::kOperator, {{"op", "run.cancel"}, {"id", "x"}});
  EXPECT_EQ(r["code"], "not_found");  // allowed, and then there is no such run
  EXPECT_GE(core_->counters().operator_forbidden, 2u);
}

TEST_F(HubTrustTest, PoliciesOnlyMoveForwardAndReachEverySiteBeforePlacements) {
  const SigningKey root = *GenerateSigningKey();
  auto policy = [&](int version, const std::string& fleet = "f") {
    return SignedToJson(*Sign({{"kind", "policy"}, {"fleet", fleet}, {"version", version}, {"issued", 1},
                               {"expires", int64_t{4'000'000'000'000}}, {"operators", json::array()}},
                              root));
  };
  const std::string key = AddSite("gw-1", "edge");
  FakeSite site("gw-1", 7, clock_);
  Connect(&site);
  json r = Op({{"op", "policy.push"}, {"policy", policy(2)}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  EXPECT_EQ(r["sites"], 1);
  EXPECT_TRUE(Op({{"op", "policy.push"}, {"policy", policy(2)}})["unchanged"].get<bool>());
  EXPECT_EQ(Op({{"op", "policy.push"}, {"policy", policy(1)}})["code"], "conflict");
  EXPECT_EQ(Op({{"op", "policy.push"}, {"policy", policy(2, "other")}})["code"], "conflict");
  json bad = policy(3);
  bad["sig"] = "AAAA";
  EXPECT_EQ(Op({{"op", "policy.push"}, {"policy", bad}})["code"], "forbidden");
  ASSERT_TRUE(Op({{"op", "workflow.apply"}, {"source", kWf}})["ok"].get<bool>());
  Settle();
  auto cmds = site.Commands();
  ASSERT_GE(cmds.size(), 2u);
  EXPECT_EQ(cmds[0].command_type(), CommandType::kSetPolicy);
  EXPECT_EQ(cmds[1].command_type(), CommandType::kPlaceWorkflow);
  // A site enrolled later gets the policy first too, and it survives a hub restart.
  Open();
  AddSite("gw-2", "edge");
  FakeSite late("gw-2", 9, clock_);
  Connect(&late);
  auto later = late.Commands();
  ASSERT_GE(later.size(), 2u);
  EXPECT_EQ(later[0].command_type(), CommandType::kSetPolicy);
  EXPECT_EQ(Op({{"op", "policy.show"}})["version"], 2);
  (void)key;
}

TEST_F(HubTrustTest, ASignedStartGoesOnlyToTheSitesItNamesAndMustMatchTheRequest) {
  const SigningKey alice = *GenerateSigningKey();
  const std::string k1 = AddSite("gw-1", "edge");
  AddSite("gw-2", "edge");
  ASSERT_TRUE(Op({{"op", "workflow.apply"}, {"source", kWf}, {"target", {{"role", "edge"}}}})["ok"].get<bool>());
  auto start = [&](const json& overrides) {
    json body = {{"kind", "start"}, {"request", "req-1"}, {"workflow", "deploy"},
                 {"digest", ContentDigest(kWf)}, {"params", json::object()}, {"sites", {k1}},
                 {"expires", int64_t{4'000'000'000'000}}};
    body.update(overrides);
    return SignedToJson(*Sign(body, alice));
  };
  json r = Op({{"op", "run.start"}, {"workflow", "deploy"}, {"request", "req-1"}, {"signed", start(json::object())}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  EXPECT_EQ(r["sites"], json::array({"gw-1"}));  // gw-2 matches the target but is not named
  r = Op({{"op", "run.start"}, {"workflow", "deploy"}, {"request", "req-2"}, {"signed", start(json::object())}});
  EXPECT_EQ(r["code"], "invalid") << r.dump();  // the request id is not the signed one
  r = Op({{"op", "run.start"}, {"workflow", "deploy"}, {"request", "req-3"},
          {"signed", start({{"request", "req-3"}, {"digest", std::string(64, 'a')}})}});
  EXPECT_EQ(r["code"], "conflict") << r.dump();  // not the definition at the hub
}

// Bundles at the hub (hub/bundles.cpp): what a site's return volume may and may not do.
class HubBundleTest : public HubCoreTest {
 protected:
  HubBundleTest() {
    hub_keys_ = *GenerateCurveKeys();
    options_.keys = hub_keys_;
    Open();
    site_keys_ = *GenerateCurveKeys();
    json r = Op({{"op", "site.add"}, {"name", "ship"}, {"key", site_keys_.public_z85}});
    EXPECT_TRUE(r["ok"].get<bool>()) << r.dump();
  }

  static std::string EventBytes(int i) {
    Event e;
    e.time = 1000 + i;
    e.type = static_cast<uint8_t>(EventType::kScheduleSkipped);
    e.message = "e" + std::to_string(i);
    return Encode(e);
  }

  // An up volume from `from` (sealed to `to`), one streams record.
  json Import(uint64_t incarnation, uint64_t first, int count, uint64_t watermark,
              const CurveKeys& from, const std::string& to, const std::string& kind = "up") {
    BundleHeader h;
    h.kind = kind;
    h.site = "ship";
    h.from_key = from.public_z85;
    h.to_key = to;
    h.id = "B" + std::to_string(++n_);
    h.records = 1;
    h.incarnation = incarnation;
    BundleRecord r;
    r.kind = BundleRecord::kStreams;
    r.incarnation = incarnation;
    r.first_seq = first;
    r.watermark = watermark;
    for (int i = 0; i < count; ++i) r.entries.push_back(EventBytes(static_cast<int>(first) + i));
    const std::string head = EncodeBundleHead(h);
    auto sealed = SealBundleRecord(r, Encode(h), from, to);
    EXPECT_TRUE(sealed.ok());
    return Op({{"op", "bundle.import"}, {"head", ToBase64(head)}, {"records", {ToBase64(*sealed)}}});
  }

  CurveKeys hub_keys_, site_keys_;
  int n_ = 0;
};

TEST_F(HubBundleTest, EventsApplyOnceAndAGapAppliesNothingPastIt) {
  json r = Import(7, 1, 5, 0, site_keys_, hub_keys_.public_z85);
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  EXPECT_EQ(r["import"]["events"]["applied"], 5);
  r = Import(7, 3, 5, 0, site_keys_, hub_keys_.public_z85);  // 3..7: 3 known, 2 new
  EXPECT_EQ(r["import"]["events"]["applied"], 2);
  EXPECT_EQ(r["import"]["events"]["duplicates"], 3);
  r = Import(7, 10, 2, 0, site_keys_, hub_keys_.public_z85);  // 8..9 never came
  ASSERT_TRUE(r["ok"].get<bool>());
  EXPECT_EQ(r["import"]["gap"]["missing_from"], 8);
  EXPECT_EQ(r["import"]["gap"]["missing_to"], 9);
  EXPECT_EQ(core_->site("ship")->up_applied, 7u);
  EXPECT_EQ(core_->site("ship")->events_total, 7u);
  // A watermark of commands the hub never made is refused.
  r = Import(7, 8, 0, 99, site_keys_, hub_keys_.public_z85);
  EXPECT_FALSE(r["ok"].get<bool>());
}

TEST_F(HubBundleTest, ForeignKeysWrongKindsAndRetiredIncarnationsAreRefused) {
  const CurveKeys stranger = *GenerateCurveKeys();
  json r = Import(7, 1, 2, 0, stranger, hub_keys_.public_z85);
  EXPECT_EQ(r["code"], "invalid") << r.dump();
  EXPECT_NE(r["error"].get<std::string>().find("no enrolled site"), std::string::npos);
  r = Import(7, 1, 2, 0, site_keys_, stranger.public_z85);  // sealed for another hub
  EXPECT_EQ(r["code"], "invalid") << r.dump();
  EXPECT_NE(r["error"].get<std::string>().find("another hub"), std::string::npos);
  r = Import(7, 1, 2, 0, site_keys_, hub_keys_.public_z85, "down");
  EXPECT_FALSE(r["ok"].get<bool>());
  EXPECT_EQ(core_->site("ship")->events_total, 0u);
  // The site's disk is replaced (incarnation 8): the old database's bundle is refused after.
  ASSERT_TRUE(Import(7, 1, 2, 0, site_keys_, hub_keys_.public_z85)["ok"].get<bool>());
  ASSERT_TRUE(Import(8, 1, 1, 0, site_keys_, hub_keys_.public_z85)["ok"].get<bool>());
  r = Import(7, 3, 1, 0, site_keys_, hub_keys_.public_z85);
  EXPECT_EQ(r["code"], "conflict") << r.dump();
  EXPECT_NE(r["error"].get<std::string>().find("replaced"), std::string::npos);
  EXPECT_GE(core_->counters().bundle_records_refused, 4u);
}

}  // namespace
}  // namespace outpost

#include "hub/run_view.h"

namespace outpost {
namespace {

// A site refused an unsigned apply and placed the signed one after it, both in one batch
// (or one bundle): by the time the refusal arrives the hub already records the signed
// placement, which the refusal took away. The placement event that follows puts it back
// — for the definition the hub has now, on a site its target still matches.
TEST(SiteEventFold, APlacementAfterARefusedOneIsPlacedAgain) {
  WorkflowRecord signed_def;
  signed_def.name = "hello";
  signed_def.hash = "h1";
  signed_def.sig = "0123456789abcdef0123";
  signed_def.target = {{"role", "gateway"}};
  SiteRecord site;
  site.labels = {{"role", "gateway"}};
  site.placed["hello"] = signed_def.placed_tag();

  Event refused;
  refused.type = static_cast<uint8_t>(EventType::kCommandRejected);
  refused.workflow = "hello";
  refused.message = "workflow.place: unsigned";
  NoteSiteEvent(refused, &site, &signed_def);
  EXPECT_FALSE(site.placed.count("hello"));
  EXPECT_TRUE(site.refused.count("hello"));

  Event placed;
  placed.type = static_cast<uint8_t>(EventType::kWorkflowPlaced);
  placed.workflow = "hello";
  placed.message = "h1";
  NoteSiteEvent(placed, &site, &signed_def);
  ASSERT_TRUE(site.placed.count("hello"));
  EXPECT_EQ(site.placed["hello"], signed_def.placed_tag());
  EXPECT_FALSE(site.refused.count("hello"));

  // An older definition's placement, or one on a site the target no longer matches, does
  // not count as the hub's.
  SiteRecord other;
  other.labels = {{"role", "gateway"}};
  placed.message = "h0";
  NoteSiteEvent(placed, &other, &signed_def);
  EXPECT_FALSE(other.placed.count("hello"));
  other.labels = {{"role", "lab"}};
  placed.message = "h1";
  NoteSiteEvent(placed, &other, &signed_def);
  EXPECT_FALSE(other.placed.count("hello"));
}

// Bytes of the hub's copy of a site's events as the store holds them (every incarnation
// the test used), counted the way retention counts them: the independent measure.
uint64_t StoredUpBytes(const HubStore& store, const std::string& site,
                       const std::vector<uint64_t>& incarnations, uint64_t* first_seq) {
  uint64_t bytes = 0;
  *first_seq = 0;
  for (uint64_t inc : incarnations) {
    auto got = store.ReadUp(site, inc, 0, SIZE_MAX);
    EXPECT_TRUE(got.ok());
    for (const auto& r : *got) {
      bytes += r.payload.size() + site.size() + 17;
      if (*first_seq == 0 && inc == incarnations.back()) *first_seq = r.seq;
    }
  }
  return bytes;
}

Event TaskEvent(const std::string& run, int i, TimeMs t) {
  Event e;
  e.time = t;
  e.run = run;
  e.task = "t" + std::to_string(i % 40);
  e.type = static_cast<uint8_t>(EventType::kTaskFinished);
  e.state = "succeeded";
  e.exit_code = 0;
  e.message = std::string(300, 'x');  // ~370 bytes an event
  return e;
}

// A noisy site: its copies are trimmed to its quota in the batches that go over it, the
// oldest first; the run view keeps every run; what the record says is kept equals what
// the store holds; the other site keeps everything.
TEST_F(HubCoreTest, ASitesCopiesAreTrimmedToItsQuotaAndTheRunViewStays) {
  options_.retention.site_quota = 256 << 10;  // marks of 64 KiB
  Open();
  AddSite("noisy", "web");
  AddSite("quiet", "web");
  FakeSite noisy("noisy", 7, clock_), quiet("quiet", 8, clock_);
  Connect(&noisy);
  Connect(&quiet);
  for (int i = 0; i < 3000; ++i) {
    noisy.Emit(TaskEvent("noisy-01J00000000000000000000" + std::to_string(i / 100 % 10), i, clock_.Now()));
    if (i % 100 == 0) Settle();
    clock_.Advance(10);
  }
  for (int i = 0; i < 100; ++i) quiet.Emit(TaskEvent("quiet-01J000000000000000000000", i, clock_.Now()));
  Settle();
  const SiteRecord* n = core_->site("noisy");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->up_applied, 3000u);  // every event arrived, once
  uint64_t first = 0;
  const uint64_t stored = StoredUpBytes(*store_, "noisy", {7}, &first);
  EXPECT_EQ(stored, n->up_kept_bytes());
  EXPECT_LE(stored, options_.retention.site_quota);
  EXPECT_GT(stored, options_.retention.site_quota / 2);  // trimmed by marks, not emptied
  EXPECT_GT(first, 1u);                                   // the oldest went first
  EXPECT_EQ(core_->counters().retention_quota_bytes, n->up_trimmed_bytes);
  uint64_t quiet_first = 0;
  EXPECT_EQ(StoredUpBytes(*store_, "quiet", {8}, &quiet_first), core_->site("quiet")->up_kept_bytes());
  EXPECT_EQ(quiet_first, 1u);
  // The run view kept every run and its tasks.
  json runs = Op({{"op", "run.list"}, {"site", "noisy"}});
  EXPECT_EQ(runs["runs"].size(), 10u);
  EXPECT_EQ(runs["runs"][0]["tasks_total"], 40);
  // A restart reads the same accounts back.
  Disconnect(&noisy);
  Disconnect(&quiet);
  Open();
  EXPECT_EQ(core_->site("noisy")->up_kept_bytes(), stored);
}

// Copies older than max_age go at the next check, whole marks at a time, across a new
// incarnation of the site; newer ones stay; the audit log says what was trimmed.
TEST_F(HubCoreTest, CopiesOlderThanTheRetentionAgeAreTrimmedAtTheNextCheck) {
  options_.retention.max_age = 3'600'000;
  options_.retention.mark_ms = 60'000;
  Open();
  AddSite("a", "web");
  FakeSite a1("a", 11, clock_);
  Connect(&a1);
  for (int i = 0; i < 50; ++i) a1.Emit(TaskEvent("a-01J000000000000000000000AA", i, clock_.Now()));
  Settle();
  clock_.Advance(30 * 60'000);
  // The site's disk is replaced: a new incarnation, whose first events are also old soon.
  Disconnect(&a1);
  FakeSite a2("a", 12, clock_);
  Connect(&a2);
  for (int i = 0; i < 20; ++i) a2.Emit(TaskEvent("a-01J000000000000000000000AB", i, clock_.Now()));
  Settle();
  clock_.Advance(45 * 60'000);  // the first stream is 75 minutes old, the second 45
  for (int i = 20; i < 30; ++i) a2.Emit(TaskEvent("a-01J000000000000000000000AB", i, clock_.Now()));
  Settle();
  HubOutput out;
  core_->Tick(&out);
  uint64_t first = 0;
  EXPECT_EQ(StoredUpBytes(*store_, "a", {11, 12}, &first), core_->site("a")->up_kept_bytes());
  EXPECT_TRUE(store_->ReadUp("a", 11, 0, SIZE_MAX)->empty());  // the old stream, whole
  EXPECT_EQ(store_->ReadUp("a", 12, 0, SIZE_MAX)->size(), 30u);
  EXPECT_GT(core_->counters().retention_age_bytes, 0u);
  // 30 more minutes: the second stream's first 20 are past the age; the last 10 are not.
  clock_.Advance(30 * 60'000);
  core_->Tick(&out);
  auto left = store_->ReadUp("a", 12, 0, SIZE_MAX);
  ASSERT_EQ(left->size(), 10u);
  EXPECT_EQ(left->front().seq, 21u);
  std::vector<std::string> audit;
  ASSERT_TRUE(store_->ReadAudit(100, &audit).ok());
  int trims = 0;
  for (const auto& line : audit) trims += line.find("hub.retention") != std::string::npos;
  EXPECT_EQ(trims, 2);
  EXPECT_EQ(Op({{"op", "run.list"}, {"site", "a"}})["runs"].size(), 2u);
}

// Over the fleet's budget the oldest copies go first, whichever site holds them.
TEST_F(HubCoreTest, TheFleetBudgetTrimsTheOldestCopiesFirst) {
  options_.retention.max_bytes = 300 << 10;
  options_.retention.max_age = 0;  // marks of a minute (not 1/32 of the age limit)
  options_.retention.mark_ms = 60'000;
  Open();
  AddSite("old", "web");
  AddSite("new", "web");
  FakeSite olds("old", 21, clock_), news("new", 22, clock_);
  Connect(&olds);
  Connect(&news);
  for (int m = 0; m < 5; ++m) {  // five minutes of the old site: five marks
    for (int i = 0; i < 100; ++i) olds.Emit(TaskEvent("old-01J000000000000000000000AA", i, clock_.Now()));
    Settle();
    clock_.Advance(61'000);
  }
  for (int i = 0; i < 400; ++i) news.Emit(TaskEvent("new-01J000000000000000000000AA", i, clock_.Now()));
  Settle();
  HubOutput out;
  core_->Tick(&out);
  uint64_t f1 = 0, f2 = 0;
  const uint64_t old_bytes = StoredUpBytes(*store_, "old", {21}, &f1);
  const uint64_t new_bytes = StoredUpBytes(*store_, "new", {22}, &f2);
  EXPECT_LE(old_bytes + new_bytes, options_.retention.max_bytes);
  // Only as much as needed went (less than one more minute's mark of 100 events)...
  EXPECT_GT(old_bytes + new_bytes + 100 * 450, options_.retention.max_bytes);
  // ...and it was the older site's oldest: the newer site kept all of its copies.
  EXPECT_EQ(f2, 1u);
  EXPECT_GT(f1, 101u);
  EXPECT_GT(old_bytes, 0u);
  EXPECT_EQ(core_->counters().retention_budget_bytes, core_->site("old")->up_trimmed_bytes);
}

// Past the cap on marks the oldest of one stream merge, never an older incarnation's into
// a newer one's: trimming still removes the old stream whole, and the accounts match what
// the store holds.
TEST_F(HubCoreTest, MergedRetentionMarksNeverHideAnOlderIncarnation) {
  options_.retention.max_age = 0;
  options_.retention.mark_ms = 1;
  options_.retention.max_bytes = 20 << 10;
  options_.retention.check_ms = 3'600'000;  // the budget is checked when the test ticks
  Open();
  AddSite("a", "web");
  FakeSite a1("a", 41, clock_);
  Connect(&a1);
  a1.Emit(TaskEvent("a-01J000000000000000000000AA", 0, clock_.Now()));
  Settle();
  Disconnect(&a1);
  clock_.Advance(10);
  FakeSite a2("a", 42, clock_);
  Connect(&a2);
  for (int i = 0; i < 3 * static_cast<int>(kMaxUpMarks); ++i) {  // one mark per batch
    a2.Emit(TaskEvent("a-01J000000000000000000000AB", i, clock_.Now()));
    Settle();
    clock_.Advance(10);
  }
  const SiteRecord* s = core_->site("a");
  ASSERT_LE(s->up_marks.size(), kMaxUpMarks + 1);
  EXPECT_EQ(s->up_marks.front().incarnation, 41u);  // the old stream's mark is still there
  HubOutput out;
  core_->Tick(&out);  // over the budget: the oldest go, the old stream first and whole
  uint64_t first = 0;
  EXPECT_TRUE(store_->ReadUp("a", 41, 0, SIZE_MAX)->empty());
  EXPECT_EQ(StoredUpBytes(*store_, "a", {41, 42}, &first), core_->site("a")->up_kept_bytes());
  EXPECT_LE(core_->site("a")->up_kept_bytes(), options_.retention.max_bytes);
}

// Runs by state are counted as they change and stored: equal to a count over every run,
// also after a restart and a purge; run.list pages through the whole fleet newest first,
// each run once, the same order as the store's full scan sorted by id time.
TEST_F(HubCoreTest, RunCountsFollowTheRunViewAndRunListPagesThroughEveryRun) {
  const uint64_t seed = 20261201;
  Rng rng(seed);
  AddSite("a", "web");
  AddSite("b", "web");
  ASSERT_TRUE(Op({{"op", "workflow.apply"}, {"source", kWf}})["ok"].get<bool>());
  FakeSite a("a", 31, clock_), b("b", 32, clock_);
  Connect(&a);
  Connect(&b);
  const char* states[] = {"succeeded", "failed", "cancelled"};
  for (int i = 0; i < 57; ++i) {
    FakeSite& s = rng.Uniform(1) ? a : b;
    char ulid[32];
    snprintf(ulid, sizeof ulid, "01J%023d", i);
    const std::string run = s.name + "-" + ulid;
    Event c;
    c.time = clock_.Now();
    c.run = run;
    c.type = static_cast<uint8_t>(EventType::kRunCreated);
    c.workflow = "deploy";
    c.tasks = {"fetch", "install"};
    s.Emit(c);
    // Some tasks finish, in any state (run.list counts those that succeeded).
    for (const std::string& task : c.tasks) {
      if (rng.Uniform(2) == 0) continue;
      Event t = c;
      t.type = static_cast<uint8_t>(EventType::kTaskFinished);
      t.task = task;
      t.state = rng.Uniform(1) ? "succeeded" : "failed";
      t.exit_code = t.state == "succeeded" ? 0 : 1;
      s.Emit(t);
    }
    if (rng.Uniform(2) > 0) {
      Event f = c;
      f.type = static_cast<uint8_t>(EventType::kRunFinished);
      f.state = states[rng.Uniform(2)];
      s.Emit(f);
    }
    if (i % 7 == 0) Settle();
    clock_.Advance(1000);
  }
  // Runs the hub starts count as pending until their sites report them.
  ASSERT_TRUE(Op({{"op", "run.start"}, {"workflow", "deploy"}})["ok"].get<bool>());
  Settle();
  auto scan_counts = [&] {
    std::map<std::string, uint64_t> want;
    EXPECT_TRUE(store_->ScanRuns([&](const HubRun& r) { return ++want[r.state], true; }).ok());
    return want;
  };
  EXPECT_EQ(core_->run_counts(), scan_counts()) << "seed " << seed;
  json st = Op({{"op", "status"}});
  EXPECT_EQ(st["status"]["runs"], json(scan_counts()));
  Disconnect(&a);
  Disconnect(&b);
  Open();
  EXPECT_EQ(core_->run_counts(), scan_counts()) << "seed " << seed;

  std::vector<std::pair<std::string, std::string>> want;  // (time key, id)
  std::map<std::string, HubRun> stored;                    // the store's own records
  ASSERT_TRUE(store_->ScanRuns([&](const HubRun& r) {
    want.emplace_back(RunTimeKey(r.id), r.id);
    stored.emplace(r.id, r);
    return true;
  }).ok());
  std::sort(want.rbegin(), want.rend());
  std::vector<std::string> got;
  std::string after;
  size_t succeeded_seen = 0;
  for (int page = 0; page < 20; ++page) {
    json req = {{"op", "run.list"}, {"limit", 10}};
    if (!after.empty()) req["after"] = after;
    json r = Op(req);
    ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
    for (const auto& row : r["runs"]) {
      got.push_back(row["id"]);
      // A row is the run record (docs/protocol.md) as run.show shows it, its tasks
      // counted instead of listed.
      std::set<std::string> keys;
      for (const auto& [k, v] : row.items()) keys.insert(k);
      EXPECT_EQ(keys, (std::set<std::string>{"id", "site", "workflow", "hash", "state", "request",
                                             "author", "params", "created", "finished",
                                             "delivered", "cancel_requested", "message",
                                             "tasks_total", "tasks_succeeded"}));
      json one = Op({{"op", "run.show"}, {"id", row["id"]}});
      ASSERT_TRUE(one.value("ok", false)) << one.dump();
      json summary = one["run"];
      const json tasks = summary["tasks"];
      summary.erase("tasks");
      summary["tasks_total"] = tasks.size();
      summary["tasks_succeeded"] =
          std::count_if(tasks.begin(), tasks.end(), [](const json& t) { return t["state"] == "succeeded"; });
      EXPECT_EQ(row, summary) << "seed " << seed;
      // And its values are the stored record's (not only what run.show's code says).
      const auto held = stored.find(row.value("id", std::string()));
      ASSERT_NE(held, stored.end()) << row.dump();
      const HubRun& r = held->second;
      EXPECT_EQ(row["site"], r.site);
      EXPECT_EQ(row["workflow"], r.workflow);
      EXPECT_EQ(row["state"], r.state);
      EXPECT_EQ(row["request"], r.request);
      EXPECT_EQ(row["author"], r.author);
      EXPECT_EQ(row["message"], r.message);
      EXPECT_EQ(row["tasks_total"], r.tasks.size());
      size_t ok = 0;
      for (const auto& t : r.tasks) ok += t.state == "succeeded";
      EXPECT_EQ(row["tasks_succeeded"], ok) << "seed " << seed;
      succeeded_seen += ok;
    }
    if (r["next"].is_null()) break;
    after = r["next"];
  }
  EXPECT_GT(succeeded_seen, 0u) << "seed " << seed;  // the count was put to the test
  ASSERT_EQ(got.size(), want.size()) << "seed " << seed;
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], want[i].second) << i;
  // A page that ends exactly at the oldest run says there is no next one.
  json whole = Op({{"op", "run.list"}, {"limit", want.size()}});
  EXPECT_EQ(whole["runs"].size(), want.size());
  EXPECT_TRUE(whole["next"].is_null()) << whole["next"].dump();
  json cut = Op({{"op", "run.list"}, {"limit", want.size() - 1}});
  EXPECT_EQ(cut["next"], want[want.size() - 2].second);
  // A cursor that is not a run id is refused, not read as the end of the list.
  for (const char* bad : {"garbage", "a-01j0000000000000000000000", "01J00000000000000000000000"}) {
    json r = Op({{"op", "run.list"}, {"after", bad}});
    EXPECT_FALSE(r["ok"].get<bool>()) << bad;
    EXPECT_EQ(r["code"], "invalid") << bad;
  }
  // Filtered pages: one state, one site, in pages of 4.
  for (json filter : {json{{"state", "failed"}}, json{{"site", "b"}}}) {
    std::vector<std::string> all, paged;
    for (const auto& [k, id] : want) {
      auto run = store_->GetRun(id);
      if ((filter.contains("state") && (*run)->state == filter["state"]) ||
          (filter.contains("site") && (*run)->site == filter["site"])) {
        all.push_back(id);
      }
    }
    after.clear();
    for (int page = 0; page < 40; ++page) {
      json req = filter;
      req["op"] = "run.list";
      req["limit"] = 4;
      if (!after.empty()) req["after"] = after;
      json r = Op(req);
      for (const auto& row : r["runs"]) paged.push_back(row["id"]);
      if (r["next"].is_null()) break;
      after = r["next"];
    }
    EXPECT_EQ(paged, all) << filter.dump();
  }
  // Removing a site with its history takes its runs out of the counts.
  ASSERT_TRUE(Op({{"op", "site.revoke"}, {"name", "b"}})["ok"].get<bool>());
  ASSERT_TRUE(Op({{"op", "site.remove"}, {"name", "b"}, {"purge", true}})["ok"].get<bool>());
  EXPECT_EQ(core_->run_counts(), scan_counts());
}

// Task rows stored as maps by hubs before rows became arrays are read the same.
struct OldTask {
  std::string id, state;
  int32_t attempts = 0, exit_code = -1, signal = 0;
  TimeMs started = 0, finished = 0;
  std::string message;
  MSGPACK_DEFINE_MAP(id, state, attempts, exit_code, signal, started, finished, message);
};

struct OldRun {
  std::string id = "a-01J", state = "running";
  std::vector<OldTask> tasks;
  MSGPACK_DEFINE_MAP(id, state, tasks);
};

TEST(HubStoreFormat, TaskRowsWrittenAsMapsAreRead) {
  OldRun old;
  old.tasks = {{"fetch", "succeeded", 1, 0, 0, 1, 2, ""}, {"install", "running", 1, -1, 0, 3, 0, ""}};
  HubRun run;
  ASSERT_TRUE(Decode(Encode(old), &run).ok());
  ASSERT_EQ(run.tasks.size(), 2u);
  EXPECT_EQ(run.tasks[1].id, "install");
  EXPECT_EQ(run.tasks[1].state, "running");
  EXPECT_EQ(run.tasks[0].finished, 2);
  OldTask t{"fetch", "succeeded", 2, 0, 0, 5, 9, "ok"};
  HubTask back;
  ASSERT_TRUE(Decode(Encode(t), &back).ok());
  EXPECT_EQ(Encode(back), Encode(HubTask{"fetch", "succeeded", 2, 0, 0, 5, 9, "ok"}));
  ASSERT_TRUE(Decode(Encode(back), &back).ok());  // and the array form
  EXPECT_EQ(back.message, "ok");
}

}  // namespace
}  // namespace outpost

namespace outpost {
namespace {

// A run of 200 tasks (more added as it goes) reported in batches of every size, the hub
// restarted half way: the run view the store holds (its tasks written a row of 32 at a
// time, only the rows a batch changed) is the fold of every event into one whole record,
// done here directly as the oracle.
TEST_F(HubCoreTest, ALargeRunsViewIsTheFoldOfItsEventsWhateverRowsWereWritten) {
  const uint64_t seed = 20261201;
  Rng rng(seed);
  AddSite("a", "web");
  FakeSite a("a", 1, clock_);
  Connect(&a);
  const std::string run = "a-01J00000000000000000000RUN";
  std::vector<Event> events;
  Event created;
  created.type = static_cast<uint8_t>(EventType::kRunCreated);
  created.run = run;
  created.workflow = "big";
  created.time = 1000;
  for (int i = 0; i < 200; ++i) created.tasks.push_back("t" + std::to_string(i));
  events.push_back(created);
  int extra = 0;
  for (int i = 0; i < 3000; ++i) {
    Event e;
    e.run = run;
    e.time = 2000 + i;
    e.task = rng.Uniform(20) == 0 ? "x" + std::to_string(extra++)
                                   : "t" + std::to_string(rng.Uniform(199));
    switch (rng.Uniform(3)) {
      case 0:
        e.type = static_cast<uint8_t>(EventType::kAttemptStarted);
        e.state = "running";
        e.attempt = static_cast<int32_t>(1 + rng.Uniform(3));
        break;
      case 1:
        e.type = static_cast<uint8_t>(EventType::kTaskFinished);
        e.state = rng.Uniform(1) ? "succeeded" : "failed";
        e.exit_code = static_cast<int32_t>(rng.Uniform(2));
        break;
      case 2:
        e.type = static_cast<uint8_t>(EventType::kRetryScheduled);
        e.state = "retry_wait";
        e.message = "backoff " + std::to_string(i);
        break;
      default:
        e.type = static_cast<uint8_t>(EventType::kAttemptFinished);
        e.attempt = 1;
        e.exit_code = 3;
        e.message = "exit " + std::to_string(i);
        break;
    }
    events.push_back(e);
  }
  size_t next = 0;
  bool restarted = false;
  while (next < events.size()) {
    const size_t n = std::min<size_t>(events.size() - next, 1 + rng.Uniform(300));
    for (size_t i = 0; i < n; ++i) a.Emit(events[next + i]);
    next += n;
    Settle();
    if (!restarted && next > events.size() / 2) {
      // A new hub process: its cache is empty and the run is read back from its rows.
      restarted = true;
      Disconnect(&a);
      Open();
      Connect(&a);
    }
  }
  ASSERT_EQ(a.up.acked(), events.size()) << "seed " << seed;
  HubRun oracle;
  oracle.id = run;
  oracle.site = "a";
  HubTxn scratch;
  for (const auto& e : events) FoldEvent(e, &oracle, &scratch);
  auto got = store_->GetRun(run);
  ASSERT_TRUE(got.ok() && *got) << got.status().ToString();
  ASSERT_EQ((*got)->tasks.size(), oracle.tasks.size()) << "seed " << seed;
  ASSERT_GT(oracle.tasks.size(), 200u);
  for (size_t i = 0; i < oracle.tasks.size(); ++i) {
    ASSERT_EQ(Encode((*got)->tasks[i]), Encode(oracle.tasks[i])) << "task " << i << " seed " << seed;
  }
  EXPECT_EQ((*got)->state, oracle.state);
}

// A run id with a NUL byte would run into other runs' keys in the store: the event is kept
// in the copy of the site's log, counted, and left out of the view; the batch is taken.
TEST_F(HubCoreTest, ARunIdWithANulByteStaysOutOfTheView) {
  AddSite("a", "web");
  FakeSite a("a", 1, clock_);
  Connect(&a);
  Event e;
  e.type = static_cast<uint8_t>(EventType::kRunStarted);
  e.run = std::string("a-01J0000000000000000000000X\0\0\0\0", 32);
  a.Emit(e);
  e.run = "a-01J0000000000000000000000Y";
  a.Emit(e);
  Settle();
  EXPECT_EQ(a.up.acked(), 2u);
  EXPECT_EQ(core_->counters().events_undecodable, 1u);
  auto bad = store_->GetRun(std::string("a-01J0000000000000000000000X\0\0\0\0", 32));
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(*bad);
  auto good = store_->GetRun("a-01J0000000000000000000000Y");
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE(*good);
}

}  // namespace
}  // namespace outpost
