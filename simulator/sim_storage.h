// SimStorage: the simulated disks under every database of the simulation — an in-memory
// RocksDB Env that knows, for each file, how much of it was synced, and so can lose what
// was not (docs/simulator.md, "Storage faults").
//
// Each simulated process has its own disk: the files under one directory ("/hub",
// "/sites/NAME"). On a disk:
// - a power cut keeps each file's synced prefix plus a torn tail: a random part of what
//   was written after the last sync (what reached the platters before the power went);
//   a process crash (kill -9) keeps everything written, as the page cache does;
// - a crash point ends the process at its k-th write-ahead-log write or sync: that write
//   fails and so does every write after it, until the process is restarted, so a crash
//   falls between two writes of one step;
// - faults: a WAL append fails (I/O error), a WAL sync fails (and the data it covered
//   may or may not have reached the disk), the disk is full (every append fails with
//   NoSpace), a read during recovery returns one flipped byte;
// - lost disks: Wipe (a reinstalled site).
//
// Fault draws depend on the seed, the disk and the count of WAL operations on it, not on
// thread timing, so a seed replays the same faults. Only WAL operations (which RocksDB
// makes on the writing thread) draw faults and count toward crash points; background
// flushes see only full disks and power cuts.
//
// Background work: RocksDB's flushes and compactions do not run on threads here. Schedule
// queues them and RunBackgroundWork runs them, in order, on the simulation's thread
// between two events, so what a flush has written when a power cut, crash point or full
// disk strikes depends on the seed alone. (On threads it depended on the machine's load:
// the same seed gave different traces under a parallel sweep.) A database closed with
// work queued drops it (UnSchedule), as a killed process would. Databases on it are opened
// with RocksOptions::simulated, so nothing inside a step waits for queued work.
//
// Thread-safety: the state is behind one mutex; every call comes from the simulation's
// thread in practice.
#pragma once

#include <rocksdb/env.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace outpost::sim {

struct StorageFaults {
  double write_error = 0;   // each WAL append fails with this probability
  double sync_error = 0;    // each WAL sync fails with this probability
  double corrupt_read = 0;  // each sequential read (recovery) flips a byte with this probability
};

struct StorageCounters {
  uint64_t write_errors = 0;
  uint64_t sync_errors = 0;
  uint64_t full_refusals = 0;
  uint64_t corrupt_reads = 0;
  uint64_t power_cuts = 0;
  uint64_t crash_points = 0;  // armed crashes that fired
  uint64_t bytes_lost = 0;    // unsynced bytes dropped by power cuts
  uint64_t wipes = 0;
  uint64_t backups = 0;
  uint64_t restores = 0;
};

class SimStorage final : public rocksdb::EnvWrapper {
 public:
  explicit SimStorage(uint64_t seed);
  ~SimStorage() override;
  static const char* kClassName() { return "OutpostSimStorage"; }
  const char* Name() const override { return kClassName(); }

  // Faults for the disk under `dir`; they hold until changed (Heal sets none).
  void SetFaults(const std::string& dir, const StorageFaults& f);
  void SetFull(const std::string& dir, bool full);
  bool full(const std::string& dir) const;
  // The process on `dir` dies at its `k`-th WAL operation from now (k >= 1).
  void ArmCrash(const std::string& dir, uint64_t k);
  void Disarm(const std::string& dir);
  // The armed crash fired: the process is dead to its disk (every write fails). The
  // simulation kills it and calls Restart after its databases are closed.
  bool crashed(const std::string& dir) const;
  // How many armed crashes have fired so far (cheap: the simulation polls it per event).
  uint64_t crash_points_fired() const { return fired_.load(std::memory_order_relaxed); }
  // The process is being killed: every write fails until Restart (its databases may
  // close without a write reaching the disk).
  void Kill(const std::string& dir);
  // Loses what was not synced on `dir` (with torn tails); call between Kill and Restart.
  void PowerCut(const std::string& dir);
  // The disk takes writes again (a new process starts on it).
  void Restart(const std::string& dir);
  // Deletes every file on the disk (a lost disk; the site is reinstalled).
  void Wipe(const std::string& dir);
  // A copy of every file on the disk as it stands (taken while its process is down, as a
  // backup of a stopped hub is), and putting one back in place of what is there.
  using Backup = std::map<std::string, std::string>;
  Backup TakeBackup(const std::string& dir);
  void RestoreBackup(const std::string& dir, const Backup& backup);

