// HubStore: the hub's durable state, as an interface the hub logic depends on.
//
// What it holds:
//   sites     name -> SiteRecord (registry, labels, watermarks of both streams)
//   up        (site, incarnation, seq) -> event bytes: the hub's copy of each site's event
//             log, one stream per incarnation, never merged
//   down      (site, epoch, seq) -> command bytes: each site's command log; acknowledged
//             entries are trimmed
//   runs      run id -> HubRun (materialized view of every site's runs and tasks), and
//             (run, task) -> output tail of the task's last finished attempt. Stores
//             that can (stores_task_rows) keep a large run's tasks in rows of 32, so an
//             upstream batch writes only the rows of the tasks it changed.
//   defs      name -> WorkflowRecord (applied definitions and their target selector)
//   requests  request id -> RequestRecord;  audit: seq -> hub event (JSON text)
//   settings  key -> bytes ("policy": the fleet policy handed to sites)
//   artifacts digest -> ArtifactRecord (name, size, its chunks' digests), and
//             chunk digest -> chunk bytes (stored once however many artifacts share it)
//
// Every change the hub makes goes through a HubTxn committed atomically and durably
// (synced before Commit returns): an upstream batch, its materialized effect and the new
// watermark land together or not at all. Implementations: RocksHubStore (the embedded
// default, hub/rocks_hub_store.h) and PgHubStore (several hub processes over one
// PostgreSQL, hub/pg_hub_store.h). Each must pass the conformance suite in
// tests/hub/hub_store_conformance.h.
//
// Thread-safety: one owner thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/codec.h"
#include "common/metrics.h"
#include "common/protocol/event_log.h"
#include "common/status.h"

namespace outpost {

enum class SiteState : uint8_t { kPending = 0, kEnrolled = 1, kRevoked = 2 };

// Where the hub's copy of a site's events stood at a moment (hub retention, hub/retention.cpp):
// entries through `seq` of stream `incarnation` had arrived by `at` (hub time), and the
// site's copies held `bytes` in total through them, counted since the site was added.
// Consecutive batches extend the last mark until it spans the retention's granularity.
struct UpMark {
  uint64_t incarnation = 0;
  uint64_t seq = 0;
  TimeMs start = 0;  // when the mark's first batch arrived
  TimeMs at = 0;     // when its last one did
  uint64_t bytes = 0;
  MSGPACK_DEFINE_ARRAY(incarnation, seq, start, at, bytes);
};
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
  std::vector<uint64_t> retired;  // incarnations this site replaced: refused if seen again
  int64_t policy_sent = 0;        // version of the fleet policy enqueued to it (0: none)
  // What the site said about its commands: placements it refused (workflow -> why), the
  // last word on the fleet policy (applied or refused, and why), refusals counted.
  std::map<std::string, std::string> refused;
  std::string policy_status;
  uint64_t commands_refused = 0;
  // Artifacts the site reported in its cache (digest -> size), from its events.
  std::map<std::string, uint64_t> artifacts;
  // Bundles: the last imported from the site and the last exported to it (ids).
  std::string bundle_in, bundle_out;
  // A hub restored from a backup (docs/protocol.md): the hub epoch this site has since
  // reconciled with.
  uint64_t epoch_confirmed = 0;
  // The site's last health summary (site.health events; field -> value) and its time on
  // the site's clock.
  std::map<std::string, double> health;
  TimeMs health_at = 0;
  // Retention of the hub's copies of this site's events (hub/retention.cpp): bytes stored
  // since the site was added, bytes trimmed since, and the marks left to trim by. Copies
  // stored by a hub from before retention carry no marks and are kept.
  uint64_t up_bytes = 0;
  uint64_t up_trimmed_bytes = 0;
  std::vector<UpMark> up_marks;
  // Revision: how many times the record was written (HubTxn::PutSite). Several hub
  // processes over one store write a site only over the revision they read (compare and
  // set), so none overwrites another's change (docs/architecture.md, "Several hubs").
  uint64_t rev = 0;
  MSGPACK_DEFINE_MAP(name, key, state, labels, created, last_seen, incarnation, up_applied,
                     up_head, down_epoch, down_head, down_acked, placed, events_total,
                     agent_address, retired, policy_sent, refused, policy_status,
                     commands_refused, artifacts, bundle_in, bundle_out, epoch_confirmed,
                     health, health_at, up_bytes, up_trimmed_bytes, up_marks, rev);

  uint64_t up_kept_bytes() const { return up_bytes - std::min(up_bytes, up_trimmed_bytes); }

  SiteState site_state() const { return static_cast<SiteState>(state); }
};

