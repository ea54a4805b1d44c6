#include "common/protocol/event_log.h"

#include <sys/statvfs.h>

#include <spdlog/spdlog.h>
#include <rocksdb/write_batch.h>

namespace outpost {
namespace {

constexpr char kHeadKey[] = "head";
constexpr char kAckedKey[] = "acked";
constexpr char kIncarnationKey[] = "incarnation";
constexpr uint64_t kMaxPointTrims = 4096;

}  // namespace

std::string EncodeU64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 7; i >= 0; --i) {
    s[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return s;
}

uint64_t DecodeU64(std::string_view s) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && i < s.size(); ++i) {
    v = (v << 8) | static_cast<uint8_t>(s[i]);
  }
  return v;
}

Result<std::unique_ptr<EventLog>> EventLog::Open(const std::string& path,
                                                 const Options& options) {
  std::unique_ptr<EventLog> log(new EventLog());
  log->path_ = path;
  log->options_ = options;
  OUTPOST_RETURN_IF_ERROR(log->OpenDb());
  return log;
}

Status EventLog::OpenDb() {
  RocksOptions ro;
  ro.env = options_.env;
  ro.write_buffer_bytes = options_.write_buffer_bytes;
  ro.simulated = options_.simulated;
  ro.block_cache_bytes = options_.block_cache_bytes;
  // Memtables switch only in SwitchMemtables, after a write (RocksOptions).
  ro.manual_memtable_switch = true;
  OUTPOST_ASSIGN_OR_RETURN(rocks_, OpenRocks(path_, {"log", "state", "meta"}, ro));
  db_ = rocks_.db.get();
  handles_ = rocks_.cfs;
  sync_ = options_.sync;
  log_ = handles_[1];
  state_ = handles_[2];
  meta_ = handles_[3];

  // A new database gets its incarnation in the same synced write that creates it.
  std::string value;
  auto s = db_->Get(rocksdb::ReadOptions(), meta_, kIncarnationKey, &value);
  if (s.IsNotFound()) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    OUTPOST_RETURN_IF_ERROR(FromRocks(
        db_->Put(wo, meta_, kIncarnationKey, EncodeU64(options_.new_incarnation)),
        "write incarnation"));
  } else {
    OUTPOST_RETURN_IF_ERROR(FromRocks(s, "read incarnation"));
  }
  return LoadMeta();
}

void EventLog::CloseDb() {
  rocks_.Close();
  db_ = nullptr;
  handles_.clear();
}

EventLog::~EventLog() { CloseDb(); }

Status EventLog::LoadMeta() {
  auto read_u64 = [&](const char* key, uint64_t* out) -> Status {
    std::string v;
    auto s = db_->Get(rocksdb::ReadOptions(), meta_, key, &v);
    if (s.IsNotFound()) {
      *out = 0;
      return Status::Ok();
    }
    OUTPOST_RETURN_IF_ERROR(FromRocks(s, key));
    if (v.size() != 8) return Status::Corruption(std::string("meta key ") + key + " is not 8 bytes");
    *out = DecodeU64(v);
    return Status::Ok();
  };
  OUTPOST_RETURN_IF_ERROR(read_u64(kHeadKey, &head_));
  OUTPOST_RETURN_IF_ERROR(read_u64(kAckedKey, &acked_));
  OUTPOST_RETURN_IF_ERROR(read_u64(kIncarnationKey, &incarnation_));
  if (acked_ > head_) {
    return Status::Corruption("acked watermark " + std::to_string(acked_) + " beyond head " +
                              std::to_string(head_));
  }
  return Status::Ok();
}

Status EventLog::CheckOpen() const {
  if (db_ != nullptr) return Status::Ok();
  return Status::IoError("the event log at " + path_ +
                         " is closed: reopening it after a write error failed (it is retried "
                         "with the next write)");
}

Status EventLog::RecoverIfNeeded() {
  if (!needs_resume_) return Status::Ok();
  // A failed WAL write (full disk, I/O error) leaves RocksDB in a background-error state
  // that Resume() does not always clear. Reopening replays the WAL and tells what is
  // really durable: if the failed batch reached the disk after all (say fsync reported an
  // error after the data landed), its events are already in the log, and the retry must
  // skip them rather than append them twice.
  const uint64_t head_before = head_;
  CloseDb();
  Status s = OpenDb();
  if (!s.ok()) return s.WithContext("reopen event log after a write error");
  if (head_ < head_before) {
    return Status::Corruption("event log head went back from " + std::to_string(head_before) +
                              " to " + std::to_string(head_) + " after reopening");
  }
  // Added up, not set: the same batch may fail more than once (its first try landed, the
  // retry of what was left failed too), and the caller retries it whole each time, so
  // everything that landed on any try is skipped.
  const uint64_t landed_now = head_ - head_before;
  already_durable_ += landed_now;
  needs_resume_ = false;
  if (landed_now > 0 && options_.on_logged) {
    // Read them now: an acknowledgement may trim them right after this.
    OUTPOST_ASSIGN_OR_RETURN(auto landed, ReadAfter(head_before, SIZE_MAX, SIZE_MAX));
    std::vector<std::string> entries;
    for (auto& r : landed) entries.push_back(std::move(r.payload));
    options_.on_logged(head_before + 1, entries);
  }
  return Status::Ok();
}

