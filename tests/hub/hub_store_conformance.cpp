// The conformance tests every HubStore implementation passes (hub_store_conformance.h).
#include "tests/hub/hub_store_conformance.h"

namespace outpost::testing {
namespace {

SiteRecord Site(const std::string& name, uint64_t down_head = 0) {
  SiteRecord s;
  s.name = name;
  s.key = std::string(40, 'k');
  s.state = static_cast<uint8_t>(SiteState::kEnrolled);
  s.labels = {{"zone", "north"}};
  s.incarnation = 7;
  s.down_epoch = 7;
  s.down_head = down_head;
  return s;
}

HubRun MakeRun(const std::string& id, const std::string& site, const std::string& state) {
  HubRun r;
  r.id = id;
  r.site = site;
  r.workflow = "deploy";
  r.state = state;
  r.tasks.push_back(HubTask{});
  r.tasks.back().id = "fetch";
  return r;
}

// Several hubs over one store: a site, a run or a request written over what another wrote
// since it was read is refused whole, and the store says Aborted.
TEST_P(HubStoreConformance, WritesComparedToTheRevisionReadAreRefusedWhole) {
  if (!factory_->checks_revisions()) GTEST_SKIP() << factory_->name() << " has one writer";
  SiteRecord mine = Site("alpha");
  HubRun run = MakeRun("alpha-01J0000000000000000000000A", "alpha", "running");
  {
    HubTxn t;
    t.PutSite(mine);
    t.PutRun(run);
    Commit(t);
  }
  EXPECT_EQ(mine.rev, 1u);
  SiteRecord theirs = mine;  // another hub read the same record
  HubRun their_run = run;
  {
    HubTxn t;
    theirs.labels["zone"] = "south";
    t.PutSite(theirs);
    their_run.cancel_requested = true;
    t.PutRun(their_run);
    Commit(t);
  }
  {
    HubTxn t;
    mine.up_applied = 10;
    t.PutSite(mine);
    t.PutUp("alpha", 7, 1, "e1");
    t.Audit(1, "{}");
    Status s = store_->Commit(t);
    EXPECT_EQ(s.code(), Code::kAborted) << s.ToString();
  }
  {
    HubTxn t;
    run.state = "succeeded";
    t.PutRun(run);
    t.PutOutput(run.id, "fetch", "x");
    EXPECT_EQ(store_->Commit(t).code(), Code::kAborted);
  }
  Reopen();
  auto got = store_->GetSite("alpha");
  ASSERT_TRUE(got.ok() && *got);
  EXPECT_EQ((*got)->labels.at("zone"), "south");
  EXPECT_EQ((*got)->up_applied, 0u);
  EXPECT_EQ((*got)->rev, 2u);
  auto up = store_->ReadUp("alpha", 7, 0, 10);
  ASSERT_TRUE(up.ok());
  EXPECT_TRUE(up->empty());
  EXPECT_EQ(store_->audit_head(), 0u);
  auto r = store_->GetRun(run.id);
  ASSERT_TRUE(r.ok() && *r);
  EXPECT_EQ((*r)->state, "running");
  EXPECT_TRUE((*r)->cancel_requested);
  auto out = store_->GetOutput(run.id, "fetch");
  ASSERT_TRUE(out.ok());
  EXPECT_FALSE(*out);
  // Read again, the write applies; a second write of one txn builds on its first.
  SiteRecord fresh = **got;
  {
    HubTxn t;
    fresh.up_applied = 10;
    t.PutSite(fresh);
    fresh.up_head = 12;
    t.PutSite(fresh);
    Commit(t);
  }
  EXPECT_EQ(fresh.rev, 4u);
  // A new record over one that exists (both read it absent) is refused too.
  SiteRecord twin = Site("alpha");
  {
    HubTxn t;
    t.PutSite(twin);
    EXPECT_EQ(store_->Commit(t).code(), Code::kAborted);
  }
  // A request is written once: the second hub to start it learns it exists.
  RequestRecord q;
  q.id = "req-1";
  q.runs = {"a"};
  {
    HubTxn t;
    t.PutRequest(q);
    Commit(t);
  }
  {
    HubTxn t;
    q.runs = {"b"};
    t.PutRequest(q);
    EXPECT_EQ(store_->Commit(t).code(), Code::kAborted);
  }
  auto req = store_->GetRequest("req-1");
  ASSERT_TRUE(req.ok() && *req);
  EXPECT_EQ((*req)->runs, std::vector<std::string>{"a"});
  // A removed site may be added again from nothing.
  {
    HubTxn t;
    t.DeleteSite("alpha");
    Commit(t);
  }
  SiteRecord again = Site("alpha");
  {
    HubTxn t;
    t.PutSite(again);
    Commit(t);
  }
}

TEST_P(HubStoreConformance, EmptyStoreHasNothing) {
  std::vector<SiteRecord> sites;
  std::vector<WorkflowRecord> defs;
  ASSERT_TRUE(store_->LoadSites(&sites).ok());
  ASSERT_TRUE(store_->LoadDefs(&defs).ok());
  EXPECT_TRUE(sites.empty());
  EXPECT_TRUE(defs.empty());
  EXPECT_EQ(store_->audit_head(), 0u);
  auto run = store_->GetRun("nope");
  ASSERT_TRUE(run.ok());
  EXPECT_FALSE(*run);
  auto req = store_->GetRequest("nope");
  ASSERT_TRUE(req.ok());
  EXPECT_FALSE(*req);
  auto out = store_->GetOutput("nope", "t");
  ASSERT_TRUE(out.ok());
  EXPECT_FALSE(*out);
  auto down = store_->ReadDown("s", 1, 0, 10, 1000);
  ASSERT_TRUE(down.ok());
  EXPECT_TRUE(down->empty());
}

TEST_P(HubStoreConformance, SitesAndDefsSurviveReopenAndDelete) {
  HubTxn t;
  t.PutSite(Site("alpha"));
  t.PutSite(Site("beta"));
  WorkflowRecord d;
  d.name = "deploy";
  d.source = "name: deploy";
  d.hash = "abc";
  d.target = {{"zone", "north"}};
  t.PutDef(d);
  Commit(t);
  Reopen();
  std::vector<SiteRecord> sites;
  ASSERT_TRUE(store_->LoadSites(&sites).ok());
  ASSERT_EQ(sites.size(), 2u);
  EXPECT_EQ(sites[0].name, "alpha");
  EXPECT_EQ(sites[1].labels.at("zone"), "north");
  EXPECT_EQ(sites[1].incarnation, 7u);
  std::vector<WorkflowRecord> defs;
  ASSERT_TRUE(store_->LoadDefs(&defs).ok());
  ASSERT_EQ(defs.size(), 1u);
  EXPECT_EQ(defs[0].target.at("zone"), "north");

  HubTxn del;
  del.DeleteSite("alpha");
  del.DeleteDef("deploy");
  Commit(del);
  sites.clear();
  defs.clear();
  ASSERT_TRUE(store_->LoadSites(&sites).ok());
  ASSERT_TRUE(store_->LoadDefs(&defs).ok());
  ASSERT_EQ(sites.size(), 1u);
  EXPECT_EQ(sites[0].name, "beta");
  EXPECT_TRUE(defs.empty());
}

TEST_P(HubStoreConformance, LaterWriteInOneTxnWins) {
  HubTxn t;
  t.PutSite(Site("alpha", 1));
  t.PutSite(Site("alpha", 2));
  Commit(t);
  std::vector<SiteRecord> sites;
  ASSERT_TRUE(store_->LoadSites(&sites).ok());
  ASSERT_EQ(sites.size(), 1u);
  EXPECT_EQ(sites[0].down_head, 2u);
}

TEST_P(HubStoreConformance, UpstreamCopiesAreKeptPerIncarnation) {
  HubTxn t;
  for (uint64_t seq = 1; seq <= 5; ++seq) t.PutUp("alpha", 7, seq, "e" + std::to_string(seq));
  t.PutUp("alpha", 9, 1, "new-1");
  t.PutUp("beta", 7, 1, "b-1");
  Commit(t);
  Reopen();
  auto old = store_->ReadUp("alpha", 7, 0, 100);
  ASSERT_TRUE(old.ok());
  ASSERT_EQ(old->size(), 5u);
  EXPECT_EQ((*old)[0].seq, 1u);
  EXPECT_EQ((*old)[4].payload, "e5");
  auto tail = store_->ReadUp("alpha", 7, 3, 100);
  ASSERT_TRUE(tail.ok());
  ASSERT_EQ(tail->size(), 2u);
  EXPECT_EQ((*tail)[0].seq, 4u);
  auto limited = store_->ReadUp("alpha", 7, 0, 2);
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(limited->size(), 2u);
  auto fresh = store_->ReadUp("alpha", 9, 0, 100);
  ASSERT_TRUE(fresh.ok());
  ASSERT_EQ(fresh->size(), 1u);
  EXPECT_EQ((*fresh)[0].payload, "new-1");
}

TEST_P(HubStoreConformance, CommandLogReadsByCountAndBytesAndTrims) {
  HubTxn t;
  for (uint64_t seq = 1; seq <= 6; ++seq) t.PutDown("alpha", 7, seq, std::string(100, 'c'));
  t.PutDown("alpha", 8, 1, "other epoch");
  Commit(t);
  auto all = store_->ReadDown("alpha", 7, 0, 100, SIZE_MAX);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 6u);
  auto by_count = store_->ReadDown("alpha", 7, 2, 3, SIZE_MAX);
  ASSERT_TRUE(by_count.ok());
  ASSERT_EQ(by_count->size(), 3u);
  EXPECT_EQ((*by_count)[0].seq, 3u);
  auto by_bytes = store_->ReadDown("alpha", 7, 0, 100, 250);
  ASSERT_TRUE(by_bytes.ok());
  EXPECT_EQ(by_bytes->size(), 2u);
  // The first entry is returned even when it alone exceeds the byte bound.
  auto one = store_->ReadDown("alpha", 7, 0, 100, 10);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->size(), 1u);