struct WorkflowRecord {
  std::string name;
  std::string source;
  std::string hash;
  std::map<std::string, std::string> target;  // label selector; empty matches every site
  TimeMs applied = 0;
  std::string author;
  // The operator's signed "apply" statement (common/trust.h), carried to every site.
  std::string grant, signer, sig;
  MSGPACK_DEFINE_MAP(name, source, hash, target, applied, author, grant, signer, sig);

  // What a site has placed when it holds this definition: the hash, and the signature
  // when signed (re-applying the same source signed places it again).
  std::string placed_tag() const { return sig.empty() ? hash : hash + "+" + sig.substr(0, 16); }
};

// A file stored at the hub by content (outpostctl artifact push), docs/protocol.md.
struct ArtifactRecord {
  std::string digest;  // BLAKE2b-256 hex of the whole file
  std::string name;    // the operator's name for it (informational)
  uint64_t size = 0;
  std::vector<std::string> chunks;  // digest of each kArtifactChunkBytes chunk, in order
  TimeMs pushed = 0;
  std::string author;
  MSGPACK_DEFINE_MAP(digest, name, size, chunks, pushed, author);
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
  // Stored as an array in this order (a run of 1,000 tasks re-encoded at every batch that
  // touches it; the field names were half of each row). Rows stored as maps by hubs before
  // this are read too (hub/hub_store.cpp).
  MSGPACK_DEFINE_ARRAY(id, state, attempts, exit_code, signal, started, finished, message);
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
  uint64_t rev = 0;  // as SiteRecord::rev
  MSGPACK_DEFINE_MAP(id, site, workflow, hash, request, author, state, params, created, finished,
                     updated, delivered, cancel_requested, message, tasks, rev);
};

// Where a run sorts by time: its id's ULID (run ids are "<site>-<ULID>"), then the id.
// An id without one sorts before every id with one (oldest).
std::string RunTimeKey(const std::string& run_id);

struct RequestRecord {
  std::string id;
  std::string workflow;
  std::vector<std::string> runs;
  std::vector<std::string> sites;
  TimeMs created = 0;
  // What the start asked for (site, target, params, priority, secret names and the sites
  // they were sealed to), hashed: a retry must ask for the same. Empty in older records.
  std::string asked;
  MSGPACK_DEFINE_MAP(id, workflow, runs, sites, created, asked);
};

// Writes to commit together: a list of logical operations that each store implementation
// maps onto its own engine. Records are carried msgpack-encoded.
class HubTxn {
 public:
  enum class Kind : uint8_t {
    kPutSite, kDeleteSite, kPutUp, kPutDown, kTrimDown, kPutRun, kPutOutput, kPutDef,
    kDeleteDef, kPutRequest, kAudit, kDeleteRun, kPurgeSiteStreams, kPutSetting, kPutChunk,
    kPutArtifact, kTrimUp, kAppendDown
  };
  struct Op {
    Kind kind;
    std::string key;    // site, run, workflow or request name
    std::string key2;   // task (kPutOutput); site '\0' state (kPutRun)
    uint64_t stream = 0;  // incarnation (kPutUp, kTrimUp) or epoch (kPutDown, kTrimDown)
    uint64_t seq = 0;     // entry (kPutUp, kPutDown, kAudit) or last trimmed (kTrim*)
    std::string value;    // encoded record, entry bytes, output text or audit JSON
    // The revision the stored record must have for the write to apply (kPutSite, kPutRun;
    // 0: absent), or kAnyRev. kPutRequest expects 0: a request is written once.
    uint64_t expect = kAnyRev;
    uint64_t rev = 0;  // the revision the written record carries (kPutSite, kPutRun)
    // kPutRun written by PutRunRows: `value` is the run without its tasks, which are
    // `ntasks` long, and `rows` the chunks of kTaskChunk tasks that changed, by chunk
    // number (each an encoded array of its tasks).
    bool split = false;
    uint32_t ntasks = 0;
    std::vector<std::pair<uint32_t, std::string>> rows = {};
    // PutUpBorrowed: the entry's bytes, owned by the caller, in place of `value`.
    std::string_view borrowed = {};
    std::string_view bytes() const { return borrowed.data() ? borrowed : std::string_view(value); }
  };
  static constexpr uint64_t kAnyRev = UINT64_MAX;

