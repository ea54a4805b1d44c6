// HubCore's retention of the per-site copies of site logs (docs/operations.md, "Hub
// retention"). The run view, the command logs and the audit log are not touched: what a
// trimmed event said is already folded into its run.
//
// Three limits, each optional:
//   age         copies that arrived longer ago than max_age are trimmed (checked each minute)
//   site quota  a site's copies above site_quota bytes are trimmed, oldest first, in the
//               same transaction as the batch that went over (a noisy site cannot fill
//               the disk between checks)
//   budget      all sites' copies together above max_bytes: the oldest marks of the fleet
//               go first, whichever site they belong to (checked each minute)
//
// Trimming works on marks (UpMark in hub_store.h), never on single entries: the hub knows
// how many bytes and which sequence numbers each mark covers without reading them back.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <queue>

#include "hub/hub_core.h"

namespace outpost {

namespace {

// The bytes the retention counts for an upstream entry: the payload and its key.
uint64_t EntryBytes(const std::string& site, const std::string& payload) {
  return payload.size() + site.size() + 17;
}

}  // namespace

void HubCore::NoteUpBatch(SiteRecord* site, uint64_t last_seq,
                          const std::vector<std::string>& entries) const {
  uint64_t bytes = 0;
  for (const auto& e : entries) bytes += EntryBytes(site->name, e);
  site->up_bytes += bytes;
  const TimeMs now = clock_.Now();
  const HubRetention& r = options_.retention;
  // A mark spans at most a granularity of time and of bytes, so trimming by age or by
  // quota removes little more than it must.
  const uint64_t span_bytes = std::max<uint64_t>(
      64 << 10, (r.site_quota > 0 ? r.site_quota : uint64_t{1} << 30) / kUpMarkSpans);
  const DurationMs span_ms = std::max<DurationMs>(r.mark_ms, r.max_age / kUpMarkSpans);
  auto& marks = site->up_marks;
  const uint64_t before_last = marks.size() >= 2 ? marks[marks.size() - 2].bytes
                               : site->up_trimmed_bytes;
  if (!marks.empty() && marks.back().incarnation == site->incarnation &&
      now - marks.back().start < span_ms && site->up_bytes - before_last <= span_bytes) {
    marks.back().seq = last_seq;
    marks.back().at = now;
    marks.back().bytes = site->up_bytes;
  } else {
    marks.push_back({site->incarnation, last_seq, now, now, site->up_bytes});
  }
  if (marks.size() > kMaxUpMarks) {
    // Too many marks: the oldest two of one stream become one (the older's entries go with
    // the newer's). Marks of different incarnations are never merged: trimming removes an
    // older stream whole only while a mark names it.
    for (size_t i = 0; i + 1 < marks.size(); ++i) {
      if (marks[i].incarnation != marks[i + 1].incarnation) continue;
      marks[i + 1].start = marks[i].start;
      marks.erase(marks.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
  }
}

uint64_t HubCore::TrimUpThrough(SiteRecord* site, size_t k, HubStore::Txn* txn) const {
  auto& marks = site->up_marks;
  if (k >= marks.size()) return 0;
  const UpMark last = marks[k];
  // Incarnations are random numbers, not ordered: each older stream is removed whole
  // (a site never returns to an incarnation it replaced), the last one through its mark.
  std::vector<uint64_t> whole;
  for (size_t i = 0; i <= k; ++i) {
    const uint64_t inc = marks[i].incarnation;
    if (inc != last.incarnation && std::find(whole.begin(), whole.end(), inc) == whole.end()) {
      whole.push_back(inc);
    }
  }
  for (uint64_t inc : whole) txn->TrimUp(site->name, inc, HubTxn::kWholeStream);
  txn->TrimUp(site->name, last.incarnation, last.seq);
  const uint64_t freed = last.bytes - std::min(last.bytes, site->up_trimmed_bytes);
  site->up_trimmed_bytes = std::max(site->up_trimmed_bytes, last.bytes);
  marks.erase(marks.begin(), marks.begin() + static_cast<std::ptrdiff_t>(k) + 1);
  return freed;
}

uint64_t HubCore::TrimToQuota(SiteRecord* site, HubStore::Txn* txn) {
  const uint64_t quota = options_.retention.site_quota;
  if (quota == 0 || site->up_kept_bytes() <= quota) return 0;
  // The fewest oldest marks that bring the site under its quota.
  size_t k = 0;
  while (k + 1 < site->up_marks.size() &&
         site->up_bytes - site->up_marks[k].bytes > quota) {
    ++k;
  }
  const uint64_t freed = TrimUpThrough(site, k, txn);
  const TimeMs now = clock_.Now();
  TimeMs& logged = quota_logged_[site->name];
  if (now - logged >= 3'600'000 || logged == 0) {
    logged = now;
    spdlog::warn("hub.site_quota site={} quota_bytes={} trimmed_bytes={} hint=\"the hub keeps at "
                 "most this much of the site's event copies; the run view keeps what they said "
                 "(--site-events-quota-mb)\"",
                 site->name, quota, freed);
  }
  return freed;
}

void HubCore::Housekeep() {
  const HubRetention& r = options_.retention;
  const TimeMs now = clock_.Now();
  std::map<std::string, SiteRecord> changed;
  uint64_t by_age = 0, by_budget = 0;
  HubStore::Txn txn;
  if (r.max_age > 0) {
    const TimeMs cutoff = now - r.max_age;
    for (const auto& [name, s] : sites_) {
      // Through the newest mark whose entries had all arrived before the cutoff.
      size_t n = 0;
      while (n < s.up_marks.size() && s.up_marks[n].at < cutoff) ++n;
      if (n == 0) continue;
      SiteRecord copy = s;
      by_age += TrimUpThrough(&copy, n - 1, &txn);
      changed[name] = std::move(copy);
    }
  }
  if (r.max_bytes > 0) {
    uint64_t total = 0;
    for (const auto& [name, s] : sites_) {
      auto c = changed.find(name);
      total += (c != changed.end() ? c->second : s).up_kept_bytes();
    }
    // The fleet's oldest marks first, one at a time, until under the budget.
    using Entry = std::pair<TimeMs, std::string>;  // (mark's arrival, site)
    std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> oldest;
    auto record = [&](const std::string& name) -> SiteRecord& {
      auto c = changed.find(name);
      if (c == changed.end()) c = changed.emplace(name, sites_.at(name)).first;
      return c->second;
    };
    for (const auto& [name, s] : sites_) {
      auto c = changed.find(name);
      const SiteRecord& cur = c != changed.end() ? c->second : s;
      if (!cur.up_marks.empty()) oldest.push({cur.up_marks.front().at, name});
    }
    while (total > r.max_bytes && !oldest.empty()) {
      const std::string name = oldest.top().second;
      oldest.pop();
      SiteRecord& copy = record(name);
      if (copy.up_marks.empty()) continue;
      const uint64_t freed = TrimUpThrough(&copy, 0, &txn);
      by_budget += freed;
      total -= std::min(total, freed);
      if (!copy.up_marks.empty()) oldest.push({copy.up_marks.front().at, name});
    }
  }
  if (txn.size() == 0) return;
  Audit(&txn, {{"event", "hub.retention"},
               {"sites", changed.size()},
               {"bytes_by_age", by_age},
               {"bytes_by_budget", by_budget}});
  if (Status s = CommitSites(txn, changed); !s.ok()) {
    spdlog::error("hub.retention_failed error=\"{}\"", s.ToString());
    return;
  }
  counters_.retention_age_bytes += by_age;
  counters_.retention_budget_bytes += by_budget;
  spdlog::info("hub.retention sites={} bytes_by_age={} bytes_by_budget={}", changed.size(),
               by_age, by_budget);
}

}  // namespace outpost