  HubTxn trim;
  trim.TrimDown("alpha", 7, 4);
  Commit(trim);
  Reopen();
  auto rest = store_->ReadDown("alpha", 7, 4, 100, SIZE_MAX);
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->size(), 2u);
  EXPECT_EQ((*rest)[0].seq, 5u);
  auto other = store_->ReadDown("alpha", 8, 0, 100, SIZE_MAX);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->size(), 1u);
}

TEST_P(HubStoreConformance, AGapInAStoredStreamIsCorruption) {
  HubTxn t;
  t.PutDown("alpha", 7, 1, "a");
  t.PutDown("alpha", 7, 3, "c");
  Commit(t);
  auto got = store_->ReadDown("alpha", 7, 0, 100, SIZE_MAX);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kCorruption);
}

TEST_P(HubStoreConformance, RunsOutputsAndRequests) {
  HubTxn t;
  t.PutRun(MakeRun("b-run", "beta", "running"));
  t.PutRun(MakeRun("a-run", "alpha", "succeeded"));
  t.PutOutput("a-run", "fetch", "hello\n");
  RequestRecord q;
  q.id = "req-1";
  q.workflow = "deploy";
  q.runs = {"a-run", "b-run"};
  q.sites = {"alpha", "beta"};
  t.PutRequest(q);
  Commit(t);
  Reopen();
  auto run = store_->GetRun("a-run");
  ASSERT_TRUE(run.ok());
  ASSERT_TRUE(*run);
  EXPECT_EQ((*run)->state, "succeeded");
  ASSERT_EQ((*run)->tasks.size(), 1u);
  std::vector<std::string> order;
  ASSERT_TRUE(store_->ScanRuns([&](const HubRun& r) {
                      order.push_back(r.id);
                      return true;
                    }).ok());
  EXPECT_EQ(order, (std::vector<std::string>{"a-run", "b-run"}));
  order.clear();
  ASSERT_TRUE(store_->ScanRuns([&](const HubRun& r) {
                      order.push_back(r.id);
                      return false;
                    }).ok());
  EXPECT_EQ(order.size(), 1u);
  auto out = store_->GetOutput("a-run", "fetch");
  ASSERT_TRUE(out.ok());
  ASSERT_TRUE(*out);
  EXPECT_EQ(**out, "hello\n");
  auto req = store_->GetRequest("req-1");
  ASSERT_TRUE(req.ok());
  ASSERT_TRUE(*req);
  EXPECT_EQ((*req)->runs.size(), 2u);
  // Overwriting a run replaces it.
  HubTxn u;
  u.PutRun(MakeRun("b-run", "beta", "failed"));
  Commit(u);
  auto b = store_->GetRun("b-run");
  ASSERT_TRUE(b.ok() && *b);
  EXPECT_EQ((*b)->state, "failed");
}

