#include "hub/rocks_hub_store.h"

#include <sys/resource.h>

#include <algorithm>

#include <spdlog/spdlog.h>
#include <rocksdb/iterator.h>
#include <chrono>
#include <rocksdb/write_batch.h>

namespace outpost {

namespace {

const std::vector<std::string> kCfNames = {"sites", "up", "down", "runs", "defs", "meta", "blobs"};
constexpr char kAuditPrefix[] = "audit/";
// The runs' index by time (ScanRunsNewestFirst); "set/run_time_index" in meta says it is
// complete (a store from before it is indexed once, at open).
constexpr char kTimePrefix[] = "when/";
// A run record whose tasks are rows of their own starts with this byte (never the first
// of a msgpack map), then the task count (4 bytes, big-endian), then the run's fields.
constexpr char kSplitRunMark = '\xc1';

std::string RowNumber(uint32_t n) {
  std::string b(4, '\0');
  for (int i = 3; i >= 0; --i, n >>= 8) b[i] = static_cast<char>(n & 0xff);
  return b;
}
// Task rows: "row/" run '\0' row number (4 bytes, big-endian), in the runs' column family;
// row n holds tasks n*HubTxn::kTaskChunk onwards (HubTxn::PutRunRows).
std::string RowPrefix(const std::string& run, char end = '\0') {
  return "row/" + run + end;
}
std::string RowKey(const std::string& run, uint32_t pos) { return RowPrefix(run) + RowNumber(pos); }

}  // namespace

std::string StreamKey(const std::string& site, uint64_t stream, uint64_t seq) {
  std::string k = site;
  k.push_back('\0');
  k += EncodeU64(stream);
  k += EncodeU64(seq);
  return k;
}

Result<std::unique_ptr<RocksHubStore>> RocksHubStore::Open(const std::string& path,
                                                           const Options& options) {
  std::unique_ptr<RocksHubStore> s(new RocksHubStore());
  RocksOptions ro;
  ro.env = options.env;
  ro.write_buffer_bytes = options.write_buffer_bytes;
  ro.simulated = options.simulated;
  ro.block_cache_bytes = options.block_cache_bytes;
  // Memtables (and WAL files) switch only through SwitchFullMemtables (RocksOptions).
  ro.manual_memtable_switch = true;
  // At most a quarter of the process's file limit: the rest is for sockets (a hub started
  // by hand under a limit of 1,024 keeps 256 tables open).
  ro.max_open_files = options.max_open_files;
  ro.l0_compaction_trigger = options.l0_compaction_trigger;
  if (rlimit rl{}; ro.max_open_files > 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
                   rl.rlim_cur != RLIM_INFINITY) {
    ro.max_open_files = static_cast<int>(std::min<rlim_t>(
        std::max<rlim_t>(rl.rlim_cur / 4, 64), static_cast<rlim_t>(ro.max_open_files)));
  }
  OUTPOST_ASSIGN_OR_RETURN(s->rocks_, OpenRocks(path, kCfNames, ro));
  s->switch_at_ = options.write_buffer_bytes;
  s->sync_ = options.sync;
  s->check_revisions_ = options.check_revisions;
  s->task_rows_ = options.task_rows;
  // The newest audit key gives the audit sequence.
  std::unique_ptr<rocksdb::Iterator> it(
      s->rocks_.db->NewIterator(rocksdb::ReadOptions(), s->Handle(Cf::kMeta)));
  it->SeekForPrev(std::string(kAuditPrefix) + std::string(8, '\xff'));
  if (it->Valid() && it->key().starts_with(kAuditPrefix) &&
      it->key().size() == sizeof(kAuditPrefix) - 1 + 8) {
    s->audit_head_ = DecodeU64(it->key().ToStringView().substr(sizeof(kAuditPrefix) - 1));
  }
  OUTPOST_RETURN_IF_ERROR(FromRocks(it->status(), "read hub audit log"));
  OUTPOST_RETURN_IF_ERROR(s->IndexRunsByTime());
  return s;
}

rocksdb::ColumnFamilyHandle* RocksHubStore::Handle(Cf cf) const {
  return rocks_.cfs[1 + static_cast<size_t>(cf)];
}

Status RocksHubStore::AddToBatch(const HubTxn::Op& op, rocksdb::WriteBatch* batch) const {
  using Kind = HubTxn::Kind;
  switch (op.kind) {
    case Kind::kPutSite: return FromRocks(batch->Put(Handle(Cf::kSites), op.key, op.value), "batch");
    case Kind::kDeleteSite: return FromRocks(batch->Delete(Handle(Cf::kSites), op.key), "batch");
    case Kind::kPutUp:
      return FromRocks(batch->Put(Handle(Cf::kUp), StreamKey(op.key, op.stream, op.seq),
                                  rocksdb::Slice(op.bytes().data(), op.bytes().size())),
                       "batch");
    case Kind::kPutDown:
      return FromRocks(
          batch->Put(Handle(Cf::kDown), StreamKey(op.key, op.stream, op.seq), op.value), "batch");
    case Kind::kTrimDown:
      return FromRocks(batch->DeleteRange(Handle(Cf::kDown), StreamKey(op.key, op.stream, 0),
                                          StreamKey(op.key, op.stream, op.seq + 1)),
                       "batch");
    case Kind::kTrimUp:
      return FromRocks(batch->DeleteRange(Handle(Cf::kUp), StreamKey(op.key, op.stream, 0),
                                          StreamKey(op.key, op.stream, op.seq + 1)),
                       "batch");
    case Kind::kPutRun:
      // The run, and its entry in the index by time (kTimePrefix + RunTimeKey -> nothing).
      if (op.split) {
        // Its own fields behind a mark and its task count, and the tasks that changed as
        // rows; rows past the count (none today: tasks are only added) are never read.
        OUTPOST_RETURN_IF_ERROR(FromRocks(
            batch->Put(Handle(Cf::kRuns), "run/" + op.key,
                       std::string(1, kSplitRunMark) + RowNumber(op.ntasks) + op.value),
            "batch"));
        for (const auto& [pos, row] : op.rows) {
          OUTPOST_RETURN_IF_ERROR(
              FromRocks(batch->Put(Handle(Cf::kRuns), RowKey(op.key, pos), row), "batch"));
        }
      } else {
        OUTPOST_RETURN_IF_ERROR(
            FromRocks(batch->Put(Handle(Cf::kRuns), "run/" + op.key, op.value), "batch"));
      }
      return FromRocks(batch->Put(Handle(Cf::kRuns), kTimePrefix + RunTimeKey(op.key), ""),
                       "batch");
    case Kind::kPutOutput:
      return FromRocks(batch->Put(Handle(Cf::kRuns), "out/" + op.key + "/" + op.key2, op.value),
                       "batch");
    case Kind::kPutDef: return FromRocks(batch->Put(Handle(Cf::kDefs), op.key, op.value), "batch");
    case Kind::kDeleteDef: return FromRocks(batch->Delete(Handle(Cf::kDefs), op.key), "batch");
    case Kind::kPutRequest:
      return FromRocks(batch->Put(Handle(Cf::kMeta), "req/" + op.key, op.value), "batch");
    case Kind::kPutSetting:
      return FromRocks(batch->Put(Handle(Cf::kMeta), "set/" + op.key, op.value), "batch");
    case Kind::kPutChunk:
      return FromRocks(batch->Put(Handle(Cf::kBlobs), op.key, op.value), "batch");
    case Kind::kPutArtifact:
      return FromRocks(batch->Put(Handle(Cf::kMeta), "art/" + op.key, op.value), "batch");
    case Kind::kAudit:
      return FromRocks(batch->Put(Handle(Cf::kMeta), kAuditPrefix + EncodeU64(op.seq), op.value),
                       "batch");
    case Kind::kDeleteRun:
      OUTPOST_RETURN_IF_ERROR(FromRocks(batch->Delete(Handle(Cf::kRuns), "run/" + op.key), "batch"));
      OUTPOST_RETURN_IF_ERROR(FromRocks(
          batch->DeleteRange(Handle(Cf::kRuns), RowPrefix(op.key), RowPrefix(op.key, '\1')),
          "batch"));
      OUTPOST_RETURN_IF_ERROR(
          FromRocks(batch->Delete(Handle(Cf::kRuns), kTimePrefix + RunTimeKey(op.key)), "batch"));
      return FromRocks(batch->DeleteRange(Handle(Cf::kRuns), "out/" + op.key + "/",
                                          "out/" + op.key + "0"),  // '0' follows '/'
                       "batch");
    case Kind::kAppendDown:
      return Status::FailedPrecondition("RocksHubStore does not allocate command numbers");
    case Kind::kPurgeSiteStreams: {
      const std::string from = op.key + std::string(1, '\0');
      const std::string to = op.key + std::string(1, '\1');
      OUTPOST_RETURN_IF_ERROR(FromRocks(batch->DeleteRange(Handle(Cf::kUp), from, to), "batch"));
      return FromRocks(batch->DeleteRange(Handle(Cf::kDown), from, to), "batch");
    }
  }
  return Status::Internal("unknown hub transaction operation");
}

Result<uint64_t> RocksHubStore::StoredRev(HubTxn::Kind kind, const std::string& key) {
  const std::pair<int, std::string> k{static_cast<int>(kind), key};
  if (auto it = revs_.find(k); it != revs_.end()) return it->second;
  // (A key gathered in the group is in revs_ already: this reads the database alone.)
  std::string v;
  rocksdb::Status got;
  if (kind == HubTxn::Kind::kPutSite) {
    got = rocks_.db->Get(rocksdb::ReadOptions(), Handle(Cf::kSites), key, &v);
  } else if (kind == HubTxn::Kind::kPutRun) {
    got = rocks_.db->Get(rocksdb::ReadOptions(), Handle(Cf::kRuns), "run/" + key, &v);
  } else {
    got = rocks_.db->Get(rocksdb::ReadOptions(), Handle(Cf::kMeta), "req/" + key, &v);
  }
  uint64_t rev = 0;
  if (got.ok()) {
    if (kind == HubTxn::Kind::kPutSite) {
      SiteRecord r;
      OUTPOST_RETURN_IF_ERROR(Decode(v, &r).WithContext("site record " + key));
      rev = r.rev;
    } else if (kind == HubTxn::Kind::kPutRun) {
      HubRun r;
      OUTPOST_RETURN_IF_ERROR(DecodeRun(key, v, &r, /*with_tasks=*/false));
      rev = r.rev;
    } else {
      rev = 1;  // a request exists
    }
  } else if (!got.IsNotFound()) {
    return FromRocks(got, "read the revision of " + key);
  }
  revs_[k] = rev;
  return rev;
}

Status RocksHubStore::CheckRevisions(const Txn& txn,
                                     std::map<std::pair<int, std::string>, uint64_t>* out) {
  using Kind = HubTxn::Kind;
  auto& after = *out;  // the revisions this txn leaves
  for (const auto& op : txn.ops()) {
    if (op.kind == Kind::kDeleteSite || op.kind == Kind::kDeleteRun) {
      after[{static_cast<int>(op.kind == Kind::kDeleteSite ? Kind::kPutSite : Kind::kPutRun),
             op.key}] = 0;
      continue;
    }
    if (op.kind != Kind::kPutSite && op.kind != Kind::kPutRun && op.kind != Kind::kPutRequest) {
      continue;
    }
    const std::pair<int, std::string> k{static_cast<int>(op.kind), op.key};
    const uint64_t next = op.kind == Kind::kPutRequest ? 1 : op.rev;
    if (op.expect == HubTxn::kAnyRev) {
      after[k] = next;
      continue;
    }
    uint64_t rev;
    if (auto it = after.find(k); it != after.end()) {
      rev = it->second;
    } else {
      OUTPOST_ASSIGN_OR_RETURN(rev, StoredRev(op.kind, op.key));
    }
    if (rev != op.expect && !txn.unchecked()) {
      return Status::Aborted("the record of " + op.key + " changed since it was read (revision " +
                             std::to_string(rev) + ", expected " + std::to_string(op.expect) +
                             ")");
    }
    after[k] = next;
  }
  return Status::Ok();
}

Status RocksHubStore::Commit(const Txn& txn) {
  if (txn.ops().empty()) return Status::Ok();
  if (write_failed_) {
    // What the failed write left on the disk is unknown: nothing more is written until
    // the store is reopened from what is there.
    return Status::Unavailable("hub store: a write failed; the store must be reopened");
  }
  std::map<std::pair<int, std::string>, uint64_t> revs_after;
  if (check_revisions_) OUTPOST_RETURN_IF_ERROR(CheckRevisions(txn, &revs_after));
  // Gathered behind the txns already waiting, so that they reach the disk in order.
  pending_.batch.SetSavePoint();
  uint64_t audit = audit_head_;
  for (const auto& op : txn.ops()) {
    Status st = AddToBatch(op, &pending_.batch);
    if (!st.ok()) {
      pending_.batch.RollbackToSavePoint().PermitUncheckedError();
      return st.WithContext("build hub write batch");
    }
    if (op.kind == HubTxn::Kind::kAudit) audit = std::max(audit, op.seq);
  }
  pending_.batch.PopSavePoint().PermitUncheckedError();
  for (const auto& op : txn.ops()) NotePending(op);
  ++pending_.txns;
  if (txn.sync_deferred()) ++pending_.deferred;
  for (auto& [k, rev] : revs_after) revs_[k] = rev;
  audit_head_ = audit;
  // A deferred txn waits for SyncDeferred (or a read that would see it); any other is
  // written now, with the group before it (counted as an early write of the group).
  // Unsynced stores (benchmarks, the simulator's planted bug) write every txn at once.
  if (txn.sync_deferred() && sync_) return Status::Ok();
  const bool early = pending_.deferred > 0 && !txn.sync_deferred();
  OUTPOST_RETURN_IF_ERROR(WritePending());
  if (early) ++early_writes_;
  return Status::Ok();
}

void RocksHubStore::NotePending(const HubTxn::Op& op) {
  using Kind = HubTxn::Kind;
  switch (op.kind) {
    case Kind::kPutSite:
    case Kind::kDeleteSite: pending_.sites = true; break;
    case Kind::kPutUp:
    case Kind::kTrimUp: pending_.up = true; break;
    case Kind::kPutDown:
    case Kind::kTrimDown: {
      uint64_t& top = pending_.down[{op.key, op.stream}];
      top = std::max(top, op.seq);
      break;
    }
    case Kind::kPurgeSiteStreams:
      pending_.purged.insert(op.key);
      pending_.up = true;
      break;
    case Kind::kPutRun:
    case Kind::kDeleteRun:
    case Kind::kPutOutput: pending_.runs.insert(op.key); break;
    case Kind::kPutDef:
    case Kind::kDeleteDef: pending_.defs = true; break;
    case Kind::kPutRequest: pending_.meta.insert("req/" + op.key); break;
    case Kind::kPutSetting: pending_.meta.insert("set/" + op.key); break;
    case Kind::kPutArtifact: pending_.meta.insert("art/" + op.key); break;
    case Kind::kAudit: pending_.audit = true; break;
    case Kind::kPutChunk: pending_.blobs = true; break;
    case Kind::kAppendDown: break;  // refused by AddToBatch
  }
}

Status RocksHubStore::WritePending() {
  if (write_failed_) {
    return Status::Unavailable("hub store: a write failed; the store must be reopened");
  }
  if (pending_.txns == 0) return Status::Ok();
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  Status st = TimedWrite(wo, &pending_.batch, "hub store write");
  pending_.Clear();
  if (!st.ok()) {
    // Whatever reached the disk, nothing more is written until the store is reopened:
    // deferred txns were acknowledged to nobody yet, but the core counted them and must
    // not go on as if they were stored (HubCore::sync_failed), and the revisions noted
    // at Commit may not be the stored ones.
    write_failed_ = true;
    return st;
  }
  // Not a failed write: the memtable keeps growing and the next write tries again.
  if (Status sw = SwitchFullMemtables(rocks_.db.get(), rocks_.cfs, switch_at_); !sw.ok()) {
    spdlog::warn("hub.store_memtable_switch_failed error=\"{}\"", sw.message());
  }
  return st;
}

Status RocksHubStore::ReadsPending(bool touched) const {
  if (!touched || pending_.txns == 0) return Status::Ok();
  // The one place a read writes: the store has one owner thread and is never created
  // const, and the write changes when the group reaches the disk, not what reads see.
  auto* self = const_cast<RocksHubStore*>(this);
  OUTPOST_RETURN_IF_ERROR(self->WritePending());
  ++self->early_writes_;
  return Status::Ok();
}

void RocksHubStore::Pending::Clear() {
  batch.Clear();  // keeps its buffer for the next group
  txns = deferred = 0;
  runs.clear();
  meta.clear();
  down.clear();
  purged.clear();
  sites = up = defs = audit = blobs = false;
}

bool RocksHubStore::PendingMeta(std::string_view prefix) const {
  for (const auto& k : pending_.meta) {
    if (k.starts_with(prefix)) return true;
  }
  return false;
}

Status RocksHubStore::TimedWrite(const rocksdb::WriteOptions& wo, rocksdb::WriteBatch* batch,
                                 const char* what) {
  const auto t0 = std::chrono::steady_clock::now();  // the store's latency metric only
  Status st = FromRocks(rocks_.db->Write(wo, batch), what);
  commit_seconds_.Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return st;
}

Status RocksHubStore::SyncDeferred() { return WritePending(); }

namespace {

template <typename T>
Status LoadAll(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, const char* what,
               std::vector<T>* out) {
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cf));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    T v;
    OUTPOST_RETURN_IF_ERROR(Decode(it->value().ToStringView(), &v)
                                .WithContext(std::string(what) + " " + it->key().ToString()));
    out->push_back(std::move(v));
  }
  return FromRocks(it->status(), std::string("read ") + what);
}

}  // namespace