  // Writes the record over the revision it holds and moves it to the next: Commit fails
  // with Aborted if the stored record has another revision (another hub process wrote it
  // since it was read).
  void PutSite(SiteRecord& s);
  // Writes the record whatever revision is stored (tests, tools, a store copied whole).
  void PutSite(const SiteRecord& s);
  void DeleteSite(const std::string& name);
  void PutUp(const std::string& site, uint64_t incarnation, uint64_t seq, const std::string& v);
  // As PutUp, without copying `v`: it must live until the commit (an upstream batch's
  // entries, applied and committed in one call).
  void PutUpBorrowed(const std::string& site, uint64_t incarnation, uint64_t seq,
                     std::string_view v);
  void PutDown(const std::string& site, uint64_t epoch, uint64_t seq, const std::string& v);
  // Appends a command to the site's log `epoch` at the next sequence number, which the
  // store allocates (stores that allocates_commands(); several hubs enqueue to one site
  // without writing its record).
  void AppendDown(const std::string& site, uint64_t epoch, const std::string& v);
  // Removes entries 1..through of the site's command log `epoch`.
  void TrimDown(const std::string& site, uint64_t epoch, uint64_t through);
  // Removes entries 1..through of the hub's copy of the site's stream `incarnation`
  // (retention; the run view keeps what they said). kWholeStream removes all of it.
  static constexpr uint64_t kWholeStream = UINT64_MAX - 1;
  void TrimUp(const std::string& site, uint64_t incarnation, uint64_t through);
  void PutRun(HubRun& r);  // as PutSite
  void PutRun(const HubRun& r);
  // As PutRun(HubRun&), for stores that keep a run's tasks in rows of their own
  // (HubStore::stores_task_rows), kTaskChunk tasks to a row (row n: tasks from
  // n * kTaskChunk): writes the run's own fields and the rows numbered in `rows` (the
  // store's other rows must be the run's as read).
  static constexpr uint32_t kTaskChunk = 32;
  void PutRunRows(HubRun& r, const std::vector<uint32_t>& rows);
  void PutOutput(const std::string& run, const std::string& task, const std::string& out);
  // Removes a run and its output tails.
  void DeleteRun(const std::string& run);
  // Removes every upstream copy and command log of a site, all incarnations.
  void PurgeSiteStreams(const std::string& site);
  void PutDef(const WorkflowRecord& d);
  void DeleteDef(const std::string& name);
  void PutRequest(const RequestRecord& r);
  void Audit(uint64_t seq, const std::string& json);
  // A hub-wide setting (e.g. "policy": the fleet policy the hub hands to sites).
  void PutSetting(const std::string& key, const std::string& value);
  // Artifacts: one chunk's bytes under its digest, and the record of a whole file.
  void PutChunk(const std::string& digest, const std::string& bytes);
  void PutArtifact(const ArtifactRecord& a);

  const std::vector<Op>& ops() const { return ops_; }
  size_t size() const { return ops_.size(); }
  // Test-only (the simulator's planted bug, common/faults.h): revisions are not checked.
  void set_unchecked() { unchecked_ = true; }
  bool unchecked() const { return unchecked_; }
  // Group commit (HubStore::defers_sync): this write may reach the disk later, at the next
  // HubStore::SyncDeferred. It is atomic and visible to reads at once (a read that needs
  // it may write the group early); nothing that depends on it being on disk (an
  // acknowledgement) may leave before that sync.
  void set_sync_deferred() { sync_deferred_ = true; }
  bool sync_deferred() const { return sync_deferred_; }

 private:
  std::vector<Op> ops_;
  bool unchecked_ = false;
  bool sync_deferred_ = false;
};

class HubStore {
 public:
  using Txn = HubTxn;

  virtual ~HubStore() = default;

  // Applies every operation of txn atomically and durably, or none (and says why).
  // Aborted: a revision did not match (HubTxn::PutSite); nothing was written. A txn marked
  // sync_deferred is durable only after the next SyncDeferred, where defers_sync().
  virtual Status Commit(const Txn& txn) = 0;
  // Group commit: whether Commit may leave a sync_deferred txn for SyncDeferred, so that
  // several batches share one synced write (RocksHubStore: gathered in one WriteBatch,
  // written and synced at SyncDeferred, or earlier where a read needs them). Stores that
  // cannot (PostgreSQL: each transaction commits on its own) make every Commit durable,
  // and SyncDeferred does nothing.
  virtual bool defers_sync() const { return false; }
  // Makes every Commit since the last call durable, or fails; after a failure
  // write_failed() is true: what reached the disk is unknown, and the hub reopens the
  // store and its core from what is really there.
  virtual Status SyncDeferred() { return Status::Ok(); }
  // Groups written before SyncDeferred because a read would have seen them.
  virtual uint64_t early_group_writes() const { return 0; }
  // Several hub processes write this store (PostgreSQL): what a process holds in memory
  // may be stale, so it reads a site again before a session, and learns of the others'
  // writes through changes_fd/TakeChanges.
  virtual bool shared() const { return false; }
  // A descriptor that turns readable when another process changed something, or -1.
  virtual int changes_fd() const { return -1; }
  // What other processes changed since the last call: "site/<name>", "down/<site>" (new
  // commands), "defs", "policy",
  // "artifacts", "requests", or "*" (some were missed: read everything again).
  virtual Status TakeChanges(std::vector<std::string>* out) {
    (void)out;
    return Status::Ok();
  }
  // Runs by state counted by the store itself, where several processes share it (each
  // process's own counts would miss the others'); nullopt: the hub keeps the counts.
  virtual Result<std::optional<std::map<std::string, uint64_t>>> CountRunsByState() const {
    return std::optional<std::map<std::string, uint64_t>>();
  }
  // Whether the store allocates command sequence numbers itself (HubTxn::AppendDown); the
  // head of a site's command log is then DownHead, not the record's down_head.
  virtual bool allocates_commands() const { return false; }
  // Whether PutRunRows may be used: the store keeps a run's tasks in rows of their own,
  // so a batch that changes three tasks of a 1,000-task run writes at most three rows of
  // 32 tasks, not the whole run.
  virtual bool stores_task_rows() const { return false; }
  virtual Result<uint64_t> DownHead(const std::string& site, uint64_t epoch) const {
    (void)site;
    (void)epoch;
    return Status::FailedPrecondition("this store does not allocate command numbers");
  }
  // One site's record as stored now (LoadSites reads them all).
  virtual Result<std::optional<SiteRecord>> GetSite(const std::string& name) const;
  // A write failed since the store was opened (a Commit's, a SyncDeferred's, or the
  // group write a read made first): whether it reached the disk is unknown
  // (a failed fsync may have landed), so the caller's memory and the store may disagree.
  // The hub then reopens the store and its core from what is really there.
  virtual bool write_failed() const { return false; }
  // Latency of Commit in seconds, if the store measures it (the hub's /metrics).
  virtual const Histogram* commit_seconds() const { return nullptr; }

