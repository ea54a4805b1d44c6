// Opening RocksDB the Outpost way: column families by name, options sized for a small
// device (1 MiB write buffers and block cache by default), on an injected Env, and
// RocksDB statuses turned into Outpost Status values. Used by the site's EventLog and
// the hub's store.
#pragma once

#include <rocksdb/db.h>

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace outpost {

struct RocksOptions {
  rocksdb::Env* env = nullptr;  // nullptr: rocksdb::Env::Default()
  size_t write_buffer_bytes = 1 << 20;
  size_t block_cache_bytes = 1 << 20;
  // Table files kept open. Each Get of a key no table holds still checks the filter of
  // every table whose range covers it, and a table not open is opened first (its footer,
  // properties and index read from disk): too few, and point reads of new keys mostly
  // open files. Each open table costs one file descriptor and a small reader (its index
  // and filter live in the block cache).
  int max_open_files = 64;
  // Level-0 files that start a compaction into level 1 (0: RocksDB's default, 4). Every
  // flush of a store whose keys interleave across its whole range (the hub's copies of a
  // thousand sites' logs) overlaps all of level 1, so each level-0 compaction rewrites
  // level 1 whole: a higher trigger rewrites it less often, for more files to look in on
  // a read (their filters stay in the block cache).
  int l0_compaction_trigger = 0;
  // The caller switches memtables (and so WAL files) itself, with SwitchFullMemtables
  // right after a write: RocksDB's own triggers (a full memtable, the WALs' total size)
  // are set far out of reach. RocksDB 7.8's own switch, inside a write, leaks a column
  // family reference when creating the new WAL fails while two or more memtables are due
  // (DBImpl::ScheduleFlushes leaves its loop early), and Debian's build asserts on that
  // at close: a disk that fills at that moment would abort the process when it reopens
  // its store (the hub's group commit test found it). SwitchFullMemtables switches one
  // column family at a time, and a failure is only logged. The hub's store and the
  // agent's event log both switch this way.
  bool manual_memtable_switch = false;
  // The simulator's databases (simulator/sim_storage.h): their flushes and compactions
  // run between the simulation's steps, not on RocksDB's threads. So nothing may wait for
  // one inside a step: 16 memtables per column family before writes stall (not 2), and
  // no automatic recovery from a background error (RocksDB's recovery thread waits for a
  // flush; the stores reopen the database after a failed write anyway).
  bool simulated = false;
};

// For manual_memtable_switch: if the active memtable of any of `cfs` has reached
// `bytes`, switches them all to new memtables (one new WAL file) and schedules their
// flushes, without waiting. Call it only when every write so far is synced.
Status SwitchFullMemtables(rocksdb::DB* db, const std::vector<rocksdb::ColumnFamilyHandle*>& cfs,
                           size_t bytes);

struct RocksHandles {
  std::unique_ptr<rocksdb::Env> env;  // OpenRocks's wrapper of RocksOptions::env; outlives db
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs;  // in the order of `names`; [0] is default

  RocksHandles() = default;
  RocksHandles(RocksHandles&&) = default;
  // Closes what this holds first: the database must go before the env it runs on.
  RocksHandles& operator=(RocksHandles&& other) noexcept {
    if (this != &other) {
      Close();
      env = std::move(other.env);
      db = std::move(other.db);
      cfs = std::move(other.cfs);
    }
    return *this;
  }
  ~RocksHandles() { Close(); }
  void Close();
};

// The file beside a database's own that names the column families it was completed
// with (see OpenRocks).
inline constexpr char kRocksCreatedFile[] = "OUTPOST-COLUMN-FAMILIES";

// Opens (creating if missing) the database at `path` with the default column family
// followed by `names`.
//
// A column family that a completed database should have is never created again. RocksDB
// reads a damaged record of its MANIFEST as the torn end of the file, so one bad read
// at start-up can hide column families and the tables and logs of later records; a
// plain open with create_missing_column_families then made those column families
// anew, empty, and the site's whole event log was gone (storm seeds 2411 and 2734). So
// the names a database was completed with are kept in kRocksCreatedFile (synced, with a
// checksum), a recorded name missing at open is a Corruption error that changes
// nothing, and RocksDB tracks its WALs in the MANIFEST, so a record lost from its end
// that had retired WALs shows as a missing WAL, not as missing writes. A transient bad
// read passes on the next start. Names not yet recorded (a database created by an
// older release, or whose creation a power cut interrupted, or a column family a new
// release adds) are created when missing.
Result<RocksHandles> OpenRocks(const std::string& path, const std::vector<std::string>& names,
                               const RocksOptions& options);

Status FromRocks(const rocksdb::Status& s, const std::string& what);

}  // namespace outpost