Status RocksHubStore::LoadSites(std::vector<SiteRecord>* out) const {
  OUTPOST_RETURN_IF_ERROR(ReadsPending(pending_.sites));
  return LoadAll(rocks_.db.get(), Handle(Cf::kSites), "site record", out);
}

Status RocksHubStore::LoadDefs(std::vector<WorkflowRecord>* out) const {
  OUTPOST_RETURN_IF_ERROR(ReadsPending(pending_.defs));
  return LoadAll(rocks_.db.get(), Handle(Cf::kDefs), "workflow record", out);
}

Result<std::optional<HubRun>> RocksHubStore::GetRun(const std::string& id) const {
  OUTPOST_RETURN_IF_ERROR(ReadsPending(pending_.runs.contains(id)));
  std::string v;
  auto s = rocks_.db->Get(rocksdb::ReadOptions(), Handle(Cf::kRuns), "run/" + id, &v);
  if (s.IsNotFound()) return std::optional<HubRun>();
  OUTPOST_RETURN_IF_ERROR(FromRocks(s, "read run " + id));
  HubRun r;
  OUTPOST_RETURN_IF_ERROR(DecodeRun(id, v, &r));
  return std::optional<HubRun>(std::move(r));
}

Status RocksHubStore::DecodeRun(const std::string& id, std::string_view stored, HubRun* out,
                                bool with_tasks) const {
  if (stored.empty() || stored[0] != kSplitRunMark) {
    return Decode(stored, out).WithContext("run record " + id);
  }
  if (stored.size() < 5) return Status::Corruption("run record " + id + ": truncated");
  uint32_t ntasks = 0;
  for (size_t i = 1; i < 5; ++i) ntasks = (ntasks << 8) | static_cast<uint8_t>(stored[i]);
  OUTPOST_RETURN_IF_ERROR(Decode(stored.substr(5), out).WithContext("run record " + id));
  out->tasks.clear();
  if (!with_tasks || ntasks == 0) return Status::Ok();
  out->tasks.reserve(std::min<uint32_t>(ntasks, 1 << 16));
  std::unique_ptr<rocksdb::Iterator> it(
      rocks_.db->NewIterator(rocksdb::ReadOptions(), Handle(Cf::kRuns)));
  it->Seek(RowPrefix(id));
  const uint32_t rows = (ntasks + HubTxn::kTaskChunk - 1) / HubTxn::kTaskChunk;
  for (uint32_t row = 0; row < rows; ++row, it->Next()) {
    // Row `row` holds tasks row*kTaskChunk onwards; the last may hold fewer than a chunk.
    const size_t want = std::min<size_t>(HubTxn::kTaskChunk, ntasks - out->tasks.size());
    std::vector<HubTask> chunk;
    if (!it->Valid() || it->key() != RowKey(id, row)) {
      OUTPOST_RETURN_IF_ERROR(FromRocks(it->status(), "read the tasks of run " + id));
      return Status::Corruption("run record " + id + ": task row " + std::to_string(row) +
                                " of " + std::to_string(rows) + " is missing");
    }
    OUTPOST_RETURN_IF_ERROR(Decode(it->value().ToStringView(), &chunk)
                                .WithContext("run " + id + " task row " + std::to_string(row)));
    if (chunk.size() < want) {
      return Status::Corruption("run record " + id + ": task row " + std::to_string(row) +
                                " holds " + std::to_string(chunk.size()) + " tasks, not " +
                                std::to_string(want));
    }
    for (size_t i = 0; i < want; ++i) out->tasks.push_back(std::move(chunk[i]));
  }
  return Status::Ok();
}