  virtual Status LoadSites(std::vector<SiteRecord>* out) const = 0;
  virtual Status LoadDefs(std::vector<WorkflowRecord>* out) const = 0;
  virtual Result<std::optional<HubRun>> GetRun(const std::string& id) const = 0;
  // Calls fn for every run in id order; fn returns false to stop.
  virtual Status ScanRuns(const std::function<bool(const HubRun&)>& fn) const = 0;
  // Calls fn for every run of `site`, newest id first (a run id is its site's name, '-'
  // and a ULID, so id order is creation order), starting after the run id `after` (empty:
  // from the newest); fn returns false to stop. Reads only that site's runs where the
  // engine can seek (the dashboard's site page, run.list --site); this default scans them
  // all.
  virtual Status ScanSiteRunsNewestFirst(const std::string& site, const std::string& after,
                                         const std::function<bool(const HubRun&)>& fn) const;
  // Calls fn for every run of every site, newest first by the ULID of its id (ties by
  // id), starting after `after` (a run id, or empty for the newest); fn returns false to
  // stop. What run.list pages through: each page costs the runs it reads, however long
  // the history (RocksHubStore keeps an index by time; this default scans them all).
  virtual Status ScanRunsNewestFirst(const std::string& after,
                                     const std::function<bool(const HubRun&)>& fn) const;
  virtual Result<std::optional<std::string>> GetOutput(const std::string& run,
                                                       const std::string& task) const = 0;
  virtual Result<std::optional<RequestRecord>> GetRequest(const std::string& id) const = 0;
  virtual Result<std::optional<std::string>> GetSetting(const std::string& key) const = 0;
  // Every setting whose key starts with `prefix`, in key order.
  virtual Status ScanSettings(const std::string& prefix,
                              const std::function<void(const std::string& key,
                                                       const std::string& value)>& fn) const = 0;
  virtual Result<std::optional<std::string>> GetChunk(const std::string& digest) const = 0;
  virtual Status LoadArtifacts(std::vector<ArtifactRecord>* out) const = 0;
  // Entries after `after`, in order, at most max_count and (past the first) max_bytes;
  // a gap in the stored stream is Corruption.
  virtual Result<std::vector<LogRecord>> ReadDown(const std::string& site, uint64_t epoch,
                                                  uint64_t after, size_t max_count,
                                                  size_t max_bytes) const = 0;
  // The hub's copy of a site's events; it has a gap where a hub restored from a backup
  // lost events the site had trimmed (recorded as site.events_lost_in_restore).
  virtual Result<std::vector<LogRecord>> ReadUp(const std::string& site, uint64_t incarnation,
                                                uint64_t after, size_t max_count) const = 0;
  // Hub events (audit), newest last, up to `limit`.
  virtual Status ReadAudit(size_t limit, std::vector<std::string>* out) const = 0;
  // The highest audit sequence committed (0 if none).
  virtual uint64_t audit_head() const = 0;
  virtual uint64_t ApproximateSize() const = 0;
};

}  // namespace outpost

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
namespace adaptor {
// A task row: an array (as written now) or a map (as hubs before wrote it).
template <>
struct convert<outpost::HubTask> {
  const msgpack::object& operator()(const msgpack::object& o, outpost::HubTask& v) const;
};
}  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS)
}  // namespace msgpack