// Stores that keep tasks as rows (stores_task_rows): a write carries only the tasks that
// changed, and every read gives the whole run, whatever wrote it last.
TEST_P(HubStoreConformance, TaskRowsWriteOnlyWhatChangedAndReadWhole) {
  if (!store_->stores_task_rows()) GTEST_SKIP() << "this store keeps tasks in the run record";
  HubRun r = MakeRun("site-01J0000000000000000000000A", "site", "running");
  for (int i = 1; i < 300; ++i) {
    r.tasks.push_back(HubTask{});
    r.tasks.back().id = "t" + std::to_string(i);
  }
  HubTxn first;
  first.PutRunRows(r, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});  // all ten rows of 32
  Commit(first);
  // Three tasks change and one is added: only the rows (of 32 tasks) holding them are
  // written, three of the ten.
  r.tasks[7].state = "succeeded";
  r.tasks[7].exit_code = 0;
  r.tasks[150].state = "running";
  r.tasks[299].message = "waiting";
  r.tasks.push_back(HubTask{});
  r.tasks.back().id = "added";
  r.state = "failed";
  HubTxn second;
  second.PutRunRows(r, {7 / 32, 150 / 32, 300 / 32});  // tasks 299 and 300 share row 9
  ASSERT_EQ(second.ops().back().rows.size(), 3u);
  Commit(second);
  Reopen();
  auto check = [&](const HubRun& got) {
    ASSERT_EQ(got.tasks.size(), r.tasks.size());
    for (size_t i = 0; i < r.tasks.size(); ++i) {
      EXPECT_EQ(Encode(got.tasks[i]), Encode(r.tasks[i])) << "task " << i;
    }
    EXPECT_EQ(got.state, "failed");
    EXPECT_EQ(got.rev, r.rev);
  };
  auto got = store_->GetRun(r.id);
  ASSERT_TRUE(got.ok() && *got) << got.status().ToString();
  check(**got);
  int seen = 0;
  ASSERT_TRUE(store_->ScanRuns([&](const HubRun& x) { check(x); ++seen; return true; }).ok());
  ASSERT_TRUE(store_->ScanRunsNewestFirst("", [&](const HubRun& x) { check(x); ++seen; return true; }).ok());
  ASSERT_TRUE(store_->ScanSiteRunsNewestFirst("site", "", [&](const HubRun& x) {
                      check(x);
                      ++seen;
                      return true;
                    }).ok());
  EXPECT_EQ(seen, 3);
  // Written whole (as run starts and cancels write), then by rows again: the whole record
  // is what is read, and the next row write must give every row.
  HubRun whole = **got;
  whole.tasks.resize(2);
  HubTxn third;
  third.PutRun(whole);
  Commit(third);
  got = store_->GetRun(r.id);
  ASSERT_TRUE(got.ok() && *got);
  EXPECT_EQ((*got)->tasks.size(), 2u);
  // A run deleted takes its rows along: one written again under its id has only its own.
  HubTxn del;
  del.DeleteRun(r.id);
  Commit(del);
  got = store_->GetRun(r.id);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(*got);
  HubRun again = MakeRun(r.id, "site", "running");
  HubTxn fourth;
  fourth.PutRunRows(again, {0});
  Commit(fourth);
  got = store_->GetRun(r.id);
  ASSERT_TRUE(got.ok() && *got);
  ASSERT_EQ((*got)->tasks.size(), 1u);
  EXPECT_EQ((*got)->tasks[0].id, "fetch");
}