Status RocksHubStore::ScanRuns(const std::function<bool(const HubRun&)>& fn) const {
  OUTPOST_RETURN_IF_ERROR(ReadsPending(!pending_.runs.empty()));
  std::unique_ptr<rocksdb::Iterator> it(
      rocks_.db->NewIterator(rocksdb::ReadOptions(), Handle(Cf::kRuns)));
  for (it->Seek("run/"); it->Valid() && it->key().starts_with("run/"); it->Next()) {
    HubRun r;
    OUTPOST_RETURN_IF_ERROR(
        DecodeRun(it->key().ToString().substr(4), it->value().ToStringView(), &r));
    if (!fn(r)) break;
  }
  return FromRocks(it->status(), "scan runs");
}

Status RocksHubStore::ScanSiteRunsNewestFirst(const std::string& site, const std::string& after,
                                              const std::function<bool(const HubRun&)>& fn) const {
  OUTPOST_RETURN_IF_ERROR(ReadsPending(!pending_.runs.empty()));
  // Keys "run/SITE-ULID"; another site whose name starts with SITE- sorts in between and
  // is skipped by name.
  const std::string prefix = "run/" + site + "-";
  std::unique_ptr<rocksdb::Iterator> it(
      rocks_.db->NewIterator(rocksdb::ReadOptions(), Handle(Cf::kRuns)));
  if (after.empty()) {
    it->SeekForPrev(prefix + "\xff");
  } else {
    it->SeekForPrev("run/" + after);
    if (it->Valid() && it->key() == "run/" + after) it->Prev();
  }
  for (; it->Valid() && it->key().starts_with(prefix); it->Prev()) {
    HubRun r;
    OUTPOST_RETURN_IF_ERROR(
        DecodeRun(it->key().ToString().substr(4), it->value().ToStringView(), &r));
    if (r.site != site) continue;
    if (!fn(r)) break;
  }
  return FromRocks(it->status(), "scan the runs of " + site);
}

