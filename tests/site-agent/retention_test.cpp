// Retention decisions with fixed times: ages, the byte budget, the order.
#include "site-agent/retention.h"

#include <gtest/gtest.h>

namespace outpost {
namespace {

constexpr TimeMs kDay = 86'400'000;

std::vector<std::string> Runs(const TrimPlan& p) {
  std::vector<std::string> out;
  for (const auto& i : p.trim) out.push_back(i.run + ":" + i.reason);
  return out;
}

TEST(Retention, NothingIsTrimmedWithoutLimitsOrWithinThem) {
  std::vector<StoredOutput> runs = {{"a", 1 * kDay, 100}, {"b", 2 * kDay, 100}};
  EXPECT_TRUE(PlanTrim(runs, 30 * kDay, 0, 0).trim.empty());
  EXPECT_TRUE(PlanTrim(runs, 3 * kDay, 7 * kDay, 1000).trim.empty());
  EXPECT_EQ(PlanTrim(runs, 3 * kDay, 7 * kDay, 1000).kept, 200u);
}

TEST(Retention, OldRunsGoFirstThenTheOldestUntilTheBudgetHolds) {
  std::vector<StoredOutput> runs = {{"new", 9 * kDay, 300}, {"old", 1 * kDay, 100},
                                    {"mid", 5 * kDay, 400}, {"empty", 0, 0},
                                    {"older", 2 * kDay, 200}};
  // Day 10, keep 7 days: old (day 1) and older (day 2) are too old; then 700 bytes
  // remain against a 500-byte budget, so mid (the oldest left) goes too.
  TrimPlan p = PlanTrim(runs, 10 * kDay, 7 * kDay, 500);
  EXPECT_EQ(Runs(p), (std::vector<std::string>{"old:older than the retention age",
                                               "older:older than the retention age",
                                               "mid:over the output budget"}));
  EXPECT_EQ(p.bytes, 700u);
  EXPECT_EQ(p.kept, 300u);
  // Budget alone: oldest first, only as many as needed.
  p = PlanTrim(runs, 10 * kDay, 0, 800);
  EXPECT_EQ(Runs(p), (std::vector<std::string>{"old:over the output budget",
                                               "older:over the output budget"}));
  EXPECT_EQ(p.kept, 700u);
  // A budget no run fits: all output goes, state is the caller's to keep.
  p = PlanTrim(runs, 10 * kDay, 0, 1);
  EXPECT_EQ(p.trim.size(), 4u);
  EXPECT_EQ(p.kept, 0u);
}

}  // namespace
}  // namespace outpost
