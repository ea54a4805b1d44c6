// FaultFs: a rocksdb::FileSystem wrapper whose writes can be made to fail, as a full disk
// would. Wraps any FileSystem (the in-memory one in tests).
#pragma once

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <atomic>
#include <memory>

namespace outpost::testing {

class FaultFs : public rocksdb::FileSystemWrapper {
 public:
  explicit FaultFs(const std::shared_ptr<rocksdb::FileSystem>& base)
      : rocksdb::FileSystemWrapper(base) {}
  const char* Name() const override { return "OutpostFaultFs"; }

  // Every write and sync fails, as on a full disk.
  void SetNoSpace(bool on) { no_space_ = on; }
  bool no_space() const { return no_space_; }
  // Writes go through but sync reports an error: the data may be durable after all.
  void SetFailSync(bool on) { fail_sync_ = on; }
  bool fail_sync() const { return fail_sync_; }
  // The same for the write-ahead log's files (*.log) only, so a reopen (which syncs a new
  // MANIFEST and CURRENT) goes through and the next write fails after landing.
  void SetFailWalSync(bool on) { fail_wal_sync_ = on; }
  bool fail_wal_sync() const { return fail_wal_sync_; }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    if (no_space_) return rocksdb::IOStatus::NoSpace("injected: disk full");
    auto s = target()->NewWritableFile(f, o, r, dbg);
    const bool wal = f.size() > 4 && f.compare(f.size() - 4, 4, ".log") == 0;
    if (s.ok()) *r = std::make_unique<File>(std::move(*r), this, wal);
    return s;
  }

 private:
  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile>&& t, FaultFs* fs, bool wal)
        : rocksdb::FSWritableFileOwnerWrapper(std::move(t)), fs_(fs), wal_(wal) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& d, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
      if (fs_->no_space()) return rocksdb::IOStatus::NoSpace("injected: disk full");
      return target()->Append(d, o, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& d, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo& v,
                             rocksdb::IODebugContext* dbg) override {
      if (fs_->no_space()) return rocksdb::IOStatus::NoSpace("injected: disk full");
      return target()->Append(d, o, v, dbg);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (fs_->no_space()) return rocksdb::IOStatus::NoSpace("injected: disk full");
      if (fs_->fail_sync() || (wal_ && fs_->fail_wal_sync())) {
        target()->Sync(o, dbg).PermitUncheckedError();
        return rocksdb::IOStatus::IOError("injected: fsync failed");
      }
      return target()->Sync(o, dbg);
    }

   private:
    FaultFs* fs_;
    bool wal_;
  };
  std::atomic<bool> no_space_{false};
  std::atomic<bool> fail_sync_{false};
  std::atomic<bool> fail_wal_sync_{false};
};

}  // namespace outpost::testing