uint64_t EventLog::FreeBytes() const {
  if (options_.env != nullptr) {
    // An Env that knows its free space (the simulator's disks) answers; others do not.
    uint64_t free = UINT64_MAX;
    if (!options_.env->GetFreeSpace(path_, &free).ok()) return UINT64_MAX;
    return free;
  }
  struct statvfs st {};
  if (statvfs(path_.c_str(), &st) != 0) return UINT64_MAX;  // unknown: let RocksDB decide
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

Result<uint64_t> EventLog::Append(const std::vector<std::string>& events,
                                  const std::vector<StateWrite>& state) {
  if (const uint64_t free = FreeBytes(); free < options_.min_free_bytes) {
    return Status::ResourceExhausted("disk full: " + std::to_string(free) +
                                     " bytes free on the event log's filesystem (" + path_ +
                                     "), below the " + std::to_string(options_.min_free_bytes) +
                                     " it keeps in reserve; nothing was written");
  }
  OUTPOST_RETURN_IF_ERROR(RecoverIfNeeded());
  const size_t skip = already_durable_;
  if (skip > events.size()) {
    return Status::Corruption("a retried batch is shorter than what already reached the log");
  }
  rocksdb::WriteBatch batch;
  uint64_t seq = head_;
  for (size_t i = skip; i < events.size(); ++i) {
    ++seq;
    batch.Put(log_, EncodeU64(seq), events[i]);
  }
  for (const auto& w : state) {
    if (w.value) {
      batch.Put(state_, w.key, *w.value);
    } else {
      batch.Delete(state_, w.key);
    }
  }
  if (seq != head_) batch.Put(meta_, kHeadKey, EncodeU64(seq));
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  Status st = FromRocks(db_->Write(wo, &batch), "append to event log");
  if (!st.ok()) {
    needs_resume_ = true;
    return st;
  }
  SwitchMemtables();
  if (options_.on_logged && seq > head_) {
    options_.on_logged(head_ + 1, std::vector<std::string>(events.begin() + static_cast<long>(skip), events.end()));
  }
  already_durable_ = 0;
  head_ = seq;
  return seq;
}

void EventLog::SwitchMemtables() {
  // Not a failed write: the memtable keeps growing and the next write tries again.
  if (Status st = SwitchFullMemtables(db_, handles_, options_.write_buffer_bytes); !st.ok()) {
    spdlog::warn("eventlog.memtable_switch_failed path={} error=\"{}\"", path_, st.message());
  }
}

Result<std::vector<LogRecord>> EventLog::ReadAfter(uint64_t after, size_t max_count,
                                                   size_t max_bytes) const {
  OUTPOST_RETURN_IF_ERROR(CheckOpen());
  std::vector<LogRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), log_));
  size_t bytes = 0;
  if (after < acked_) after = acked_;  // everything up to acked_ is trimmed
  uint64_t expect = after + 1;
  for (it->Seek(EncodeU64(after + 1)); it->Valid() && out.size() < max_count; it->Next()) {
    uint64_t seq = DecodeU64(it->key().ToStringView());
    if (seq != expect) {
      return Status::Corruption("event log gap: expected seq " + std::to_string(expect) +
                                ", found " + std::to_string(seq));
    }
    if (!out.empty() && bytes + it->value().size() > max_bytes) break;
    bytes += it->value().size();
    out.push_back({seq, it->value().ToString()});
    ++expect;
  }
  OUTPOST_RETURN_IF_ERROR(FromRocks(it->status(), "read event log"));
  return out;
}

Status EventLog::AckAndTrim(uint64_t seq) {
  if (seq > head_) {
    return Status::InvalidArgument("ack " + std::to_string(seq) + " beyond head " +
                                   std::to_string(head_));
  }
  if (seq <= acked_) return Status::Ok();  // duplicate or stale ack
  OUTPOST_RETURN_IF_ERROR(RecoverIfNeeded());
  rocksdb::WriteBatch batch;
  batch.Put(meta_, kAckedKey, EncodeU64(seq));
  // Point deletes for the usual few hundred entries: a range tombstone in the memtable is
  // re-fragmented by every iterator RocksDB creates until the next flush, which made each
  // ReadAfter cost as much as the acknowledgements since then. A huge acknowledgement (a
  // bundle's) takes one range.
  if (seq - acked_ <= kMaxPointTrims) {
    for (uint64_t s = acked_ + 1; s <= seq; ++s) batch.Delete(log_, EncodeU64(s));
  } else {
    batch.DeleteRange(log_, EncodeU64(0), EncodeU64(seq + 1));
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  Status st = FromRocks(db_->Write(wo, &batch), "ack event log");
  if (!st.ok()) {
    needs_resume_ = true;
    return st;
  }
  SwitchMemtables();
  acked_ = seq;
  return Status::Ok();
}

Result<std::optional<std::string>> EventLog::GetState(std::string_view key) const {
  OUTPOST_RETURN_IF_ERROR(CheckOpen());
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), state_, rocksdb::Slice(key.data(), key.size()), &v);
  if (s.IsNotFound()) return std::optional<std::string>();
  OUTPOST_RETURN_IF_ERROR(FromRocks(s, "read state"));
  return std::optional<std::string>(std::move(v));
}

Status EventLog::ScanState(std::string_view prefix,
                           const std::function<void(std::string_view, std::string_view)>& fn) const {
  OUTPOST_RETURN_IF_ERROR(CheckOpen());
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), state_));
  rocksdb::Slice p(prefix.data(), prefix.size());
  for (it->Seek(p); it->Valid() && it->key().starts_with(p); it->Next()) {
    fn(it->key().ToStringView(), it->value().ToStringView());
  }
  return FromRocks(it->status(), "scan state");
}

uint64_t EventLog::ApproximateSize() const {
  uint64_t total = 0, v = 0;
  if (db_ == nullptr) return 0;
  for (auto* h : handles_) {
    if (db_->GetIntProperty(h, "rocksdb.total-sst-files-size", &v)) total += v;
  }
  if (db_->GetIntProperty("rocksdb.cur-size-all-mem-tables", &v)) total += v;
  return total;
}

}  // namespace outpost