// A row missing under a run that counts it is corruption, named, never a shorter run.
TEST_P(HubStoreConformance, ASplitRunWithoutItsRowsIsCorruption) {
  if (!store_->stores_task_rows()) GTEST_SKIP() << "this store keeps tasks in the run record";
  HubRun r = MakeRun("site-01J0000000000000000000000B", "site", "running");
  for (int i = 1; i < 40; ++i) {
    r.tasks.push_back(HubTask{});
    r.tasks.back().id = "t" + std::to_string(i);
  }
  HubTxn t;
  t.PutRunRows(r, {0});  // claims 40 tasks, writes the first row of 32
  Commit(t);
  auto got = store_->GetRun(r.id);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kCorruption);
  EXPECT_NE(got.status().message().find("task row 1"), std::string::npos) << got.status().ToString();
}

TEST_P(HubStoreConformance, ASitesRunsAreReadNewestFirstAndAlone) {
  HubTxn t;
  // Site "gw" and site "gw-2", whose run ids share the prefix "gw-".
  for (const char* id : {"gw-01A", "gw-01C", "gw-2-01B", "gw-01B", "gwx-01D", "gw-2-01A"}) {
    HubRun r = MakeRun(id, "deploy", "succeeded");
    r.site = std::string(id).rfind("gw-2-", 0) == 0 ? "gw-2" : std::string(id).rfind("gwx", 0) == 0 ? "gwx" : "gw";
    t.PutRun(r);
  }
  Commit(t);
  auto read = [&](const std::string& site, size_t stop_after, const std::string& after = "") {
    std::vector<std::string> ids;
    EXPECT_TRUE(store_->ScanSiteRunsNewestFirst(site, after, [&](const HubRun& r) {
                        ids.push_back(r.id);
                        return ids.size() < stop_after;
                      }).ok());
    return ids;
  };
  EXPECT_EQ(read("gw", 10), (std::vector<std::string>{"gw-01C", "gw-01B", "gw-01A"}));
  EXPECT_EQ(read("gw-2", 10), (std::vector<std::string>{"gw-2-01B", "gw-2-01A"}));
  EXPECT_EQ(read("gw", 2), (std::vector<std::string>{"gw-01C", "gw-01B"}));
  EXPECT_TRUE(read("g", 10).empty());
  EXPECT_TRUE(read("nobody", 10).empty());
  // Paged: after a run id of the site, older ones only.
  EXPECT_EQ(read("gw", 10, "gw-01C"), (std::vector<std::string>{"gw-01B", "gw-01A"}));
  EXPECT_EQ(read("gw", 10, "gw-01B"), (std::vector<std::string>{"gw-01A"}));
  EXPECT_TRUE(read("gw", 10, "gw-01A").empty());
  EXPECT_EQ(read("gw-2", 10, "gw-2-01B"), (std::vector<std::string>{"gw-2-01A"}));
}

