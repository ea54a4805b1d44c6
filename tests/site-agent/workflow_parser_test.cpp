// WorkflowParser (site-agent/workflow_parser.h): sources parsed once, large ones on the
// worker thread; and a hub batch whose start waits for its workflow stops before it with
// nothing of that command written (site-agent/commands.h).
#include "site-agent/workflow_parser.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <rocksdb/env.h>

#include "common/protocol/command.h"
#include "common/protocol/event_log.h"
#include "site-agent/agent_store.h"
#include "site-agent/commands.h"
#include "site-agent/engine.h"

namespace outpost {
namespace {

std::string Chain(int n, const std::string& name = "chain", const std::string& last_needs = "") {
  std::string y = "name: " + name + "\ntasks:\n";
  for (int i = 0; i < n; ++i) {
    y += "  - id: t" + std::to_string(i) + "\n    shell: \"true\"\n";
    if (i > 0) y += "    needs: [t" + std::to_string(i - 1) + "]\n";
  }
  if (!last_needs.empty()) y += "  - id: last\n    shell: \"true\"\n    needs: [" + last_needs + "]\n";
  return y;
}

// Waits (bounded) until the worker has finished something, then collects it.
size_t WaitAndCollect(WorkflowParser& p) {
  for (int i = 0; i < 600; ++i) {
    pollfd pfd{p.wake_fd(), POLLIN, 0};
    if (poll(&pfd, 1, 100) > 0) return p.Collect();
  }
  return 0;
}

TEST(WorkflowParser, SmallSourcesAreParsedAtOnceAndOnlyOnce) {
  auto p = WorkflowParser::Create(64 * 1024, 4);
  ASSERT_TRUE(p.ok());
  const std::string src = Chain(3);
  auto a = (*p)->Get(src, "a.yaml");
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(a->ok()) << a->status().ToString();
  EXPECT_EQ((**a)->tasks.size(), 3u);
  auto b = (*p)->Get(src, "a.yaml");
  ASSERT_TRUE(b.has_value() && b->ok());
  EXPECT_EQ(**a, **b);  // the same shared definition
  EXPECT_EQ((*p)->counters().parsed_inline, 1u);
  EXPECT_EQ((*p)->counters().cache_hits, 1u);
  // Another origin is another entry: its errors would name another file.
  auto c = (*p)->Get(src, "b.yaml");
  ASSERT_TRUE(c.has_value() && c->ok());
  EXPECT_EQ((*p)->counters().parsed_inline, 2u);
}

TEST(WorkflowParser, ErrorsAreKeptAndNameTheOrigin) {
  auto p = WorkflowParser::Create();
  ASSERT_TRUE(p.ok());
  for (int i = 0; i < 2; ++i) {
    auto r = (*p)->Get(Chain(2, "broken", "nowhere"), "hub:broken");
    ASSERT_TRUE(r.has_value());
    ASSERT_FALSE(r->ok());
    EXPECT_NE(r->status().message().find("hub:broken:"), std::string::npos) << r->status().message();
    EXPECT_NE(r->status().message().find("nowhere"), std::string::npos) << r->status().message();
  }
  EXPECT_EQ((*p)->counters().parsed_inline, 1u);
}

TEST(WorkflowParser, LargeSourcesAreParsedByTheWorkerOnceWhileTheCallerGoesOn) {
  auto p = WorkflowParser::Create(/*inline_bytes=*/1024, 4);
  ASSERT_TRUE(p.ok());
  const std::string big = Chain(2000);
  ASSERT_GT(big.size(), 1024u);
  EXPECT_FALSE((*p)->Get(big, "big.yaml").has_value());
  EXPECT_FALSE((*p)->Get(big, "big.yaml").has_value());  // asked again: still one job
  EXPECT_EQ((*p)->waiting(), 1u);
  EXPECT_EQ(WaitAndCollect(**p), 1u);
  EXPECT_EQ((*p)->waiting(), 0u);
  auto r = (*p)->Get(big, "big.yaml");
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->ok()) << r->status().ToString();
  EXPECT_EQ((**r)->tasks.size(), 2000u);
  EXPECT_EQ((*p)->counters().parsed_background, 1u);
  EXPECT_EQ((*p)->counters().parsed_inline, 0u);
  // GetNow never waits: parsed here when nothing is cached.
  auto now = (*p)->GetNow(Chain(1500), "now.yaml");
  ASSERT_TRUE(now.ok());
  EXPECT_EQ((*now)->tasks.size(), 1500u);
}

TEST(WorkflowParser, TheLeastRecentlyUsedResultGoesFirst) {
  auto p = WorkflowParser::Create(64 * 1024, 2);
  ASSERT_TRUE(p.ok());
  const std::string a = Chain(1, "a"), b = Chain(1, "b"), c = Chain(1, "c");
  (void)(*p)->Get(a, "x");
  (void)(*p)->Get(b, "x");
  (void)(*p)->Get(a, "x");  // a is now the most recent
  (void)(*p)->Get(c, "x");  // b goes
  EXPECT_EQ((*p)->counters().parsed_inline, 3u);
  (void)(*p)->Get(a, "x");
  EXPECT_EQ((*p)->counters().parsed_inline, 3u);
  (void)(*p)->Get(b, "x");
  EXPECT_EQ((*p)->counters().parsed_inline, 4u);
}

TEST(WorkflowParser, ClosesWithAJobStillQueued) {
  auto p = WorkflowParser::Create(0, 2);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE((*p)->Get(Chain(3000), "a").has_value());
  EXPECT_FALSE((*p)->Get(Chain(3001), "b").has_value());
  p->reset();  // joins the worker; nothing hangs
}

// A hub batch: a small start, a start whose workflow is still being validated, and one
// more. Only the first is applied; nothing of the second (no event, no state write) is in
// the batch's write; the watermark stops before it.
TEST(WorkflowParser, ABatchStopsBeforeACommandWhoseWorkflowIsBeingValidated) {
  std::unique_ptr<rocksdb::Env> env(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  EventLog::Options lo;
  lo.env = env.get();
  lo.new_incarnation = 9;
  auto log = EventLog::Open("/mem/site", lo);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  AgentStore store(std::move(log).value());
  ManualClock clock(1'800'000'000'000);
  Rng rng(3);
  Engine engine(clock, &rng, EngineOptions{4, 5000, "gw-1", {}, {}, {}});

  auto parser = WorkflowParser::Create(/*inline_bytes=*/4096, 4);
  ASSERT_TRUE(parser.ok());
  const WorkflowSourceParser parse = [&](const std::string& s, const std::string& o) {
    return (*parser)->Get(s, o);
  };
  auto start = [](const std::string& run, const std::string& source) {
    Command c;
    c.type = static_cast<uint8_t>(CommandType::kStartRun);
    c.run = run;
    c.workflow = "w";
    c.source = source;
    c.request = "req-" + run;
    return EncodeCommand(c);
  };
  const std::string big = Chain(500, "w");
  ASSERT_GT(big.size(), 4096u);
  std::vector<std::string> batch = {start("r1", Chain(1, "w")), start("r2", big), start("r3", Chain(1, "w"))};

  Effects fx;
  std::vector<StateWrite> extra;
  uint64_t through = 0;
  std::vector<std::pair<uint64_t, CommandOutcome>> told;
  Status s = ApplyCommandBatch(
      11, batch, engine, store, clock, nullptr, &fx, &extra, &through,
      [&](uint64_t seq, const Command*, const CommandOutcome& o) { told.emplace_back(seq, o); },
      &parse);
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_EQ(through, 11u);
  ASSERT_EQ(told.size(), 2u);
  EXPECT_EQ(told[1].first, 12u);
  EXPECT_EQ(told[1].second.kind, CommandOutcome::kRetry);
  EXPECT_TRUE(told[1].second.validating);
  EXPECT_NE(engine.FindRun("r1"), nullptr);
  EXPECT_EQ(engine.FindRun("r2"), nullptr);
  for (const auto& e : fx.events) EXPECT_NE(e.run, "r2");
  for (const auto& w : extra) EXPECT_EQ(w.key.find("req-r2"), std::string::npos) << w.key;

  // Once validated, the rest of the batch applies from where it stopped.
  ASSERT_EQ(WaitAndCollect(**parser), 1u);
  told.clear();
  fx = Effects();
  extra.clear();
  s = ApplyCommandBatch(
      12, {batch[1], batch[2]}, engine, store, clock, nullptr, &fx, &extra, &through,
      [&](uint64_t seq, const Command*, const CommandOutcome& o) { told.emplace_back(seq, o); },
      &parse);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(through, 13u);
  EXPECT_NE(engine.FindRun("r2"), nullptr);
  EXPECT_NE(engine.FindRun("r3"), nullptr);
}

}  // namespace
}  // namespace outpost
