// PgHubStore against the hub store conformance suite, on a real PostgreSQL server
// (scripts/pg-scratch.sh, started by CTest's "pg" fixture; its connection string in
// $OUTPOST_TEST_PG), plus what is particular to several hub processes over it: two
// connections racing for one site, notifications between them, and two HubCores sharing
// the store with a site's session moving from one to the other.
#include "hub/pg_hub_store.h"

#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

#include <gtest/gtest.h>

#include "common/clock.h"
#include "common/random.h"
#include "hub/hub_core.h"
#include "tests/hub/fake_site.h"
#include "tests/hub/hub_store_conformance.h"

namespace outpost::testing {
namespace {

std::string Conninfo() {
  const char* v = std::getenv("OUTPOST_TEST_PG");
  return v ? v : "";
}

// Each factory owns a schema of its own, dropped at the end.
std::string FreshSchema() {
  static std::atomic<int> next{0};
  return "t" + std::to_string(::getpid()) + "_" + std::to_string(next++) + "_" +
         std::to_string(SeedFromOs() % 100000);
}

class PgFactory : public HubStoreFactory {
 public:
  PgFactory() : schema_(FreshSchema()) {}
  ~PgFactory() override {
    PgHubStore::Options o;
    o.schema = schema_;
    auto s = PgHubStore::Open(Conninfo(), o);
    if (s.ok()) (*s)->DropSchema().IgnoreError();
  }
  Result<std::unique_ptr<HubStore>> Create() override {
    if (Conninfo().empty()) {
      return Status::FailedPrecondition("OUTPOST_TEST_PG is not set: run through ctest, which "
                                        "starts a PostgreSQL server (scripts/pg-scratch.sh)");
    }
    return Reopen();
  }
  Result<std::unique_ptr<HubStore>> Reopen() override {
    PgHubStore::Options o;
    o.schema = schema_;
    OUTPOST_ASSIGN_OR_RETURN(auto s, PgHubStore::Open(Conninfo(), o));
    return std::unique_ptr<HubStore>(std::move(s));
  }
  std::string name() const override { return "postgresql"; }
  const std::string& schema() const { return schema_; }

 private:
  std::string schema_;
};

// Run outside CTest (no server started), the suite fails at Create naming what is missing.
std::unique_ptr<HubStoreFactory> MakePg() { return std::make_unique<PgFactory>(); }

INSTANTIATE_TEST_SUITE_P(PostgreSQL, HubStoreConformance, ::testing::Values(&MakePg),
                         [](const auto&) { return "Server"; });

class PgHubStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Conninfo().empty()) GTEST_FAIL() << "OUTPOST_TEST_PG is not set (run through ctest)";
    a_ = Open();
    b_ = Open();
  }
  std::unique_ptr<PgHubStore> Open() {
    PgHubStore::Options o;
    o.schema = factory_.schema();
    auto s = PgHubStore::Open(Conninfo(), o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }
  // Waits (at most 5 s) for b's notifications.
  std::vector<std::string> ChangesOf(PgHubStore* s) {
    std::vector<std::string> out;
    for (int i = 0; i < 50 && out.empty(); ++i) {
      pollfd p{s->changes_fd(), POLLIN, 0};
      ::poll(&p, 1, 100);
      EXPECT_TRUE(s->TakeChanges(&out).ok());
    }
    return out;
  }
  PgFactory factory_;
  std::unique_ptr<PgHubStore> a_, b_;
};

TEST_F(PgHubStoreTest, AnotherConnectionLearnsWhatChangedAndNotItsOwnWrites) {
  ASSERT_TRUE(a_ && b_);
  SiteRecord s;
  s.name = "north-1";
  s.key = std::string(40, 'k');
  HubTxn t;
  t.PutSite(s);
  WorkflowRecord d;
  d.name = "deploy";
  t.PutDef(d);
  ASSERT_TRUE(a_->Commit(t).ok());
  auto seen = ChangesOf(b_.get());
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<std::string>{"defs", "site/north-1"}));
  std::vector<std::string> own;
  ASSERT_TRUE(a_->TakeChanges(&own).ok());
  EXPECT_TRUE(own.empty());
}