Status RocksHubStore::IndexRunsByTime() {
  std::string done;
  auto got = rocks_.db->Get(rocksdb::ReadOptions(), Handle(Cf::kMeta), "set/run_time_index", &done);
  if (got.ok()) return Status::Ok();
  if (!got.IsNotFound()) return FromRocks(got, "read the run index's mark");
  rocksdb::WriteBatch batch;
  std::unique_ptr<rocksdb::Iterator> it(
      rocks_.db->NewIterator(rocksdb::ReadOptions(), Handle(Cf::kRuns)));
  for (it->Seek("run/"); it->Valid() && it->key().starts_with("run/"); it->Next()) {
    const std::string id = it->key().ToString().substr(4);
    OUTPOST_RETURN_IF_ERROR(
        FromRocks(batch.Put(Handle(Cf::kRuns), kTimePrefix + RunTimeKey(id), ""), "batch"));
  }
  OUTPOST_RETURN_IF_ERROR(FromRocks(it->status(), "index runs by time"));
  OUTPOST_RETURN_IF_ERROR(
      FromRocks(batch.Put(Handle(Cf::kMeta), "set/run_time_index", "1"), "batch"));
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  return FromRocks(rocks_.db->Write(wo, &batch), "write the run index");
}

Status RocksHubStore::ScanRunsNewestFirst(const std::string& after,
                                          const std::function<bool(const HubRun&)>& fn) const {
  OUTPOST_RETURN_IF_ERROR(ReadsPending(!pending_.runs.empty()));
  std::unique_ptr<rocksdb::Iterator> it(
      rocks_.db->NewIterator(rocksdb::ReadOptions(), Handle(Cf::kRuns)));
  const std::string prefix = kTimePrefix;
  if (after.empty()) {
    it->SeekForPrev(prefix + "\xff");
  } else {
    it->SeekForPrev(prefix + RunTimeKey(after));
    if (it->Valid() && it->key() == prefix + RunTimeKey(after)) it->Prev();
  }
  for (; it->Valid() && it->key().starts_with(prefix); it->Prev()) {
    const std::string_view k = it->key().ToStringView().substr(prefix.size());
    const size_t nul = k.find('\0');
    if (nul == std::string_view::npos) continue;
    const std::string id(k.substr(nul + 1));
    OUTPOST_ASSIGN_OR_RETURN(auto run, GetRun(id));
    if (!run) continue;  // an index entry whose run is gone: skipped
    if (!fn(*run)) break;
  }
  return FromRocks(it->status(), "scan runs by time");
}