// The fleet's runs newest first by the ULID in their ids, whatever the site, paged with
// `after`; a deleted run leaves the order.
TEST_P(HubStoreConformance, TheFleetsRunsAreReadNewestFirstByTimeAndPaged) {
  HubTxn t;
  const std::vector<std::string> ids = {"gw-01J0000000000000000000000C", "b-01J0000000000000000000000A",
                                        "a-01J0000000000000000000000D", "gw-2-01J0000000000000000000000B",
                                        "odd"};
  for (const auto& id : ids) t.PutRun(MakeRun(id, "deploy", "succeeded"));
  Commit(t);
  Reopen();
  auto read = [&](const std::string& after, size_t stop_after) {
    std::vector<std::string> got;
    EXPECT_TRUE(store_->ScanRunsNewestFirst(after, [&](const HubRun& r) {
                        got.push_back(r.id);
                        return got.size() < stop_after;
                      }).ok());
    return got;
  };
  const std::vector<std::string> want = {ids[2], ids[0], ids[3], ids[1], "odd"};
  EXPECT_EQ(read("", 10), want);
  EXPECT_EQ(read("", 2), (std::vector<std::string>{ids[2], ids[0]}));
  EXPECT_EQ(read(ids[0], 2), (std::vector<std::string>{ids[3], ids[1]}));
  EXPECT_EQ(read(ids[1], 10), (std::vector<std::string>{"odd"}));
  EXPECT_TRUE(read("odd", 10).empty());
  HubTxn d;
  d.DeleteRun(ids[3]);
  Commit(d);
  EXPECT_EQ(read(ids[0], 10), (std::vector<std::string>{ids[1], "odd"}));
}

