// RocksHubStore: the hub store on an embedded RocksDB — the default, one hub process.
//
// Column families and keys:
//   sites   name -> SiteRecord
//   up      site \0 incarnation(BE u64) seq(BE u64) -> event bytes
//   down    site \0 epoch(BE u64) seq(BE u64) -> command bytes (trimmed by range delete)
//   runs    "run/<id>" -> HubRun, "out/<run>/<task>" -> output tail
//   defs    name -> WorkflowRecord
//   meta    "req/<request id>" -> RequestRecord, "audit/<BE u64>" -> hub event (JSON)
//
// A HubTxn becomes one WriteBatch written with sync (unless Options::sync is off, for
// benchmarks that measure without the disk). Txns marked sync_deferred (group commit)
// are gathered in one WriteBatch that SyncDeferred writes and syncs at once: one WAL
// record, which a power cut keeps whole or drops whole, and the disk sees one synced
// write at a time, as without group commit. A read that would see any of the gathered
// txns writes them first. The database is opened on an injected rocksdb::Env, so the
// simulator and tests run it in memory.
//
// Thread-safety: one owner thread.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>

#include <rocksdb/write_batch.h>

#include "common/rocks.h"
#include "hub/hub_store.h"

namespace outpost {

class RocksHubStore : public HubStore {
 public:
  struct Options {
    rocksdb::Env* env = nullptr;
    bool sync = true;
    // Memtables of 32 MB, not 8: the copies of a thousand sites' logs interleave across the
    // whole key range, so every flushed table overlaps all of level 1 and each compaction
    // from level 0 rewrites it; a quarter as many flushes is a quarter as many rewrites,
    // which tells once the store has grown. (Fleet benchmark, 200 sites x 5,000 events a
    // round, rounds 6-10: 174-274k events/s end to end against 102-192k with 8 MB, for a
    // median of 21 MB more memory; in short runs on an empty store no difference beyond
    // the noise: docs/performance.md.)
    size_t write_buffer_bytes = 32 << 20;
    size_t block_cache_bytes = 32 << 20;
    int max_open_files = 1024;  // see RocksOptions
    // See RocksOptions: compaction was 38% of the hub process's CPU in the fleet
    // benchmark with RocksDB's default of 4 (docs/performance.md).
    int l0_compaction_trigger = 8;
    bool simulated = false;  // see RocksOptions
    // Check revisions (HubTxn::PutSite) as a store shared by several hubs must: the
    // simulator runs several HubCores over one store. Off for one hub process, the only
    // writer, where they always match.
    bool check_revisions = false;
    // Tasks of large runs kept in rows of their own (stores_task_rows); off only for the
    // benchmark's baseline, which writes every run whole.
    bool task_rows = true;
  };

  static Result<std::unique_ptr<RocksHubStore>> Open(const std::string& path,
                                                     const Options& options);

  Status Commit(const Txn& txn) override;
  Status LoadSites(std::vector<SiteRecord>* out) const override;
  Status LoadDefs(std::vector<WorkflowRecord>* out) const override;
  Result<std::optional<HubRun>> GetRun(const std::string& id) const override;
  Status ScanRuns(const std::function<bool(const HubRun&)>& fn) const override;
  Status ScanRunsNewestFirst(const std::string& after,
                             const std::function<bool(const HubRun&)>& fn) const override;
  Status ScanSiteRunsNewestFirst(const std::string& site, const std::string& after,
                                 const std::function<bool(const HubRun&)>& fn) const override;
  bool write_failed() const override { return write_failed_; }
  bool defers_sync() const override { return true; }
  Status SyncDeferred() override;
  uint64_t early_group_writes() const override { return early_writes_; }
  bool stores_task_rows() const override { return task_rows_; }
  const Histogram* commit_seconds() const override { return &commit_seconds_; }
  Result<std::optional<std::string>> GetOutput(const std::string& run,
                                               const std::string& task) const override;
  Result<std::optional<RequestRecord>> GetRequest(const std::string& id) const override;
  Result<std::optional<std::string>> GetSetting(const std::string& key) const override;
  Status ScanSettings(const std::string& prefix,
                      const std::function<void(const std::string&, const std::string&)>& fn)
      const override;
  Result<std::optional<std::string>> GetChunk(const std::string& digest) const override;
  Status LoadArtifacts(std::vector<ArtifactRecord>* out) const override;
  Result<std::vector<LogRecord>> ReadDown(const std::string& site, uint64_t epoch, uint64_t after,
                                          size_t max_count, size_t max_bytes) const override;
  Result<std::vector<LogRecord>> ReadUp(const std::string& site, uint64_t incarnation,
                                        uint64_t after, size_t max_count) const override;
  Status ReadAudit(size_t limit, std::vector<std::string>* out) const override;
  uint64_t audit_head() const override { return audit_head_; }
  uint64_t ApproximateSize() const override;