Result<std::optional<std::string>> RocksHubStore::GetOutput(const std::string& run,
                                                       const std::string& task) const {
  OUTPOST_RETURN_IF_ERROR(ReadsPending(pending_.runs.contains(run)));
  std::string v;
  auto s = rocks_.db->Get(rocksdb::ReadOptions(), Handle(Cf::kRuns),
                          "out/" + run + "/" + task, &v);
  if (s.IsNotFound()) return std::optional<std::string>();
  OUTPOST_RETURN_IF_ERROR(FromRocks(s, "read output"));
  return std::optional<std::string>(std::move(v));
}

Result<std::optional<RequestRecord>> RocksHubStore::GetRequest(const std::string& id) const {
  OUTPOST_RETURN_IF_ERROR(ReadsPending(pending_.meta.contains("req/" + id)));
  std::string v;
  auto s = rocks_.db->Get(rocksdb::ReadOptions(), Handle(Cf::kMeta), "req/" + id, &v);
  if (s.IsNotFound()) return std::optional<RequestRecord>();
  OUTPOST_RETURN_IF_ERROR(FromRocks(s, "read request"));
  RequestRecord r;
  OUTPOST_RETURN_IF_ERROR(Decode(v, &r).WithContext("request " + id));
  return std::optional<RequestRecord>(std::move(r));
}