  StorageCounters counters() const;

  // Runs the queued background work (and what it queues in turn) to the end; returns how
  // many jobs ran.
  size_t RunBackgroundWork();

  // rocksdb::Env
  void Schedule(void (*function)(void* arg), void* arg, Priority pri, void* tag,
                void (*unschedule)(void* arg)) override;
  int UnSchedule(void* tag, Priority pri) override;
  unsigned int GetThreadPoolQueueLen(Priority pri) const override;
  rocksdb::Status NewWritableFile(const std::string& f, std::unique_ptr<rocksdb::WritableFile>* r,
                                  const rocksdb::EnvOptions& o) override;
  rocksdb::Status ReopenWritableFile(const std::string& f,
                                     std::unique_ptr<rocksdb::WritableFile>* r,
                                     const rocksdb::EnvOptions& o) override;
  rocksdb::Status ReuseWritableFile(const std::string& f, const std::string& old,
                                    std::unique_ptr<rocksdb::WritableFile>* r,
                                    const rocksdb::EnvOptions& o) override;
  rocksdb::Status NewSequentialFile(const std::string& f,
                                    std::unique_ptr<rocksdb::SequentialFile>* r,
                                    const rocksdb::EnvOptions& o) override;
  rocksdb::Status DeleteFile(const std::string& f) override;
  rocksdb::Status RenameFile(const std::string& src, const std::string& dst) override;
  rocksdb::Status LinkFile(const std::string& src, const std::string& dst) override;
  rocksdb::Status Truncate(const std::string& f, size_t size) override;
  // 0 on a full disk, else plenty: the agent's own full-disk check sees what RocksDB would.
  rocksdb::Status GetFreeSpace(const std::string& path, uint64_t* free) override;

 private:
  class File;
  class Reader;
  struct FileState {
    uint64_t size = 0;
    uint64_t synced = 0;
  };
  struct Disk {
    StorageFaults faults;
    bool full = false;
    bool dead = false;      // killed, or an armed crash fired
    bool crashed = false;   // the armed crash fired
    uint64_t countdown = 0; // WAL operations until the armed crash; 0: none
    uint64_t wal_ops = 0;   // every WAL operation so far (the fault draws' counter)
    uint64_t reads = 0;
  };
  enum class Op { kAppend, kSync };
  struct Job {
    void (*function)(void*);
    void* arg;
    Priority pri;
    void* tag;
    void (*unschedule)(void*);
  };

  // The disk a path is on (its first two components for /sites/NAME/..., else the first).
  static std::string DiskOf(const std::string& path);
  static bool IsWal(const std::string& path);
  // Whether this operation on `path` may go ahead; counts it and draws its faults.
  rocksdb::Status Admit(const std::string& path, Op op, bool* lands);
  bool CorruptRead(const std::string& path, size_t n, size_t* at);
  bool Draw(const std::string& disk, uint64_t n, uint64_t salt, double p) const;
  void Appended(const std::string& path, uint64_t n);
  void Synced(const std::string& path);
  rocksdb::Status Rewrite(const std::string& path, const std::string& content);
  rocksdb::Status ReadAll(const std::string& path, std::string* out);
  // Deletes every file under `dir` and forgets their sync state.
  void DeleteAll(const std::string& dir);
  // An I/O error if the process on the disk of `path` is dead, else OK.
  rocksdb::Status RefuseIfDead(const std::string& path);

  const uint64_t seed_;
  mutable std::mutex mu_;
  std::map<std::string, FileState> files_;
  std::map<std::string, Disk> disks_;
  StorageCounters counters_;
  std::deque<Job> jobs_;
  std::atomic<uint64_t> fired_{0};
};

}  // namespace outpost::sim