  // The raw database, for benchmarks that measure the engine's own ceiling.
  const RocksHandles& rocks() const { return rocks_; }

 private:
  // Builds the runs' index by time once, for a store written before it existed.
  Status IndexRunsByTime();
  enum class Cf { kSites, kUp, kDown, kRuns, kDefs, kMeta, kBlobs };
  RocksHubStore() = default;
  rocksdb::ColumnFamilyHandle* Handle(Cf cf) const;
  Status AddToBatch(const HubTxn::Op& op, rocksdb::WriteBatch* batch) const;
  // A stored run record: whole (tasks inside), or its own fields with its tasks as rows
  // under "row/" (HubTxn::PutRunRows), which are read too unless `with_tasks` is false.
  Status DecodeRun(const std::string& id, std::string_view stored, HubRun* out,
                   bool with_tasks = true) const;

  // check_revisions: the revision of each site, run and request this store wrote or read
  // (it is their only writer), so a check costs no read.
  Status CheckRevisions(const Txn& txn, std::map<std::pair<int, std::string>, uint64_t>* after);
  Result<uint64_t> StoredRev(HubTxn::Kind kind, const std::string& key);
  bool check_revisions_ = false;
  bool task_rows_ = true;
  std::map<std::pair<int, std::string>, uint64_t> revs_;

  RocksHandles rocks_;
  bool sync_ = true;
  bool write_failed_ = false;  // a write failed: every later one is refused until reopened
  size_t switch_at_ = 0;      // memtable bytes at which a write switches them

  // The txns gathered since the last group write, and what they touch, so that a read
  // knows whether it would see them (ReadsPending).
  struct Pending {
    rocksdb::WriteBatch batch;
    size_t txns = 0;
    size_t deferred = 0;                   // of them, marked sync_deferred
    std::unordered_set<std::string> runs;  // run ids (record, task rows, outputs)
    std::unordered_set<std::string> meta;  // meta keys ("req/...", "set/...", "art/...")
    // Command streams (site, epoch): the highest entry written or trimmed.
    std::map<std::pair<std::string, uint64_t>, uint64_t> down;
    std::unordered_set<std::string> purged;  // sites whose streams were purged
    bool sites = false, up = false, defs = false, audit = false, blobs = false;
    void Clear();  // after the group's write
  };
  Pending pending_;
  void NotePending(const HubTxn::Op& op);
  // Writes the gathered txns as one WriteBatch (synced unless Options::sync is off).
  Status WritePending();
  // A read that would see a gathered txn (`touched`) writes the group first, so every
  // read is of the database alone. Logically const: what a read returns is the same
  // either way; only when it reaches the disk changes.
  Status ReadsPending(bool touched) const;
  bool PendingMeta(std::string_view prefix) const;
  uint64_t early_writes_ = 0;

  // One Write, its latency observed in commit_seconds_.
  Status TimedWrite(const rocksdb::WriteOptions& wo, rocksdb::WriteBatch* batch, const char* what);
  uint64_t audit_head_ = 0;
  Histogram commit_seconds_{Histogram::LatencyBounds()};
};

// The key of entry `seq` of a site's stream (up or down) in RocksHubStore.
std::string StreamKey(const std::string& site, uint64_t stream, uint64_t seq);

}  // namespace outpost
