// EventLog: a site's durable, gapless, ordered event log on RocksDB, with the
// materialized state that the events produce, written together.
//
// Column families:
//   log    big-endian u64 sequence -> event bytes (gapless; trimmed only after ack)
//   state  caller keys -> materialized state (runs, tasks, output tails)
//   meta   watermarks and identity ("head", "acked", "incarnation", ...)
//
// Append() writes the new events, the state changes they cause, and the new head
// watermark in ONE WriteBatch with the WAL synced, so after a crash either all of a
// change is there or none of it is. AckAndTrim() records the peer's acknowledgement and
// deletes what it covers. The database is opened on an injected rocksdb::Env, so tests
// and the simulator run it in memory (rocksdb::NewMemEnv) or with faults.
//
// Thread-safety: one owner thread. RocksDB itself is thread-safe, but head_/acked_ are not.
#pragma once

#include <rocksdb/db.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/rocks.h"
#include "common/status.h"

namespace outpost {

struct StateWrite {
  std::string key;
  std::optional<std::string> value;  // nullopt deletes the key
};

struct LogRecord {
  uint64_t seq;
  std::string payload;
};

class EventLog {
 public:
  struct Options {
    rocksdb::Env* env = nullptr;     // nullptr: rocksdb::Env::Default()
    bool sync = true;                // fsync the WAL on every Append (never off in production)
    size_t write_buffer_bytes = 1 << 20;  // per column family; small for gateways
    size_t block_cache_bytes = 1 << 20;
    bool simulated = false;               // see RocksOptions
    uint64_t new_incarnation = 0;    // stored when the database is created
    // On the real disk (env == nullptr), an Append is refused with kResourceExhausted
    // ("disk full") while the filesystem has less than this free, before RocksDB is asked:
    // a WAL write that fails on a full disk leaves RocksDB's writer in an error state that
    // some builds assert on at the next write or at close.
    uint64_t min_free_bytes = 4 << 20;
    // Told of every entry as it becomes part of the log: appended, or found on the disk
    // after a failed write was reopened (it had landed). The simulator keeps its copy of
    // each site's log with it; the agent leaves it empty.
    std::function<void(uint64_t first_seq, const std::vector<std::string>& entries)> on_logged;
  };

  static Result<std::unique_ptr<EventLog>> Open(const std::string& path, const Options& options);
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // Appends `events` (sequence numbers head+1, head+2, ...) and applies `state` in one
  // synced WriteBatch. Returns the new head. Events may be empty (state-only change).
  // On failure head() is unchanged and the caller retries later with the same events,
  // optionally followed by more (a full disk returns kResourceExhausted). If the failed
  // write turns out to have reached the disk, the retry appends only what follows it,
  // so no event is ever stored twice.
  Result<uint64_t> Append(const std::vector<std::string>& events,
                          const std::vector<StateWrite>& state);

  // Up to `max_count` records with seq > max(after, acked()), stopping before `max_bytes` is passed
  // (at least one record is returned if any exists).
  Result<std::vector<LogRecord>> ReadAfter(uint64_t after, size_t max_count,
                                           size_t max_bytes) const;

  // Records that the peer has durably applied everything up to `seq` and trims it.
  Status AckAndTrim(uint64_t seq);

  uint64_t head() const { return head_; }
  uint64_t acked() const { return acked_; }
  uint64_t incarnation() const { return incarnation_; }

  Result<std::optional<std::string>> GetState(std::string_view key) const;
  // Calls fn(key, value) for every state key starting with `prefix`, in key order.
  Status ScanState(std::string_view prefix,
                   const std::function<void(std::string_view, std::string_view)>& fn) const;

  // Approximate bytes on disk (SST + WAL) for quotas and reporting.
  uint64_t ApproximateSize() const;
  // Bytes free on the log's filesystem (statvfs), or UINT64_MAX on an injected Env.
  uint64_t FreeBytes() const;
  // Whether an append would find the reserve it keeps (Options::min_free_bytes).
  bool HasRoom() const { return FreeBytes() >= options_.min_free_bytes; }

 private:
  EventLog() = default;
  Status OpenDb();
  void CloseDb();
  Status LoadMeta();
  Status RecoverIfNeeded();
  // An error when the database is closed (a reopen after a write error failed).
  Status CheckOpen() const;

  // After a write: switches the memtables once one is full (RocksOptions::manual_memtable_switch).
  void SwitchMemtables();
  RocksHandles rocks_;
  rocksdb::DB* db_ = nullptr;  // owned by rocks_
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyHandle* log_ = nullptr;
  rocksdb::ColumnFamilyHandle* state_ = nullptr;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  bool sync_ = true;
  uint64_t head_ = 0;
  uint64_t acked_ = 0;
  uint64_t incarnation_ = 0;
  std::string path_;
  Options options_;
  bool needs_resume_ = false;    // a write failed; reopen before the next one
  uint64_t already_durable_ = 0;  // events of the batch being retried found durable on reopens
};

// Big-endian fixed-width encoding, so byte order of keys equals numeric order on every
// architecture.
std::string EncodeU64(uint64_t v);
uint64_t DecodeU64(std::string_view s);

}  // namespace outpost
