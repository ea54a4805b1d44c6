#include "common/rocks.h"

#include <spdlog/spdlog.h>

#include <cstdlib>

#include <chrono>

#include <thread>

#include <rocksdb/filter_policy.h>
#include <rocksdb/cache.h>
#include <rocksdb/listener.h>
#include <rocksdb/table.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>

namespace outpost {

namespace {

// Turns off RocksDB's own recovery from a background error (a thread that waits for a
// flush); see RocksOptions::simulated.
class NoAutoRecovery final : public rocksdb::EventListener {
 public:
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status,
                            bool* auto_recovery) override {
    *auto_recovery = false;
  }
};

// CRC-32C (Castagnoli), as RocksDB's log format checksums its records.
uint32_t Crc32c(const char* data, size_t n) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = ~0u;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ static_cast<unsigned char>(data[i])) & 0xff] ^ (c >> 8);
  return ~c;
}

// Whether a log-format record (RocksDB's db/log_format.h: 32 KiB blocks; a header of a
// masked CRC-32C, a 2-byte length and a type, 4 more bytes of log number for the
// recyclable types; the CRC covers the type onward) starts at `at` and lies whole
// within its block and the file. Sets *end past it.
bool RecordAt(const std::string& f, size_t at, size_t* end) {
  constexpr size_t kBlock = 32768;
  const size_t block_end = std::min(f.size(), (at / kBlock + 1) * kBlock);
  if (block_end - at < 7) return false;
  const auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(f[at + i])); };
  const uint32_t type = byte(6);
  if (type == 0 || type > 10) return false;
  const size_t header = type >= 5 && type <= 8 ? 11 : 7;
  const size_t length = byte(4) | (byte(5) << 8);
  if (at + header + length > block_end) return false;
  const uint32_t crc = Crc32c(f.data() + at + 6, header - 6 + length);
  const uint32_t masked = ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
  if (masked != (byte(0) | byte(1) << 8 | byte(2) << 16 | byte(3) << 24)) return false;
  *end = at + header + length;
  return true;
}

// RocksDB reads a MANIFEST record it cannot decode as the torn end of the file, as a
// write cut by a crash leaves it, and drops it and everything after it without an
// error. Damage that is not a torn end (a bad record with whole records after it, or
// with later blocks) is a Corruption here, naming the offset.
rocksdb::Status CheckManifest(const std::string& name, const std::string& f) {
  constexpr size_t kBlock = 32768;
  size_t at = 0;
  while (at < f.size()) {
    const size_t block_end = (at / kBlock + 1) * kBlock;
    if (block_end - at < 7) {  // a block's zero-filled trailer
      at = block_end;
      continue;
    }
    size_t end = 0;
    if (RecordAt(f, at, &end)) {
      at = end;
      continue;
    }
    bool whole_after = block_end < f.size();
    for (size_t q = at + 1; !whole_after && q + 7 <= f.size(); ++q) whole_after = RecordAt(f, q, &end);
    if (!whole_after) return rocksdb::Status::OK();  // a torn end
    return rocksdb::Status::Corruption(
        name + " is damaged at byte " + std::to_string(at) + " of " + std::to_string(f.size()),
        "records follow the damaged one, so it is not a write cut by a crash");
  }
  return rocksdb::Status::OK();
}

// Serves every read of a MANIFEST, of CURRENT and of kRocksCreatedFile while a database
// opens from one copy of the file, read twice and compared: the listing of column
// families and RocksDB's recovery then see the same bytes, and a read that returns
// something else the second time (a passing read error, a failing disk) fails the open
// instead of leading RocksDB to a different view of the database than the one checked.
// A MANIFEST is also checked record by record (CheckManifest).
class StableReadsEnv final : public rocksdb::EnvWrapper {
 public:
  explicit StableReadsEnv(rocksdb::Env* base) : EnvWrapper(base) {}
  const char* Name() const override { return "OutpostStableReads"; }

  // The database is open: later reads go straight to the disk.
  void Opened() {
    std::lock_guard<std::mutex> l(mu_);
    opening_ = false;
    copies_.clear();
  }