Result<std::optional<std::string>> RocksHubStore::GetSetting(const std::string& key) const {
  OUTPOST_RETURN_IF_ERROR(ReadsPending(pending_.meta.contains("set/" + key)));
  std::string v;
  auto s = rocks_.db->Get(rocksdb::ReadOptions(), Handle(Cf::kMeta), "set/" + key, &v);
  if (s.IsNotFound()) return std::optional<std::string>();
  OUTPOST_RETURN_IF_ERROR(FromRocks(s, "read setting " + key));
  return std::optional<std::string>(std::move(v));
}

Status RocksHubStore::ScanSettings(
    const std::string& prefix,
    const std::function<void(const std::string&, const std::string&)>& fn) const {
  OUTPOST_RETURN_IF_ERROR(ReadsPending(PendingMeta("set/" + prefix)));
  std::unique_ptr<rocksdb::Iterator> it(
      rocks_.db->NewIterator(rocksdb::ReadOptions(), Handle(Cf::kMeta)));
  const std::string from = "set/" + prefix;
  for (it->Seek(from); it->Valid() && it->key().starts_with(from); it->Next()) {
    fn(it->key().ToString().substr(4), it->value().ToString());
  }
  return FromRocks(it->status(), "read settings " + prefix);
}

Result<std::optional<std::string>> RocksHubStore::GetChunk(const std::string& digest) const {
  OUTPOST_RETURN_IF_ERROR(ReadsPending(pending_.blobs));
  std::string v;
  auto s = rocks_.db->Get(rocksdb::ReadOptions(), Handle(Cf::kBlobs), digest, &v);
  if (s.IsNotFound()) return std::optional<std::string>();
  OUTPOST_RETURN_IF_ERROR(FromRocks(s, "read artifact chunk " + digest));
  return std::optional<std::string>(std::move(v));
}

