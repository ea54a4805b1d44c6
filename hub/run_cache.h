// RunCache: the hub's hot run records, kept decoded between upstream batches.
//
// A site streaming a run sends its events over many batches; without the cache every
// batch read the run back from the store and decoded it. The cache holds runs as the
// last successful commit left them, with an index of their tasks by id (a 1,000-instance
// fan-out folds each event without a search through its tasks).
//
// Coherence rule: the store is the truth. A batch takes the runs it touches out of the
// cache (Take), folds into them, and puts them back (Put) only after its commit
// succeeded; a failed commit leaves them out, so the next read goes to the store. Any
// other writer of a run (run start, cancel, approve, site removal) calls Forget(id)
// after its commit.
//
// Bounded by an estimate of bytes (the run's encoded size, doubled for the decoded
// strings), least recently used first out. Thread-safety: the hub's one thread.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "hub/hub_store.h"

namespace outpost {

// A run being folded: the record, its tasks by id, and what it was before this batch.
struct HotRun {
  HubRun run;
  std::unordered_map<std::string, uint32_t> task_index;  // task id -> position in run.tasks
  bool existed = false;       // the store held the run before the batch
  std::string state_before;  // its state then
  size_t bytes = 0;          // size estimate, for the cache's budget
  // Stores with task rows (HubStore::stores_task_rows): whether the store's rows are this
  // run's as last committed (then only `changed` tasks need writing). False for a run read
  // from the store or new: the next write writes all of its rows.
  bool rows_stored = false;
  std::vector<uint32_t> changed;  // positions of the tasks this batch changed (then their rows)
};

class RunCache {
 public:
  explicit RunCache(size_t max_bytes = 32 << 20) : max_bytes_(max_bytes) {}

  // Removes and returns the cached run `id`, if held.
  std::optional<HotRun> Take(const std::string& id) {
    auto it = map_.find(id);
    if (it == map_.end()) return std::nullopt;
    HotRun r = std::move(it->second.first);  // its `bytes` stay for Forget to count
    Forget(id);
    return r;
  }

  // The cached run `id`, if held (its place in the LRU order unchanged).
  const HotRun* Peek(const std::string& id) const {
    auto it = map_.find(id);
    return it == map_.end() ? nullptr : &it->second.first;
  }

  // Holds `r` (as committed) as the most recently used; evicts the oldest past the budget.
  void Put(HotRun r) {
    Forget(r.run.id);
    if (r.bytes > max_bytes_ / 4) return;  // one huge run must not empty the cache
    lru_.push_front(r.run.id);
    bytes_ += r.bytes;
    const std::string id = r.run.id;
    map_.emplace(id, std::make_pair(std::move(r), lru_.begin()));
    while (bytes_ > max_bytes_ && !lru_.empty()) Forget(lru_.back());
  }

  // Drops every run (another hub process may have written them).
  void Clear() {
    map_.clear();
    lru_.clear();
    bytes_ = 0;
  }

  void Forget(const std::string& id) {
    auto it = map_.find(id);
    if (it == map_.end()) return;
    bytes_ -= it->second.first.bytes;
    lru_.erase(it->second.second);
    map_.erase(it);
  }

 private:
  size_t max_bytes_;
  size_t bytes_ = 0;
  std::list<std::string> lru_;  // most recent first
  std::unordered_map<std::string, std::pair<HotRun, std::list<std::string>::iterator>> map_;
};

}  // namespace outpost