  rocksdb::Status NewSequentialFile(const std::string& f, std::unique_ptr<rocksdb::SequentialFile>* r,
                                    const rocksdb::EnvOptions& o) override {
    std::lock_guard<std::mutex> l(mu_);
    if (!opening_ || !Guarded(f)) return target()->NewSequentialFile(f, r, o);
    auto it = copies_.find(f);
    if (it == copies_.end()) {
      std::string first, second;
      rocksdb::Status s = ReadWhole(f, o, &first);
      if (s.ok()) s = ReadWhole(f, o, &second);
      if (!s.ok()) return s;
      if (first != second) {
        return rocksdb::Status::Corruption("two reads of " + f + " returned different bytes",
                                           "a passing read error or a failing disk");
      }
      if (f.find("MANIFEST-") != std::string::npos) {
        s = CheckManifest(f, first);
        if (!s.ok()) return s;
      }
      it = copies_.emplace(f, std::move(first)).first;
    }
    r->reset(new Copy(it->second));
    return rocksdb::Status::OK();
  }
  rocksdb::Status NewWritableFile(const std::string& f, std::unique_ptr<rocksdb::WritableFile>* r,
                                  const rocksdb::EnvOptions& o) override {
    Forget(f);
    return target()->NewWritableFile(f, r, o);
  }
  rocksdb::Status DeleteFile(const std::string& f) override {
    Forget(f);
    return target()->DeleteFile(f);
  }
  rocksdb::Status RenameFile(const std::string& src, const std::string& dst) override {
    Forget(src);
    Forget(dst);
    return target()->RenameFile(src, dst);
  }

 private:
  class Copy final : public rocksdb::SequentialFile {
   public:
    explicit Copy(std::string bytes) : bytes_(std::move(bytes)) {}
    rocksdb::Status Read(size_t n, rocksdb::Slice* result, char* scratch) override {
      n = std::min(n, bytes_.size() - at_);
      std::copy(bytes_.data() + at_, bytes_.data() + at_ + n, scratch);
      *result = rocksdb::Slice(scratch, n);
      at_ += n;
      return rocksdb::Status::OK();
    }
    rocksdb::Status Skip(uint64_t n) override {
      at_ += static_cast<size_t>(std::min<uint64_t>(n, bytes_.size() - at_));
      return rocksdb::Status::OK();
    }

   private:
    std::string bytes_;
    size_t at_ = 0;
  };

  static bool Guarded(const std::string& f) {
    const size_t slash = f.rfind('/');
    const std::string base = slash == std::string::npos ? f : f.substr(slash + 1);
    return base == "CURRENT" || base == kRocksCreatedFile || base.rfind("MANIFEST-", 0) == 0;
  }
  rocksdb::Status ReadWhole(const std::string& f, const rocksdb::EnvOptions& o, std::string* out) {
    std::unique_ptr<rocksdb::SequentialFile> file;
    rocksdb::Status s = target()->NewSequentialFile(f, &file, o);
    if (!s.ok()) return s;
    std::string buf(1 << 16, '\0');
    for (;;) {
      rocksdb::Slice got;
      s = file->Read(buf.size(), &got, buf.data());
      if (!s.ok()) return s;
      if (got.empty()) return rocksdb::Status::OK();
      out->append(got.data(), got.size());
    }
  }
  void Forget(const std::string& f) {
    std::lock_guard<std::mutex> l(mu_);
    copies_.erase(f);
  }

  std::mutex mu_;
  bool opening_ = true;
  std::map<std::string, std::string> copies_;
};

}  // namespace

Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::Ok();
  if (s.IsNoSpace()) return Status::ResourceExhausted(what + ": " + s.ToString());
  if (s.IsCorruption()) return Status::Corruption(what + ": " + s.ToString());
  return Status::IoError(what + ": " + s.ToString());
}

void RocksHandles::Close() {
  if (!db) return;
  for (auto* h : cfs) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  cfs.clear();
  db->Close().PermitUncheckedError();
  db.reset();
  env.reset();
}

