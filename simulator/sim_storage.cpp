#include "simulator/sim_storage.h"

#include <algorithm>
#include <vector>

namespace outpost::sim {

namespace {

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t HashString(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

bool Under(const std::string& path, const std::string& dir) {
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}

}  // namespace

// A file being written: every append and sync goes through the disk's rules first.
class SimStorage::File final : public rocksdb::WritableFile {
 public:
  File(SimStorage* st, std::string path, std::unique_ptr<rocksdb::WritableFile> f)
      : st_(st), path_(std::move(path)), f_(std::move(f)) {}
  rocksdb::Status Append(const rocksdb::Slice& data) override {
    bool lands = true;
    rocksdb::Status s = st_->Admit(path_, Op::kAppend, &lands);
    if (!s.ok()) return s;
    s = f_->Append(data);
    if (s.ok()) st_->Appended(path_, data.size());
    return s;
  }
  rocksdb::Status Append(const rocksdb::Slice& data,
                         const rocksdb::DataVerificationInfo&) override {
    return Append(data);
  }
  rocksdb::Status Truncate(uint64_t size) override {
    rocksdb::Status s = f_->Truncate(size);
    if (s.ok()) {
      std::lock_guard<std::mutex> l(st_->mu_);
      auto& fs = st_->files_[path_];
      fs.size = size;
      fs.synced = std::min(fs.synced, size);
    }
    return s;
  }
  rocksdb::Status Close() override { return f_->Close(); }
  rocksdb::Status Flush() override { return f_->Flush(); }
  rocksdb::Status Sync() override {
    // A failed sync may or may not have put the data on the disk (`lands`).
    bool lands = true;
    rocksdb::Status s = st_->Admit(path_, Op::kSync, &lands);
    if (lands) st_->Synced(path_);
    if (!s.ok()) return s;
    return f_->Sync();
  }
  rocksdb::Status Fsync() override { return Sync(); }
  bool IsSyncThreadSafe() const override { return f_->IsSyncThreadSafe(); }
  uint64_t GetFileSize() override { return f_->GetFileSize(); }
  rocksdb::Status RangeSync(uint64_t, uint64_t) override { return rocksdb::Status::OK(); }

 private:
  SimStorage* st_;
  std::string path_;
  std::unique_ptr<rocksdb::WritableFile> f_;
};

// A file read front to back (the WAL and MANIFEST at recovery): a read may come back
// with one byte flipped.
class SimStorage::Reader final : public rocksdb::SequentialFile {
 public:
  Reader(SimStorage* st, std::string path, std::unique_ptr<rocksdb::SequentialFile> f)
      : st_(st), path_(std::move(path)), f_(std::move(f)) {}
  rocksdb::Status Read(size_t n, rocksdb::Slice* result, char* scratch) override {
    rocksdb::Status s = f_->Read(n, result, scratch);
    if (!s.ok() || result->empty()) return s;
    size_t at = 0;
    if (!st_->CorruptRead(path_, result->size(), &at)) return s;
    if (result->data() != scratch) {
      std::copy(result->data(), result->data() + result->size(), scratch);
      *result = rocksdb::Slice(scratch, result->size());
    }
    scratch[at] = static_cast<char>(scratch[at] ^ 0x20);
    return s;
  }
  rocksdb::Status Skip(uint64_t n) override { return f_->Skip(n); }