Status RocksHubStore::LoadArtifacts(std::vector<ArtifactRecord>* out) const {
  OUTPOST_RETURN_IF_ERROR(ReadsPending(PendingMeta("art/")));
  std::unique_ptr<rocksdb::Iterator> it(
      rocks_.db->NewIterator(rocksdb::ReadOptions(), Handle(Cf::kMeta)));
  for (it->Seek("art/"); it->Valid() && it->key().starts_with("art/"); it->Next()) {
    ArtifactRecord a;
    OUTPOST_RETURN_IF_ERROR(Decode(it->value().ToStringView(), &a)
                                .WithContext("artifact " + it->key().ToString()));
    out->push_back(std::move(a));
  }
  return FromRocks(it->status(), "read artifacts");
}

namespace {

Result<std::vector<LogRecord>> ReadStream(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                          const std::string& site, uint64_t stream,
                                          uint64_t after, size_t max_count, size_t max_bytes,
                                          bool gaps_allowed) {
  std::vector<LogRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cf));
  const std::string prefix = StreamKey(site, stream, 0).substr(0, site.size() + 1 + 8);
  size_t bytes = 0;
  uint64_t expect = after + 1;
  for (it->Seek(StreamKey(site, stream, after + 1));
       it->Valid() && it->key().starts_with(prefix) && out.size() < max_count; it->Next()) {
    const uint64_t seq = DecodeU64(it->key().ToStringView().substr(prefix.size()));
    if (seq != expect && !gaps_allowed) {
      return Status::Corruption("stream of site " + site + " has a gap: expected " +
                                std::to_string(expect) + ", found " + std::to_string(seq));
    }
    if (!out.empty() && bytes + it->value().size() > max_bytes) break;
    bytes += it->value().size();
    out.push_back({seq, it->value().ToString()});
    expect = seq + 1;
  }
  OUTPOST_RETURN_IF_ERROR(FromRocks(it->status(), "read stream of site " + site));
  return out;
}

}  // namespace