namespace {

constexpr char kCreatedHeader[] = "outpost-column-families 1";

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string ChecksumLine(const std::string& body) {
  char sum[32];
  snprintf(sum, sizeof sum, "fnv1a %016llx\n", static_cast<unsigned long long>(Fnv1a(body)));
  return sum;
}

std::string EncodeCreated(const std::vector<std::string>& names) {
  std::string body = std::string(kCreatedHeader) + "\n";
  for (const auto& n : names) body += n + "\n";
  return body + ChecksumLine(body);
}

// The names recorded beside the database at `path` (none when the file is absent).
Status ReadCreated(rocksdb::Env* env, const std::string& path, std::set<std::string>* names) {
  const std::string file = path + "/" + kRocksCreatedFile;
  if (env->FileExists(file).IsNotFound()) return Status::Ok();
  std::string text;
  OUTPOST_RETURN_IF_ERROR(FromRocks(rocksdb::ReadFileToString(env, file, &text), "read " + file));
  // The body is every line but the last, which is its checksum.
  const size_t last = text.size() >= 2 ? text.rfind('\n', text.size() - 2) : std::string::npos;
  const std::string body = last == std::string::npos ? "" : text.substr(0, last + 1);
  const std::string header = std::string(kCreatedHeader) + "\n";
  if (body.rfind(header, 0) != 0 || text != body + ChecksumLine(body)) {
    return Status::Corruption(file + " is damaged (or a read of it was): its checksum does not "
                              "match; nothing was changed (a passing read error clears on the next "
                              "start)");
  }
  for (size_t at = header.size(); at < body.size();) {
    const size_t nl = body.find('\n', at);
    names->insert(body.substr(at, nl - at));
    at = nl + 1;
  }
  return Status::Ok();
}

Status WriteCreated(rocksdb::Env* env, const std::string& path, const std::vector<std::string>& names) {
  const std::string file = path + "/" + kRocksCreatedFile;
  const std::string tmp = file + ".tmp";
  std::unique_ptr<rocksdb::WritableFile> f;
  const std::string what = "record the column families of " + path;
  OUTPOST_RETURN_IF_ERROR(FromRocks(env->NewWritableFile(tmp, &f, rocksdb::EnvOptions()), what));
  OUTPOST_RETURN_IF_ERROR(FromRocks(f->Append(EncodeCreated(names)), what));
  OUTPOST_RETURN_IF_ERROR(FromRocks(f->Sync(), what));
  OUTPOST_RETURN_IF_ERROR(FromRocks(f->Close(), what));
  OUTPOST_RETURN_IF_ERROR(FromRocks(env->RenameFile(tmp, file), what));
  std::unique_ptr<rocksdb::Directory> dir;
  OUTPOST_RETURN_IF_ERROR(FromRocks(env->NewDirectory(path, &dir), what));
  return FromRocks(dir->Fsync(), what);
}

// A benchmark's slow disk: every sync of a file RocksDB writes takes `delay_us` longer
// ($OUTPOST_BENCH_FSYNC_DELAY_US, docs/performance.md), as on SD cards and eMMC where an
// fsync takes milliseconds. Never set in production; the open logs a warning when it is.
class SlowSyncEnv final : public rocksdb::EnvWrapper {
 public:
  SlowSyncEnv(rocksdb::Env* base, int64_t delay_us) : EnvWrapper(base), delay_us_(delay_us) {}
  const char* Name() const override { return "OutpostBenchSlowSync"; }
  rocksdb::Status NewWritableFile(const std::string& f, std::unique_ptr<rocksdb::WritableFile>* r,
                                  const rocksdb::EnvOptions& o) override {
    return Wrap(target()->NewWritableFile(f, r, o), r);
  }
  rocksdb::Status ReopenWritableFile(const std::string& f,
                                     std::unique_ptr<rocksdb::WritableFile>* r,
                                     const rocksdb::EnvOptions& o) override {
    return Wrap(target()->ReopenWritableFile(f, r, o), r);
  }
  rocksdb::Status ReuseWritableFile(const std::string& f, const std::string& old,
                                    std::unique_ptr<rocksdb::WritableFile>* r,
                                    const rocksdb::EnvOptions& o) override {
    return Wrap(target()->ReuseWritableFile(f, old, r, o), r);
  }

 private:
  class File final : public rocksdb::WritableFileWrapper {
   public:
    File(std::unique_ptr<rocksdb::WritableFile> f, int64_t us)
        : WritableFileWrapper(f.get()), own_(std::move(f)), us_(us) {}
    rocksdb::Status Sync() override { return Slow(), WritableFileWrapper::Sync(); }
    rocksdb::Status Fsync() override { return Slow(), WritableFileWrapper::Fsync(); }