 private:
  SimStorage* st_;
  std::string path_;
  std::unique_ptr<rocksdb::SequentialFile> f_;
};

SimStorage::SimStorage(uint64_t seed)
    : EnvWrapper(std::unique_ptr<rocksdb::Env>(rocksdb::NewMemEnv(rocksdb::Env::Default()))),
      seed_(seed) {}

SimStorage::~SimStorage() = default;

std::string SimStorage::DiskOf(const std::string& path) {
  size_t end = path.find('/', 1);
  if (end != std::string::npos && path.compare(0, end, "/sites") == 0) end = path.find('/', end + 1);
  return end == std::string::npos ? path : path.substr(0, end);
}

bool SimStorage::IsWal(const std::string& path) {
  return path.size() > 4 && path.compare(path.size() - 4, 4, ".log") == 0;
}

bool SimStorage::Draw(const std::string& disk, uint64_t n, uint64_t salt, double p) const {
  if (p <= 0) return false;
  const uint64_t r = Mix(seed_ ^ Mix(HashString(disk) ^ Mix(n * 31 + salt)));
  return static_cast<double>(r >> 11) / 9007199254740992.0 < p;
}

rocksdb::Status SimStorage::Admit(const std::string& path, Op op, bool* lands) {
  std::lock_guard<std::mutex> l(mu_);
  Disk& d = disks_[DiskOf(path)];
  *lands = true;
  if (d.dead) {
    *lands = false;
    return rocksdb::Status::IOError("simulated crash: the process is gone", path);
  }
  if (op == Op::kAppend && d.full) {
    ++counters_.full_refusals;
    return rocksdb::Status::NoSpace("simulated full disk", path);
  }
  if (!IsWal(path)) return rocksdb::Status::OK();
  const uint64_t n = ++d.wal_ops;
  if (d.countdown > 0 && --d.countdown == 0) {
    // The crash point: this write never happens, nor does anything after it.
    d.dead = d.crashed = true;
    ++counters_.crash_points;
    fired_.fetch_add(1, std::memory_order_relaxed);
    *lands = false;
    return rocksdb::Status::IOError("simulated crash point", path);
  }
  if (op == Op::kAppend && Draw(DiskOf(path), n, 1, d.faults.write_error)) {
    ++counters_.write_errors;
    return rocksdb::Status::IOError("simulated write error", path);
  }
  if (op == Op::kSync && Draw(DiskOf(path), n, 2, d.faults.sync_error)) {
    ++counters_.sync_errors;
    *lands = Draw(DiskOf(path), n, 3, 0.5);
    return rocksdb::Status::IOError("simulated fsync error", path);
  }
  return rocksdb::Status::OK();
}

bool SimStorage::CorruptRead(const std::string& path, size_t n, size_t* at) {
  std::lock_guard<std::mutex> l(mu_);
  const std::string disk = DiskOf(path);
  Disk& d = disks_[disk];
  const uint64_t k = ++d.reads;
  if (!Draw(disk, k, 4, d.faults.corrupt_read)) return false;
  ++counters_.corrupt_reads;
  *at = static_cast<size_t>(Mix(seed_ ^ k) % n);
  return true;
}

rocksdb::Status SimStorage::RefuseIfDead(const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  if (disks_[DiskOf(path)].dead) return rocksdb::Status::IOError("simulated crash: the process is gone", path);
  return rocksdb::Status::OK();
}

void SimStorage::Appended(const std::string& path, uint64_t n) {
  std::lock_guard<std::mutex> l(mu_);
  files_[path].size += n;
}

void SimStorage::Synced(const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  auto& fs = files_[path];
  fs.synced = fs.size;
}

rocksdb::Status SimStorage::NewWritableFile(const std::string& f,
                                            std::unique_ptr<rocksdb::WritableFile>* r,
                                            const rocksdb::EnvOptions& o) {
  if (auto dead = RefuseIfDead(f); !dead.ok()) return dead;
  std::unique_ptr<rocksdb::WritableFile> inner;
  rocksdb::Status s = target()->NewWritableFile(f, &inner, o);
  if (!s.ok()) return s;
  {
    std::lock_guard<std::mutex> l(mu_);
    files_[f] = FileState{};
  }
  r->reset(new File(this, f, std::move(inner)));
  return s;
}

rocksdb::Status SimStorage::ReopenWritableFile(const std::string& f,
                                               std::unique_ptr<rocksdb::WritableFile>* r,
                                               const rocksdb::EnvOptions& o) {
  std::unique_ptr<rocksdb::WritableFile> inner;
  rocksdb::Status s = target()->ReopenWritableFile(f, &inner, o);
  if (!s.ok()) return s;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto& fs = files_[f];
    fs.size = inner->GetFileSize();
    fs.synced = std::min(fs.synced, fs.size);
  }
  r->reset(new File(this, f, std::move(inner)));
  return s;
}

rocksdb::Status SimStorage::ReuseWritableFile(const std::string& f, const std::string& old,
                                              std::unique_ptr<rocksdb::WritableFile>* r,
                                              const rocksdb::EnvOptions& o) {
  rocksdb::Status s = RenameFile(old, f);
  if (!s.ok()) return s;
  return NewWritableFile(f, r, o);
}

rocksdb::Status SimStorage::NewSequentialFile(const std::string& f,
                                              std::unique_ptr<rocksdb::SequentialFile>* r,
                                              const rocksdb::EnvOptions& o) {
  std::unique_ptr<rocksdb::SequentialFile> inner;
  rocksdb::Status s = target()->NewSequentialFile(f, &inner, o);
  if (!s.ok()) return s;
  r->reset(new Reader(this, f, std::move(inner)));
  return s;
}

rocksdb::Status SimStorage::DeleteFile(const std::string& f) {
  if (auto dead = RefuseIfDead(f); !dead.ok()) return dead;
  rocksdb::Status s = target()->DeleteFile(f);
  std::lock_guard<std::mutex> l(mu_);
  files_.erase(f);
  return s;
}

rocksdb::Status SimStorage::RenameFile(const std::string& src, const std::string& dst) {
  if (auto dead = RefuseIfDead(src); !dead.ok()) return dead;
  rocksdb::Status s = target()->RenameFile(src, dst);
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> l(mu_);
  auto it = files_.find(src);
  if (it != files_.end()) {
    files_[dst] = it->second;
    files_.erase(it);
  }
  return s;
}

rocksdb::Status SimStorage::LinkFile(const std::string& src, const std::string& dst) {
  rocksdb::Status s = target()->LinkFile(src, dst);
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> l(mu_);
  if (auto it = files_.find(src); it != files_.end()) files_[dst] = it->second;
  return s;
}

rocksdb::Status SimStorage::Truncate(const std::string& f, size_t size) {
  rocksdb::Status s = target()->Truncate(f, size);
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> l(mu_);
  auto& fs = files_[f];
  fs.size = size;
  fs.synced = std::min<uint64_t>(fs.synced, size);
  return s;
}

rocksdb::Status SimStorage::GetFreeSpace(const std::string& path, uint64_t* free) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = disks_.find(DiskOf(path));
  *free = it != disks_.end() && it->second.full ? 0 : (uint64_t{1} << 40);
  return rocksdb::Status::OK();
}

