#include "site-agent/retention.h"

#include <algorithm>

namespace outpost {

TrimPlan PlanTrim(std::vector<StoredOutput> runs, TimeMs now, DurationMs retain, uint64_t budget) {
  std::stable_sort(runs.begin(), runs.end(), [](const StoredOutput& a, const StoredOutput& b) {
    return a.finished < b.finished;
  });
  TrimPlan plan;
  for (const auto& r : runs) plan.kept += r.bytes;
  for (const auto& r : runs) {
    if (r.bytes == 0) continue;
    const bool old = retain > 0 && now - r.finished > retain;
    const bool over = budget > 0 && plan.kept > budget;
    if (!old && !over) continue;
    plan.trim.push_back({r.run, old ? "older than the retention age" : "over the output budget", r.bytes});
    plan.kept -= r.bytes;
    plan.bytes += r.bytes;
  }
  return plan;
}

}  // namespace outpost