   private:
    void Slow() const { std::this_thread::sleep_for(std::chrono::microseconds(us_)); }
    std::unique_ptr<rocksdb::WritableFile> own_;
    int64_t us_;
  };
  rocksdb::Status Wrap(rocksdb::Status s, std::unique_ptr<rocksdb::WritableFile>* r) const {
    if (s.ok() && *r) *r = std::make_unique<File>(std::move(*r), delay_us_);
    return s;
  }
  int64_t delay_us_;
};

// The real disk's env, slowed if the benchmark switch asks for it (one per process).
rocksdb::Env* DiskEnv() {
  static rocksdb::Env* env = [] {
    const char* v = getenv("OUTPOST_BENCH_FSYNC_DELAY_US");
    const int64_t us = v ? std::clamp<int64_t>(std::strtoll(v, nullptr, 10), 0, 1'000'000) : 0;
    if (us == 0) return rocksdb::Env::Default();
    spdlog::warn("rocks.slow_sync_emulated delay_us={} (OUTPOST_BENCH_FSYNC_DELAY_US: a "
                 "benchmark setting, never for production)",
                 us);
    return static_cast<rocksdb::Env*>(new SlowSyncEnv(rocksdb::Env::Default(), us));
  }();
  return env;
}

}  // namespace

Status SwitchFullMemtables(rocksdb::DB* db, const std::vector<rocksdb::ColumnFamilyHandle*>& cfs,
                           size_t bytes) {
  bool full = false;
  for (auto* cf : cfs) {
    uint64_t size = 0;
    if (db->GetIntProperty(cf, "rocksdb.cur-size-active-mem-table", &size) && size >= bytes) {
      full = true;
      break;
    }
  }
  if (!full) return Status::Ok();
  rocksdb::FlushOptions fo;
  fo.wait = false;
  fo.allow_write_stall = true;
  return FromRocks(db->Flush(fo, cfs), "switch memtables");
}

