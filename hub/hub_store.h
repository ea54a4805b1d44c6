// HubStore: the hub's durable state on RocksDB.
//
// Column families:
//   sites   name -> SiteRecord (registry, labels, watermarks of both streams)
//   up      site \0 incarnation(BE u64) seq(BE u64) -> event bytes: the hub's copy of
//           each site's event log, one stream per incarnation, never merged
//   down    site \0 epoch(BE u64) seq(BE u64) -> command bytes: each site's command log;
//           acknowledged entries are trimmed
//   runs    "run/<id>" -> HubRun (materialized view of every site's runs and tasks),
//           "out/<run>/<task>" -> output tail of the task's last finished attempt
//   defs    name -> WorkflowRecord (applied definitions and their target selector)
//   meta    "req/<request id>" -> RequestRecord, "audit/<BE u64>" -> hub event (JSON)
//
// Every change the hub makes goes through a Txn committed as one synced WriteBatch:
// an upstream batch, its materialized effect and the new watermark land together.
//
// Thread-safety: one owner thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <rocksdb/write_batch.h>

#include "common/clock.h"
#include "common/codec.h"
#include "common/event_log.h"
#include "common/rocks.h"
#include "common/status.h"

namespace outpost {

enum class SiteState : uint8_t { kPending = 0, kEnrolled = 1, kRevoked = 2 };
const char* SiteStateName(SiteState s);

struct SiteRecord {
  std::string name;
  std::string key;  // Z85 CURVE public key
  uint8_t state = 0;
  std::map<std::string, std::string> labels;
  TimeMs created = 0;
  TimeMs last_seen = 0;
  uint64_t incarnation = 0;  // current upstream stream (0: never connected)
  uint64_t up_applied = 0;   // hub's watermark of that stream
  uint64_t up_head = 0;      // the site's head as last reported
  uint64_t down_epoch = 0;   // current downstream log (restarts with a new incarnation)
  uint64_t down_head = 0;
  uint64_t down_acked = 0;
  std::map<std::string, std::string> placed;  // workflow name -> hash placed there
  uint64_t events_total = 0;                  // events received over all incarnations
  std::string agent_address;                  // informational
  MSGPACK_DEFINE_MAP(name, key, state, labels, created, last_seen, incarnation, up_applied,
                     up_head, down_epoch, down_head, down_acked, placed, events_total,
                     agent_address);

  SiteState site_state() const { return static_cast<SiteState>(state); }
};

struct WorkflowRecord {
  std::string name;
  std::string source;
  std::string hash;
  std::map<std::string, std::string> target;  // label selector; empty matches every site
  TimeMs applied = 0;
  std::string author;
  MSGPACK_DEFINE_MAP(name, source, hash, target, applied, author);
};

struct HubTask {
  std::string id;
  std::string state = "pending";
  int32_t attempts = 0;
  int32_t exit_code = -1;
  int32_t signal = 0;
  TimeMs started = 0;
  TimeMs finished = 0;
  std::string message;
  MSGPACK_DEFINE_MAP(id, state, attempts, exit_code, signal, started, finished, message);
};

struct HubRun {
  std::string id;
  std::string site;
  std::string workflow;
  std::string hash;
  std::string request;
  std::string author;
  std::string state = "pending";
  std::map<std::string, std::string> params;
  TimeMs created = 0;
  TimeMs finished = 0;
  TimeMs updated = 0;
  bool delivered = false;  // the site reported the run (it exists there)
  bool cancel_requested = false;
  std::string message;
  std::vector<HubTask> tasks;
  MSGPACK_DEFINE_MAP(id, site, workflow, hash, request, author, state, params, created, finished,
                     updated, delivered, cancel_requested, message, tasks);
};

struct RequestRecord {
  std::string id;
  std::string workflow;
  std::vector<std::string> runs;
  std::vector<std::string> sites;
  TimeMs created = 0;
  MSGPACK_DEFINE_MAP(id, workflow, runs, sites, created);
};

class HubStore {
 public:
  struct Options {
    rocksdb::Env* env = nullptr;
    bool sync = true;
    size_t write_buffer_bytes = 8 << 20;
    size_t block_cache_bytes = 32 << 20;
  };

  // Writes to commit together.
  class Txn {
   public:
    void PutSite(const SiteRecord& s);
    void DeleteSite(const std::string& name);
    void PutUp(const std::string& site, uint64_t incarnation, uint64_t seq, const std::string& v);
    void PutDown(const std::string& site, uint64_t epoch, uint64_t seq, const std::string& v);
    void TrimDown(const std::string& site, uint64_t epoch, uint64_t through);
    void PutRun(const HubRun& r);
    void PutOutput(const std::string& run, const std::string& task, const std::string& out);
    void PutDef(const WorkflowRecord& d);
    void DeleteDef(const std::string& name);
    void PutRequest(const RequestRecord& r);
    void Audit(uint64_t seq, const std::string& json);
    size_t size() const { return ops_.size(); }

   private:
    friend class HubStore;
    enum class Cf { kSites, kUp, kDown, kRuns, kDefs, kMeta };
    struct Op {
      Cf cf;
      std::string key;
      std::optional<std::string> value;  // nullopt: delete
      std::string end;                   // non-empty: delete range [key, end)
    };
    std::vector<Op> ops_;
  };

  static Result<std::unique_ptr<HubStore>> Open(const std::string& path, const Options& options);

  Status Commit(const Txn& txn);

  Status LoadSites(std::vector<SiteRecord>* out) const;
  Status LoadDefs(std::vector<WorkflowRecord>* out) const;
  Result<std::optional<HubRun>> GetRun(const std::string& id) const;
  // Calls fn for every run in id order; fn returns false to stop.
  Status ScanRuns(const std::function<bool(const HubRun&)>& fn) const;
  Result<std::optional<std::string>> GetOutput(const std::string& run, const std::string& task) const;
  Result<std::optional<RequestRecord>> GetRequest(const std::string& id) const;
  Result<std::vector<LogRecord>> ReadDown(const std::string& site, uint64_t epoch, uint64_t after,
                                          size_t max_count, size_t max_bytes) const;
  Result<std::vector<LogRecord>> ReadUp(const std::string& site, uint64_t incarnation,
                                        uint64_t after, size_t max_count) const;
  // Hub events (audit), newest last, up to `limit`.
  Status ReadAudit(size_t limit, std::vector<std::string>* out) const;
  uint64_t audit_head() const { return audit_head_; }
  uint64_t ApproximateSize() const;

 private:
  HubStore() = default;
  rocksdb::ColumnFamilyHandle* Handle(Txn::Cf cf) const;

  RocksHandles rocks_;
  bool sync_ = true;
  uint64_t audit_head_ = 0;
};

std::string StreamKey(const std::string& site, uint64_t stream, uint64_t seq);

}  // namespace outpost