TEST_F(PgHubStoreTest, TwoConnectionsRacingForOneWatermarkLetExactlyOneWin) {
  ASSERT_TRUE(a_ && b_);
  SiteRecord s;
  s.name = "north-1";
  s.incarnation = 9;
  {
    HubTxn t;
    t.PutSite(s);
    ASSERT_TRUE(a_->Commit(t).ok());
  }
  // Both hubs hold revision 1 and apply the same batch 1..3.
  int won = 0, aborted = 0;
  for (PgHubStore* st : {a_.get(), b_.get()}) {
    SiteRecord copy = s;
    HubTxn t;
    for (uint64_t q = 1; q <= 3; ++q) t.PutUp(copy.name, 9, q, "event " + std::to_string(q));
    copy.up_applied = 3;
    t.PutSite(copy);
    Status r = st->Commit(t);
    if (r.ok()) ++won;
    if (r.code() == Code::kAborted) ++aborted;
  }
  EXPECT_EQ(won, 1);
  EXPECT_EQ(aborted, 1);
  auto up = b_->ReadUp("north-1", 9, 0, 100);
  ASSERT_TRUE(up.ok());
  EXPECT_EQ(up->size(), 3u);
  // The loser's connection is fine afterwards.
  auto got = b_->GetSite("north-1");
  ASSERT_TRUE(got.ok() && *got);
  EXPECT_EQ((*got)->up_applied, 3u);
  EXPECT_EQ((*got)->rev, 2u);
}

TEST_F(PgHubStoreTest, RunsAreCountedByStateInTheStore) {
  ASSERT_TRUE(a_ && b_);
  HubTxn t;
  for (int i = 0; i < 5; ++i) {
    HubRun r;
    r.id = "s-" + std::to_string(i);
    r.site = "s";
    r.state = i < 3 ? "running" : "succeeded";
    t.PutRun(r);
  }
  ASSERT_TRUE(a_->Commit(t).ok());
  auto counts = b_->CountRunsByState();
  ASSERT_TRUE(counts.ok() && *counts);
  EXPECT_EQ((**counts).at("running"), 3u);
  EXPECT_EQ((**counts).at("succeeded"), 2u);
}

// Two HubCores over one database, as two hub processes: a site's session moves from one
// to the other; commands enqueued through either reach it; nothing is applied twice.
class TwoHubsTest : public PgHubStoreTest {
 protected:
  void SetUp() override {
    PgHubStoreTest::SetUp();
    ASSERT_TRUE(a_ && b_);
    HubOptions oa, ob;  // two processes: two names
    oa.process_name = "hub-a";
    ob.process_name = "hub-b";
    auto a = HubCore::Open(a_.get(), clock_, &rng_, oa);
    auto b = HubCore::Open(b_.get(), clock_, &rng_, ob);
    ASSERT_TRUE(a.ok() && b.ok());
    ca_ = std::move(a).value();
    cb_ = std::move(b).value();
  }
  nlohmann::json Op(HubCore* c, nlohmann::json req) {
    HubOutput out;
    auto r = c->OnOperator("tester", req, &out);
    Deliver(out);
    return r;
  }
  void Deliver(const HubOutput& out) {
    for (const auto& f : out.send) {
      if (!site_ || f.peer != site_->peer) continue;
      Message m;
      ASSERT_TRUE(DecodeMessage(EncodeMessage(f.message), &m).ok());
      SyncOutput so;
      site_->session.OnMessage(m, &so);
      pending_.push_back(std::move(so));
    }
  }
  // The conversation between the site and `hub` until nobody has anything to say.
  void Settle(HubCore* hub) {
    for (int i = 0; i < 200; ++i) {
      SyncOutput poke;
      site_->session.Poke(&poke);
      pending_.push_back(std::move(poke));
      auto batch = std::move(pending_);
      pending_.clear();
      bool any = false;
      for (auto& so : batch) {
        for (const auto& m : so.send) {
          any = true;
          HubOutput out;
          hub->OnSiteFrame(site_->name, site_->peer, EncodeMessage(m), &out);
          Deliver(out);
        }
      }
      if (!any) return;
    }
    FAIL() << "conversation did not settle";
  }
  void ConnectTo(HubCore* hub) {
    SyncOutput so;
    site_->session.OnConnected(&so);
    pending_.push_back(std::move(so));
    Settle(hub);
  }
  // What the other process wrote reaches `hub` (within 5 s) until `done` holds.
  void Learn(HubCore* hub, PgHubStore* store, const std::function<bool()>& done) {
    for (int i = 0; i < 50 && !done(); ++i) {
      pollfd p{store->changes_fd(), POLLIN, 0};
      ::poll(&p, 1, 100);
      HubOutput out;
      hub->OnStoreChanges(&out);
      Deliver(out);
    }
    EXPECT_TRUE(done());
  }
  ManualClock clock_{1'700'000'000'000};
  Rng rng_{7};
  std::unique_ptr<HubCore> ca_, cb_;
  FakeSite* site_ = nullptr;
  std::vector<SyncOutput> pending_;
};