Result<std::vector<LogRecord>> RocksHubStore::ReadDown(const std::string& site, uint64_t epoch,
                                                  uint64_t after, size_t max_count,
                                                  size_t max_bytes) const {
  // Entries after `after` written or trimmed since the last group write.
  const auto top = pending_.down.find({site, epoch});
  OUTPOST_RETURN_IF_ERROR(ReadsPending((top != pending_.down.end() && top->second > after) ||
                                       pending_.purged.contains(site)));
  return ReadStream(rocks_.db.get(), Handle(Cf::kDown), site, epoch, after, max_count,
                    max_bytes, false);
}

Result<std::vector<LogRecord>> RocksHubStore::ReadUp(const std::string& site, uint64_t incarnation,
                                                uint64_t after, size_t max_count) const {
  OUTPOST_RETURN_IF_ERROR(ReadsPending(pending_.up));
  // A hub restore may have left a gap (site.events_lost_in_restore in the audit log).
  return ReadStream(rocks_.db.get(), Handle(Cf::kUp), site, incarnation, after, max_count,
                    SIZE_MAX, true);
}

Status RocksHubStore::ReadAudit(size_t limit, std::vector<std::string>* out) const {
  OUTPOST_RETURN_IF_ERROR(ReadsPending(pending_.audit));
  std::unique_ptr<rocksdb::Iterator> it(
      rocks_.db->NewIterator(rocksdb::ReadOptions(), Handle(Cf::kMeta)));
  std::vector<std::string> rev;
  for (it->SeekForPrev(std::string(kAuditPrefix) + std::string(8, '\xff'));
       it->Valid() && it->key().starts_with(kAuditPrefix) && rev.size() < limit; it->Prev()) {
    rev.push_back(it->value().ToString());
  }
  out->assign(rev.rbegin(), rev.rend());
  return FromRocks(it->status(), "read hub audit log");
}

uint64_t RocksHubStore::ApproximateSize() const {
  uint64_t total = 0, v = 0;
  for (auto* h : rocks_.cfs) {
    if (rocks_.db->GetIntProperty(h, "rocksdb.total-sst-files-size", &v)) total += v;
  }
  return total;
}

}  // namespace outpost