// Trimming a site's upstream copy removes its oldest entries (or a whole incarnation) and
// nothing of another stream or site.
TEST_P(HubStoreConformance, TrimmingAnUpstreamCopyRemovesOnlyItsOldestEntries) {
  HubTxn t;
  for (uint64_t seq = 1; seq <= 5; ++seq) {
    t.PutUp("gw", 7, seq, "a" + std::to_string(seq));
    t.PutUp("gw", 9, seq, "b" + std::to_string(seq));
    t.PutUp("gw2", 7, seq, "c" + std::to_string(seq));
  }
  Commit(t);
  HubTxn trim;
  trim.TrimUp("gw", 9, 3);
  trim.TrimUp("gw", 7, HubTxn::kWholeStream);
  Commit(trim);
  Reopen();
  auto b = store_->ReadUp("gw", 9, 0, SIZE_MAX);
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(b->size(), 2u);
  EXPECT_EQ((*b)[0].seq, 4u);
  EXPECT_EQ((*b)[0].payload, "b4");
  EXPECT_TRUE(store_->ReadUp("gw", 7, 0, SIZE_MAX)->empty());
  EXPECT_EQ(store_->ReadUp("gw2", 7, 0, SIZE_MAX)->size(), 5u);
  EXPECT_EQ(store_->ReadUp("gw", 9, 4, SIZE_MAX)->size(), 1u);
}

TEST_P(HubStoreConformance, AuditIsOrderedLimitedAndItsHeadSurvivesReopen) {
  for (uint64_t seq = 1; seq <= 12; ++seq) {
    HubTxn t;
    t.Audit(seq, "{\"seq\":" + std::to_string(seq) + "}");
    Commit(t);
  }
  EXPECT_EQ(store_->audit_head(), 12u);
  Reopen();
  EXPECT_EQ(store_->audit_head(), 12u);
  std::vector<std::string> last;
  ASSERT_TRUE(store_->ReadAudit(3, &last).ok());
  EXPECT_EQ(last, (std::vector<std::string>{"{\"seq\":10}", "{\"seq\":11}", "{\"seq\":12}"}));
}

TEST_P(HubStoreConformance, OneTxnLandsWhole) {
  // An upstream batch, its view and the watermark: all visible together after commit.
  SiteRecord s = Site("alpha");
  s.up_applied = 3;
  HubTxn t;
  for (uint64_t seq = 1; seq <= 3; ++seq) t.PutUp("alpha", 7, seq, "e");
  t.PutRun(MakeRun("r1", "alpha", "running"));
  t.PutSite(s);
  t.Audit(1, "{}");
  Commit(t);
  Reopen();
  std::vector<SiteRecord> sites;
  ASSERT_TRUE(store_->LoadSites(&sites).ok());
  ASSERT_EQ(sites.size(), 1u);
  EXPECT_EQ(sites[0].up_applied, 3u);
  auto up = store_->ReadUp("alpha", 7, 0, 100);
  ASSERT_TRUE(up.ok());
  EXPECT_EQ(up->size(), 3u);
  auto run = store_->GetRun("r1");
  ASSERT_TRUE(run.ok() && *run);
  EXPECT_EQ(store_->audit_head(), 1u);
}

TEST_P(HubStoreConformance, SettingsAreReplacedAndSurviveReopen) {
  auto none = store_->GetSetting("policy");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(*none);
  HubTxn t;
  t.PutSetting("policy", std::string("v1\0bytes", 8));
  Commit(t);
  HubTxn u;
  u.PutSetting("policy", "v2");
  u.PutSetting("other", "x");
  Commit(u);
  Reopen();
  auto got = store_->GetSetting("policy");
  ASSERT_TRUE(got.ok() && *got);
  EXPECT_EQ(**got, "v2");
  // Settings live beside requests and the audit log without touching them.
  EXPECT_EQ(store_->audit_head(), 0u);
  auto req = store_->GetRequest("policy");
  ASSERT_TRUE(req.ok());
  EXPECT_FALSE(*req);
}

TEST_P(HubStoreConformance, EmptyTxnIsANoOp) {
  EXPECT_TRUE(store_->Commit(HubTxn{}).ok());
  EXPECT_EQ(store_->audit_head(), 0u);
}

}  // namespace
}  // namespace outpost::testing
