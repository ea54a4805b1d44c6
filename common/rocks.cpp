#include "common/rocks.h"

#include <rocksdb/cache.h>
#include <rocksdb/listener.h>
#include <rocksdb/table.h>

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
}

Result<RocksHandles> OpenRocks(const std::string& path, const std::vector<std::string>& names,
                               const RocksOptions& options) {
  rocksdb::Options db_opts;
  db_opts.create_if_missing = true;
  db_opts.create_missing_column_families = true;
  db_opts.env = options.env ? options.env : rocksdb::Env::Default();
  db_opts.max_open_files = 64;
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
  cf_opts.max_write_buffer_number = options.simulated ? 16 : 2;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  cf_opts.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {{rocksdb::kDefaultColumnFamilyName, cf_opts}};
  for (const auto& n : names) cfs.emplace_back(n, cf_opts);
  RocksHandles h;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status st = rocksdb::DB::Open(db_opts, path, cfs, &h.cfs, &raw);
  if (st.IsIOError() && st.ToString().find("lock") != std::string::npos) {
    // Another process has this database open (RocksDB's LOCK file is held).
    return Status::FailedPrecondition("the database " + path +
                                      " is in use by another process (is another daemon "
                                      "running with the same data directory?)");
  }
  OUTPOST_RETURN_IF_ERROR(FromRocks(st, "open database " + path));
  h.db.reset(raw);
  return h;
}

}  // namespace outpost