TEST_F(TwoHubsTest, ASiteMovesBetweenHubsAndEveryEventIsAppliedOnce) {
  auto keys = GenerateCurveKeys();
  ASSERT_TRUE(keys.ok());
  auto r = Op(ca_.get(), {{"op", "site.add"}, {"name", "north-1"}, {"key", keys->public_z85}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  Learn(cb_.get(), b_.get(), [&] { return cb_->site("north-1") != nullptr; });
  EXPECT_EQ(cb_->AuthorizeSite(keys->public_z85), "north-1");

  FakeSite site("north-1", 77, clock_);
  site_ = &site;
  ConnectTo(ca_.get());
  ASSERT_TRUE(ca_->online("north-1"));
  for (int i = 0; i < 5; ++i) site.Emit(Event{});
  Settle(ca_.get());
  EXPECT_EQ(ca_->site("north-1")->up_applied, 5u);

  // The link to hub A breaks; the site reaches hub B, which reads the record again.
  site.session.OnDisconnected();
  ConnectTo(cb_.get());
  ASSERT_TRUE(cb_->online("north-1"));
  for (int i = 0; i < 5; ++i) site.Emit(Event{});
  Settle(cb_.get());
  EXPECT_EQ(cb_->site("north-1")->up_applied, 10u);
  // Hub A learns another process applied the site's events: its session there is over.
  Learn(ca_.get(), a_.get(), [&] { return !ca_->online("north-1"); });
  EXPECT_EQ(ca_->counters().sessions_taken_over, 1u);

  // A definition applied through hub A is placed on the site connected to hub B, at once.
  r = Op(ca_.get(), {{"op", "workflow.apply"},
                     {"source", "name: w\ntasks:\n  - id: t\n    run: [\"true\"]\n"}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  Learn(cb_.get(), b_.get(), [&] {
    Settle(cb_.get());
    return !site.Commands().empty();
  });
  ASSERT_EQ(site.Commands().size(), 1u);
  EXPECT_EQ(site.Commands()[0].type, static_cast<uint8_t>(CommandType::kPlaceWorkflow));
  Settle(cb_.get());
  auto stored = b_->GetSite("north-1");
  ASSERT_TRUE(stored.ok() && *stored);
  EXPECT_EQ((*stored)->down_acked, 1u);
  EXPECT_EQ((*stored)->events_total, 10u);
  auto up = a_->ReadUp("north-1", 77, 0, 100);
  ASSERT_TRUE(up.ok());
  ASSERT_EQ(up->size(), 10u);
  for (size_t i = 0; i < up->size(); ++i) EXPECT_EQ((*up)[i].seq, i + 1);

  // The same request started through both hubs makes one run.
  auto first = Op(ca_.get(), {{"op", "run.start"}, {"workflow", "w"}, {"request", "req-7"}});
  ASSERT_TRUE(first["ok"].get<bool>()) << first.dump();
  Learn(cb_.get(), b_.get(), [&] { return cb_->workflow("w") != nullptr; });
  auto second = Op(cb_.get(), {{"op", "run.start"}, {"workflow", "w"}, {"request", "req-7"}});
  ASSERT_TRUE(second["ok"].get<bool>()) << second.dump();
  EXPECT_TRUE(second["duplicate"].get<bool>());
  EXPECT_EQ(second["runs"], first["runs"]);

  // Each hub says which sites it holds sessions for: the site is online through either.
  HubOutput ignore;
  cb_->Tick(&ignore);
  ca_->Tick(&ignore);
  EXPECT_TRUE(ca_->online("north-1"));
  EXPECT_FALSE(ca_->online_here("north-1"));
  auto st = Op(ca_.get(), {{"op", "status"}});
  EXPECT_EQ(st["status"]["sites"]["online"], 1) << st.dump();
  EXPECT_EQ(st["status"]["sites"]["online_here"], 0);
  auto cancel = Op(ca_.get(), {{"op", "run.cancel"}, {"id", first["runs"][0]}});
  EXPECT_EQ(cancel["message"], "cancel sent") << cancel.dump();
  // A hub that stops saying so (killed) holds nothing 15 s later.
  clock_.Advance(20'000);
  ca_->Tick(&ignore);
  EXPECT_FALSE(ca_->online("north-1"));
}

TEST(PgHubStore, ABadConnectionStringOrSchemaIsAClearError) {
  auto s = PgHubStore::Open("host=/nonexistent/dir port=1 user=postgres connect_timeout=2", {});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Code::kUnavailable);
  EXPECT_NE(s.status().message().find("connect to PostgreSQL"), std::string::npos);
  PgHubStore::Options o;
  o.schema = "x; DROP TABLE sites";
  auto bad = PgHubStore::Open(Conninfo(), o);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace outpost::testing