// ---------------------------------------------------------------------------------------
// Control.

void SimStorage::SetFaults(const std::string& dir, const StorageFaults& f) {
  std::lock_guard<std::mutex> l(mu_);
  disks_[dir].faults = f;
}

void SimStorage::SetFull(const std::string& dir, bool full) {
  std::lock_guard<std::mutex> l(mu_);
  disks_[dir].full = full;
}

bool SimStorage::full(const std::string& dir) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = disks_.find(dir);
  return it != disks_.end() && it->second.full;
}

void SimStorage::ArmCrash(const std::string& dir, uint64_t k) {
  std::lock_guard<std::mutex> l(mu_);
  disks_[dir].countdown = std::max<uint64_t>(k, 1);
}

void SimStorage::Disarm(const std::string& dir) {
  std::lock_guard<std::mutex> l(mu_);
  disks_[dir].countdown = 0;
}

bool SimStorage::crashed(const std::string& dir) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = disks_.find(dir);
  return it != disks_.end() && it->second.crashed;
}

void SimStorage::Kill(const std::string& dir) {
  std::lock_guard<std::mutex> l(mu_);
  disks_[dir].dead = true;
}

void SimStorage::Restart(const std::string& dir) {
  std::lock_guard<std::mutex> l(mu_);
  Disk& d = disks_[dir];
  d.dead = d.crashed = false;
  d.countdown = 0;
}

rocksdb::Status SimStorage::ReadAll(const std::string& path, std::string* out) {
  std::unique_ptr<rocksdb::SequentialFile> f;
  rocksdb::Status s = target()->NewSequentialFile(path, &f, rocksdb::EnvOptions());
  if (!s.ok()) return s;
  out->clear();
  std::vector<char> buf(1 << 16);
  for (;;) {
    rocksdb::Slice got;
    s = f->Read(buf.size(), &got, buf.data());
    if (!s.ok()) return s;
    if (got.empty()) return s;
    out->append(got.data(), got.size());
  }
}

rocksdb::Status SimStorage::Rewrite(const std::string& path, const std::string& content) {
  std::unique_ptr<rocksdb::WritableFile> f;
  rocksdb::Status s = target()->NewWritableFile(path, &f, rocksdb::EnvOptions());
  if (!s.ok()) return s;
  if (!content.empty()) s = f->Append(content);
  if (s.ok()) s = f->Close();
  return s;
}