Result<RocksHandles> OpenRocks(const std::string& path, const std::vector<std::string>& names,
                               const RocksOptions& options) {
  rocksdb::Options db_opts;
  db_opts.create_if_missing = true;
  // Never: see kRocksCreatedFile. Missing column families are created one by one below.
  db_opts.create_missing_column_families = false;
  db_opts.track_and_verify_wals_in_manifest = true;
  auto stable = std::make_unique<StableReadsEnv>(options.env ? options.env : DiskEnv());
  db_opts.env = stable.get();
  db_opts.max_open_files = options.max_open_files;
  db_opts.keep_log_file_num = 2;
  db_opts.max_background_jobs = 1;
  db_opts.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  db_opts.max_total_wal_size = 8 << 20;
  // Opening loads table handlers on this many threads (RocksDB's default starts 16 per
  // column family on every open): our databases are small and a gateway has few cores.
  db_opts.max_file_opening_threads = 1;
  // Every write Outpost acknowledges is synced, so at recovery only an incomplete record at
  // the end of a WAL (a write cut by a crash) may be dropped. RocksDB's default
  // (point-in-time recovery) also treats a damaged record in the middle as the end of
  // the log and silently drops every synced write after it: the simulator found a single
  // bad read at start-up losing 28 acknowledged events that way. Here the open fails
  // with a corruption error instead, naming the file; a transient bad read passes on the
  // next start.
  db_opts.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  if (options.simulated) db_opts.listeners.push_back(std::make_shared<NoAutoRecovery>());

  rocksdb::ColumnFamilyOptions cf_opts;
  cf_opts.write_buffer_size = options.write_buffer_bytes;
  if (options.manual_memtable_switch) {
    // SwitchFullMemtables switches at write_buffer_bytes; RocksDB's own limits are set
    // far above it (a backstop only: 64 times, between 16 and 512 MB, so the agent's 1 MB
    // memtables get 64 MB and the hub's 32 MB get 512 MB), with arena blocks sized for the
    // real memtables.
    cf_opts.write_buffer_size =
        std::clamp<size_t>(options.write_buffer_bytes * 64, 16 << 20, 512 << 20);
    cf_opts.arena_block_size = std::clamp<size_t>(options.write_buffer_bytes / 8, 4096, 1 << 20);
    db_opts.max_total_wal_size = uint64_t{1} << 30;
    // RocksDB preallocates each WAL for 1.1 times write_buffer_size: up to 563 MB here.
    db_opts.allow_fallocate = false;
  }
  cf_opts.max_write_buffer_number = options.simulated ? 16 : 2;
  if (options.l0_compaction_trigger > 0) {
    // Writes slow down at 4 and stop at 6 times the trigger (32 and 48 files for 8),
    // never sooner than RocksDB's defaults (20 and 36).
    cf_opts.level0_file_num_compaction_trigger = options.l0_compaction_trigger;
    cf_opts.level0_slowdown_writes_trigger = std::max(20, options.l0_compaction_trigger * 4);
    cf_opts.level0_stop_writes_trigger = std::max(36, options.l0_compaction_trigger * 6);
  }
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  // Point reads of keys that are not there are common (the hub looks up every run a site
  // reports, most of them new): a Bloom filter answers those without reading blocks.
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  // Index and filter blocks live in the block cache, so memory stays within it however
  // large the store grows (held outside it, they grew with every table file: the hub's
  // memory rose with its store).
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  cf_opts.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  rocksdb::Env* env = db_opts.env;
  std::set<std::string> recorded, existing;
  const bool exists = env->FileExists(path + "/CURRENT").ok();
  if (exists) {
    OUTPOST_RETURN_IF_ERROR(ReadCreated(env, path, &recorded));
    std::vector<std::string> listed;
    OUTPOST_RETURN_IF_ERROR(
        FromRocks(rocksdb::DB::ListColumnFamilies(db_opts, path, &listed), "open database " + path));
    existing.insert(listed.begin(), listed.end());
    std::string missing;
    for (const auto& n : recorded) {
      if (!existing.count(n)) missing += (missing.empty() ? "" : ", ") + n;
    }
    if (!missing.empty()) {
      return Status::Corruption("open database " + path + ": column families " + missing +
                                " of this database are missing from its MANIFEST: the MANIFEST is "
                                "damaged or was read wrongly; nothing was changed (a passing read "
                                "error clears on the next start)");
    }
  }

  // Open what exists, then create what is missing: an open that reads the MANIFEST
  // differently from the listing above fails rather than creating anything.
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {{rocksdb::kDefaultColumnFamilyName, cf_opts}};
  std::vector<int> slot = {0};  // cfs[i] is handle slot[i] of the result
  for (size_t i = 0; i < names.size(); ++i) {
    if (existing.count(names[i])) {
      cfs.emplace_back(names[i], cf_opts);
      slot.push_back(static_cast<int>(i + 1));
    }
  }
  RocksHandles h;
  rocksdb::DB* raw = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> opened;
  rocksdb::Status st = rocksdb::DB::Open(db_opts, path, cfs, &opened, &raw);
  if (st.IsIOError() && st.ToString().find("lock") != std::string::npos) {
    // Another process has this database open (RocksDB's LOCK file is held).
    return Status::FailedPrecondition("the database " + path +
                                      " is in use by another process (is another daemon "
                                      "running with the same data directory?)");
  }
  if (st.IsInvalidArgument() && exists) {
    // A column family listed a moment ago is not there, or one not listed is: the two
    // reads of the MANIFEST disagree.
    return Status::Corruption("open database " + path + ": " + st.ToString() +
                              " (two reads of its MANIFEST disagree; nothing was changed)");
  }
  OUTPOST_RETURN_IF_ERROR(FromRocks(st, "open database " + path));
  h.env = std::move(stable);
  h.db.reset(raw);
  h.cfs.assign(names.size() + 1, nullptr);
  for (size_t i = 0; i < opened.size(); ++i) h.cfs[slot[i]] = opened[i];
  for (size_t i = 0; i < names.size(); ++i) {
    if (h.cfs[i + 1]) continue;
    OUTPOST_RETURN_IF_ERROR(FromRocks(h.db->CreateColumnFamily(cf_opts, names[i], &h.cfs[i + 1]),
                                      "create column family " + names[i] + " in " + path));
  }
  bool complete = true;
  for (const auto& n : names) complete = complete && recorded.count(n);
  if (!complete) {
    std::set<std::string> all = recorded;
    all.insert(names.begin(), names.end());
    OUTPOST_RETURN_IF_ERROR(WriteCreated(env, path, {all.begin(), all.end()}));
  }
  static_cast<StableReadsEnv*>(h.env.get())->Opened();
  return h;
}

}  // namespace outpost