void SimStorage::PowerCut(const std::string& dir) {
  std::vector<std::pair<std::string, FileState>> victims;
  uint64_t cut_n = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    ++counters_.power_cuts;
    cut_n = counters_.power_cuts;
    for (auto& [path, fs] : files_) {
      if (Under(path, dir) && fs.size > fs.synced) victims.emplace_back(path, fs);
    }
  }
  for (auto& [path, fs] : victims) {
    std::string content;
    if (!ReadAll(path, &content).ok()) continue;
    // The torn tail: a part of the unsynced bytes survives, none of it half the time.
    const uint64_t unsynced = std::min<uint64_t>(content.size(), fs.size) - std::min<uint64_t>(content.size(), fs.synced);
    const uint64_t r = Mix(seed_ ^ HashString(path) ^ Mix(cut_n));
    const uint64_t torn = (r & 1) ? (r >> 1) % (unsynced + 1) : 0;
    const uint64_t keep = std::min<uint64_t>(content.size(), fs.synced + torn);
    content.resize(keep);
    if (!Rewrite(path, content).ok()) continue;
    std::lock_guard<std::mutex> l(mu_);
    counters_.bytes_lost += fs.size - keep;
    files_[path] = FileState{keep, keep};
  }
}

void SimStorage::Wipe(const std::string& dir) {
  DeleteAll(dir);
  std::lock_guard<std::mutex> l(mu_);
  ++counters_.wipes;
}

void SimStorage::DeleteAll(const std::string& dir) {
  std::vector<std::string> children;
  target()->GetChildren(dir, &children).PermitUncheckedError();
  for (const auto& c : children) {
    if (c == "." || c == "..") continue;
    target()->DeleteFile(dir + "/" + c).PermitUncheckedError();
  }
  std::lock_guard<std::mutex> l(mu_);
  for (auto it = files_.begin(); it != files_.end();) {
    it = Under(it->first, dir) ? files_.erase(it) : std::next(it);
  }
}

SimStorage::Backup SimStorage::TakeBackup(const std::string& dir) {
  Backup b;
  std::vector<std::string> children;
  target()->GetChildren(dir, &children).PermitUncheckedError();
  for (const auto& c : children) {
    if (c == "." || c == ".." || c == "LOCK") continue;
    std::string content;
    if (ReadAll(dir + "/" + c, &content).ok()) b[dir + "/" + c] = std::move(content);
  }
  std::lock_guard<std::mutex> l(mu_);
  ++counters_.backups;
  return b;
}

void SimStorage::RestoreBackup(const std::string& dir, const Backup& backup) {
  DeleteAll(dir);
  for (const auto& [path, content] : backup) {
    if (!Rewrite(path, content).ok()) continue;
    std::lock_guard<std::mutex> l(mu_);
    files_[path] = FileState{content.size(), content.size()};
  }
  std::lock_guard<std::mutex> l(mu_);
  ++counters_.restores;
}

// ---------------------------------------------------------------------------------------
// Background work.

void SimStorage::Schedule(void (*function)(void* arg), void* arg, Priority pri, void* tag,
                          void (*unschedule)(void* arg)) {
  std::lock_guard<std::mutex> l(mu_);
  jobs_.push_back(Job{function, arg, pri, tag, unschedule});
}

int SimStorage::UnSchedule(void* tag, Priority pri) {
  std::vector<Job> dropped;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto it = jobs_.begin(); it != jobs_.end();) {
      if (it->tag == tag && it->pri == pri) {
        dropped.push_back(*it);
        it = jobs_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // Outside the lock: the callback tells the database its job will not run.
  for (const Job& j : dropped) {
    if (j.unschedule) j.unschedule(j.arg);
  }
  return static_cast<int>(dropped.size());
}

unsigned int SimStorage::GetThreadPoolQueueLen(Priority pri) const {
  std::lock_guard<std::mutex> l(mu_);
  return static_cast<unsigned int>(
      std::count_if(jobs_.begin(), jobs_.end(), [pri](const Job& j) { return j.pri == pri; }));
}

size_t SimStorage::RunBackgroundWork() {
  size_t ran = 0;
  // Bounded: a flush queues at most a compaction, which queues at most another.
  for (; ran < 100'000; ++ran) {
    Job j{};
    {
      std::lock_guard<std::mutex> l(mu_);
      if (jobs_.empty()) break;
      j = jobs_.front();
      jobs_.pop_front();
    }
    j.function(j.arg);
  }
  return ran;
}

StorageCounters SimStorage::counters() const {
  std::lock_guard<std::mutex> l(mu_);
  return counters_;
}

}  // namespace outpost::sim
