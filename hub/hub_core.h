// HubCore: the hub's logic as a sans-I/O state machine over the HubStore.
//
// Inputs: AuthorizeSite (ZAP asks whether a key may connect), OnSiteFrame (a frame from
// an authenticated site connection, with the identity ZAP gave it), OnOperator (a JSON
// request from an authenticated operator), Tick (the clock moved).
// Outputs (HubOutput): frames to send to site connections, by routing id.
// The driver (hub/hub_server.cpp with ZeroMQ, or the simulator) owns sockets and time.
//
// Per site the hub runs one SyncSession: upstream it applies the site's events to its
// copy of the site's log and to the materialized run view in one synced write, then
// acknowledges; downstream it serves the site's command log from the store.
//
// Identity: a site is whoever ZAP authenticated; every frame's identity is checked
// against the current registry, so revoking a site refuses its open connection at once.
// Fields in messages never name the sender.
//
// The class is one object with its members defined by concern, each in its own file:
//   hub_core.cpp       sessions, handshake, frames, timers, the upstream apply
//   registry.cpp       ZAP admission, enrollment, revocation, labels
//   placement.cpp      command logs, placing workflows by selector
//   run_commands.cpp   run start (idempotent by request), cancel, approve
//   operator_api.cpp   request dispatch and the read-only queries
// and the pure parts beside it: run_view.h (how events fold into runs), labels.h
// (names and selectors), hub_store.h (the store); replies are built with
// common/json_fields.h.
//
// Thread-safety: none; one driver thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/keys.h"
#include "common/metrics.h"
#include "common/protocol/command.h"
#include "common/protocol/event.h"
#include "common/random.h"
#include "common/protocol/sync_session.h"
#include "hub/hub_store.h"
#include "hub/run_cache.h"
#include "common/labels.h"
#include "hub/operator_request.h"

namespace outpost {

// Incarnations a site replaced that the hub remembers (and refuses if they come back).
inline constexpr size_t kMaxRetiredIncarnations = 64;

// Retention of the hub's copies of site logs (hub/retention.cpp); 0 turns a limit off.
struct HubRetention {
  DurationMs max_age = 30LL * 24 * 3600 * 1000;  // copies older than this are trimmed
  uint64_t max_bytes = 0;                        // all sites' copies together
  uint64_t site_quota = uint64_t{256} << 20;     // one site's copies
  DurationMs mark_ms = 10 * 60 * 1000;  // time a retention mark spans at most (or max_age/32)
  DurationMs check_ms = 60 * 1000;               // how often age and budget are checked
};

// A site's retention marks (stored in its record, rewritten with each batch): each spans
// at most 1/kUpMarkSpans of its quota and of its age limit; at most kMaxUpMarks are kept
// (the oldest merge), about 1.5 KB.
inline constexpr uint64_t kUpMarkSpans = 32;
inline constexpr size_t kMaxUpMarks = 64;

struct HubOptions {
  SyncOptions sync;
  bool accept_unknown = false;  // unknown keys wait as pending sites for `site accept`
  size_t max_list = 1000;       // rows a list query returns at most
  size_t max_pending = 1000;    // pending sites kept at most (accept_unknown)
  // Group commit: site batches applied one after another share one synced write, up to
  // this many (where the store defers_sync): RocksHubStore gathers them in one WriteBatch
  // and writes it once, synced. What they would send (their ACKs, and anything else the
  // hub says meanwhile) is held until then; the driver calls Flush when no frame is
  // waiting. 1: every batch is written and synced on its own.
  size_t group_commit = 8;
  HubRetention retention;
  // The fleet root's public key ("ed25519:..."), if the hub is told it: a pushed policy
  // must be signed by it. Unset, every policy must have the signer of the first one.
  std::string trust_root;
  // The hub's CURVE keypair: bundles are boxed with it (common/bundle.h).
  CurveKeys keys;
  // Several hubs over one store: this process's name (stable across its restarts, e.g.
  // host and data directory), under which it tells the others which sites it holds.
  std::string process_name = "hub";
  // Test-only: called after each record of an imported bundle is applied (the driver
  // kills the process there when $OUTPOST_TEST_KILL_IMPORT_AFTER says so).
  std::function<void(size_t records_applied)> after_import_record;
};

struct HubCounters {
  uint64_t frames_received = 0;
  uint64_t frames_malformed = 0;      // did not decode (bad msgpack, bomb, oversized, bad version)
  uint64_t frames_refused = 0;        // identity not enrolled (revoked after the handshake)
  uint64_t frames_stale = 0;          // from a connection the site has since replaced
  uint64_t events_applied = 0;
  uint64_t events_undecodable = 0;    // stored raw, not materialized
  uint64_t commands_enqueued = 0;
  uint64_t store_errors = 0;
  uint64_t keys_refused = 0;          // ZAP refusals
  uint64_t pending_refused = 0;       // unknown keys not recorded: max_pending reached
  uint64_t stale_incarnations = 0;    // HELLOs from an incarnation the site replaced
  uint64_t duplicates_dropped = 0;    // upstream entries at or below the watermark
  uint64_t gaps_refused = 0;          // upstream batches that started past watermark+1
  uint64_t protocol_errors = 0;       // sessions refused or dropped for a protocol breach
  uint64_t frame_exceptions = 0;      // handler bugs caught at the frame boundary
  uint64_t operator_requests = 0;
  uint64_t operator_errors = 0;       // replies with ok=false, for any reason
  uint64_t operator_invalid = 0;      // requests refused by the decoder (type, range, op)
  uint64_t operator_exceptions = 0;   // handler bugs caught at the boundary
  uint64_t operator_forbidden = 0;    // ops above the operator's role
  uint64_t artifact_chunks_served = 0;  // ARTIFACT_CHUNK frames with data
  uint64_t artifact_requests_refused = 0;  // ARTIFACT_GET for what the site may not have
  uint64_t bundles_exported = 0;
  uint64_t bundle_volumes_imported = 0;
  uint64_t bundle_records_refused = 0;  // damaged, forged, misplaced or for another hub
  // A hub restored from a backup (docs/protocol.md): site events it had acknowledged that
  // the sites had since trimmed; commands sites had applied past what this store saw
  // acknowledged (its unacknowledged tail is sent again after them); sessions refused
  // because the site had seen a newer copy of this hub; HELLOs showing a site ahead of an
  // undeclared restored store.
  uint64_t events_lost_in_restore = 0;
  uint64_t commands_adopted_in_restore = 0;
  uint64_t stale_hub_refusals = 0;
  uint64_t sites_ahead = 0;
  uint64_t handshakes = 0;  // HELLOs answered with WELCOME (a session established)
  // Group commit: synced writes made by Flush, and the site batches they made durable.
  uint64_t group_syncs = 0;
  uint64_t group_batches = 0;
  // Several hubs over one store (HubStore::shared): writes refused because another hub
  // process changed the record since this one read it (each read again and retried or
  // given up), sessions dropped because another process applied the site's events, and
  // records read again on another process's word.
  uint64_t store_conflicts = 0;
  uint64_t sessions_taken_over = 0;
  uint64_t records_reread = 0;
  // Bytes of site-log copies trimmed by retention, by the limit that trimmed them.
  uint64_t retention_age_bytes = 0;
  uint64_t retention_budget_bytes = 0;
  uint64_t retention_quota_bytes = 0;
  // Operator requests by op (only ops the decoder knows; "invalid" for the rest), and
  // the replies with ok=false among them.
  std::map<std::string, uint64_t> requests_by_op;
  std::map<std::string, uint64_t> errors_by_op;
};

struct HubOutput {
  struct Frame {
    std::string peer;
    Message message;
  };
  std::vector<Frame> send;
};

class HubCore {
 public:
  // `faults`: planted bugs for the simulator's mutation check (common/faults.h).
  static Result<std::unique_ptr<HubCore>> Open(HubStore* store, const Clock& clock, Rng* rng,
                                               HubOptions options,
                                               const Faults& faults = Faults::None());
  ~HubCore();

  // ZAP for the site endpoint: the site's name for an enrolled key, nullopt otherwise.
  // With accept_unknown, an unknown key is recorded as a pending site (and refused).
  std::optional<std::string> AuthorizeSite(const std::string& public_z85);

  void OnSiteFrame(const std::string& identity, const std::string& peer,
                   std::string_view payload, HubOutput* out);
  // Group commit (HubOptions::group_commit): writes the batches applied since the last
  // write, in one synced write, and releases what was held back for them into `out`.
  // Drivers call it when no site frame is waiting (and before serving anything else that
  // reads the core, e.g. a dashboard page); OnSiteFrame calls it when the group is full,
  // and OnOperator and Tick call it first, so nothing leaves and no operator reads before
  // the write under it is on disk. A failed sync drops what was held (the sites send those batches again),
  // makes the core inert (sync_failed) and leaves the store's write_failed() set: the
  // driver then reopens the store and the core.
  Status Flush(HubOutput* out);
  // Whether batches were applied since the last sync (Flush has work).
  bool holding() const { return unsynced_batches_ > 0; }
  // A group's sync failed: the core applies and says nothing more (its watermarks are
  // ahead of the disk) until the driver reopens the store and the core.
  bool sync_failed() const { return sync_failed_; }
  // The transport reports the connection of `peer` is gone (if it can tell).
  void OnSiteDisconnected(const std::string& peer);
  void Tick(HubOutput* out);
  TimeMs NextDeadline() const;
  // Several hubs over one store: takes what other hub processes changed (the driver calls
  // this when store->changes_fd() turns readable) and brings this core in line: sites
  // read again (a session whose events another process applied is dropped; new commands
  // are sent at once), definitions, the policy and artifacts reloaded.
  void OnStoreChanges(HubOutput* out);
  // Reads every site, definition, the policy and artifacts again (as for "*").
  void RefreshFromStore(HubOutput* out);

  // One operator request (docs/protocol.md, "Operator API"); always returns a JSON object
  // with "ok" and either the result or "error". An op above the operator's role is
  // refused with code "forbidden".
  nlohmann::json OnOperator(const std::string& operator_name, const nlohmann::json& request,
                            HubOutput* out, OperatorRole role = OperatorRole::kAdmin);

  // Records that this store was restored from a backup: a new hub epoch, with which every
  // site reconciles at its next HELLO (docs/protocol.md, "A hub restored from a backup").
  // Run once, with the hub stopped, by `outpost-hub --declare-restored`. Returns the epoch.
  Result<uint64_t> DeclareRestored();
  uint64_t hub_epoch() const { return hub_epoch_; }

  const HubCounters& counters() const { return counters_; }
  nlohmann::json StatusJson() const;
  // The core's metrics in the Prometheus text format (hub/hub_metrics.cpp).
  void Metrics(Exposition* x) const;
  // Whether the site has a session with this hub process or (several hubs over one store)
  // with another, as that one said within the last kPresenceStaleMs.
  bool online(const std::string& site) const;
  bool online_here(const std::string& site) const;
  const SiteRecord* site(const std::string& name) const {
    auto it = sites_.find(name);
    return it == sites_.end() ? nullptr : &it->second;
  }
  const std::map<std::string, SiteRecord>& sites() const { return sites_; }
  const std::map<std::string, uint64_t>& run_counts() const { return run_counts_; }
  const WorkflowRecord* workflow(const std::string& name) const {
    auto it = defs_.find(name);
    return it == defs_.end() ? nullptr : &it->second;
  }

 private:
  class Upstream;
  class Downstream;
  struct Conn;

  HubCore(HubStore* store, const Clock& clock, Rng* rng, HubOptions options, Faults faults);

  SiteRecord* FindSite(const std::string& name);
  Conn* ConnFor(const std::string& site);
  // Ends the site's session here; `persist` records last_seen (not when another hub
  // process holds the site now).
  void Drop(const std::string& site, const std::string& why, bool persist = true);
  // Commits txn; a refused compare-and-set (another hub process wrote first) is counted
  // and makes the core read the store again at its next tick.
  Status CommitTxn(HubStore::Txn& txn);
  // A failed write counted as a store error, unless it was a conflict (counted apart).
  void CountStoreFailure(const Status& s) {
    if (s.code() != Code::kAborted) ++counters_.store_errors;
  }
  // Adopts the stored record of a site: its session here is dropped if another process
  // applied its events or replaced its incarnation; new commands are sent (out may be null).
  void AdoptStored(const std::string& name, std::optional<SiteRecord> fresh, HubOutput* out);
  Status RereadSite(const std::string& name, HubOutput* out);
  // Definitions and artifacts as another hub process left them in the store.
  Status ReloadDefs();
  Status ReloadArtifacts();
  // Takes the stored record of a site without touching its session (from inside the
  // session's own calls, where ending it is not allowed).
  void KeepStored(SiteRecord fresh);
  bool refresh_pending_ = false;
  TimeMs refresh_logged_at_ = -1'000'000;
  TimeMs changes_logged_at_ = -1'000'000;
  // Several hubs: every kPresenceEveryMs this process writes the sites it holds sessions
  // for (setting "online/<process_name>") and reads the others'.
  static constexpr DurationMs kPresenceEveryMs = 5000;
  static constexpr DurationMs kPresenceStaleMs = 15000;
  void ExchangePresence();
  TimeMs presence_at_ = -1'000'000;
  std::set<std::string> online_elsewhere_;
  // Stores that number commands (allocates_commands): sites whose command log's head must
  // be read from the store again (after an append here or another process's), and the
  // reading.
  mutable std::set<std::string> heads_dirty_;
  void FreshenDownHead(const std::string& site) const;
  void FreshenDownHeads() const;
  std::set<std::string> sessions_lost_;  // sites whose session must end after this frame
  TimeMs counts_read_at_ = -1'000'000;   // run counts read from a shared store
  void Handle(const std::string& site, const std::string& peer, const Message& m,
              HubOutput* out);
  void Emit(const std::string& site, const SyncOutput& so, HubOutput* out);
  Status NewIncarnation(SiteRecord& site, uint64_t incarnation);
  // The first HELLO of a site since the restore: adopts the commands it applied past what
  // this store saw acknowledged, and sends the log's tail again after them.
  Status ReconcileRestore(SiteRecord& site, uint64_t site_applied);
  bool Unreconciled(const SiteRecord& site) const;
  std::string UnreconciledWhy(const SiteRecord& site) const;
  // A HELLO shows the site ahead of this store (an undeclared restore): refused, logged
  // and audited once per site.
  void RefuseAhead(SiteRecord& site, const std::string& peer, const std::string& why,
                   const Message& hello, HubOutput* out);
  void RefuseStaleHub(SiteRecord& site, const std::string& peer, uint64_t site_epoch,
                      HubOutput* out);
  void RefuseRetired(SiteRecord& site, const std::string& peer, uint64_t incarnation,
                     HubOutput* out);
  void Account(const SyncCounters& before, const SyncCounters& after);
  void LogUnknownKey(const std::string& key, const char* reason);
  void Audit(HubStore::Txn* txn, nlohmann::json event);
  // Audit lines that need no write of their own (a site coming online), committed
  // together at the next Tick.
  void FlushDeferredAudit();
  HubStore::Txn deferred_audit_;
  // Appends commands to a site's downstream log (in txn; the caller commits, then
  // calls Commit* to publish the new head).
  void Enqueue(SiteRecord& site, const Command& c, HubStore::Txn* txn);
  // Placement commands that bring `site` in line with the applied definitions.
  void Reconcile(SiteRecord& site, HubStore::Txn* txn);
  // Reconcile on a copy of every site; the copies that got commands, by name.
  std::map<std::string, SiteRecord> ReconcileAll(HubStore::Txn* txn);
  void PokeSites(const std::vector<std::string>& sites, HubOutput* out);
  Status CommitSites(HubStore::Txn& txn, std::map<std::string, SiteRecord>& changed);
  Status MaterializeEvent(const std::string& site, uint64_t seq, const Event& e,
                          std::map<std::string, HotRun>* runs, HubStore::Txn* txn);
  // A run as it is now: from the hot cache if held, else from the store.
  Result<std::optional<HubRun>> ReadRun(const std::string& id) const;
  // Runs by state: `delta` applied to the counts, written to txn (setting "run_counts");
  // the caller sets run_counts_ to the result after its commit succeeded.
  std::map<std::string, uint64_t> CountRuns(const std::map<std::string, int64_t>& delta,
                                            HubStore::Txn* txn) const;
  Status LoadRunCounts();
  // Retention (hub/retention.cpp): a batch's bytes and mark; trimming through mark k (the
  // bytes freed); the site quota, applied in the batch's transaction; age and budget.
  void NoteUpBatch(SiteRecord* site, uint64_t last_seq,
                   const std::vector<std::string>& entries) const;
  uint64_t TrimUpThrough(SiteRecord* site, size_t k, HubStore::Txn* txn) const;
  uint64_t TrimToQuota(SiteRecord* site, HubStore::Txn* txn);
  void Housekeep();

  nlohmann::json SiteJson(const SiteRecord& s) const;
  // One handler per op, on the decoded request (hub/operator_request.h).
  nlohmann::json Dispatch(const std::string& who, const OperatorRequest& r, HubOutput* out);
  nlohmann::json OpSiteAdd(const OperatorRequest& r, HubOutput* out);
  nlohmann::json OpSiteAccept(const OperatorRequest& r, HubOutput* out);
  nlohmann::json OpSiteRevoke(const OperatorRequest& r, HubOutput* out);
  nlohmann::json OpSiteLabel(const OperatorRequest& r, HubOutput* out);
  nlohmann::json OpSiteRemove(const OperatorRequest& r, HubOutput* out);
  nlohmann::json OpWorkflowApply(const std::string& who, const OperatorRequest& r,
                                 HubOutput* out);
  nlohmann::json OpWorkflowRemove(const OperatorRequest& r, HubOutput* out);
  nlohmann::json OpWorkflowList() const;
  nlohmann::json OpRunStart(const std::string& who, const OperatorRequest& r, HubOutput* out);
  nlohmann::json OpRunCancel(const std::string& who, const OperatorRequest& r, HubOutput* out);
  nlohmann::json OpRunApprove(const std::string& who, const OperatorRequest& r, HubOutput* out);
  nlohmann::json OpRunList(const OperatorRequest& r);
  nlohmann::json OpRunShow(const OperatorRequest& r);
  nlohmann::json OpRunLogs(const OperatorRequest& r);
  nlohmann::json OpEvents(const OperatorRequest& r);
  // The fleet policy (docs/security.md): stored, then enqueued to every enrolled site.
  nlohmann::json OpPolicyPush(const std::string& who, const OperatorRequest& r, HubOutput* out);
  nlohmann::json OpPolicyShow() const;
  nlohmann::json OpSiteEvents(const OperatorRequest& r);
  Status LoadPolicy();
  // Artifacts and bundles (hub/bundles.cpp).
  nlohmann::json OpArtifactHas(const OperatorRequest& r);
  nlohmann::json OpArtifactChunk(const OperatorRequest& r);
  nlohmann::json OpArtifactCommit(const std::string& who, const OperatorRequest& r);
  nlohmann::json OpArtifactList() const;
  nlohmann::json OpBundleExport(const std::string& who, const OperatorRequest& r);
  nlohmann::json OpBundleRecord(const OperatorRequest& r);
  nlohmann::json OpBundleImport(const std::string& who, const OperatorRequest& r, HubOutput* out);
  void ServeArtifact(const std::string& site, const std::string& peer, const Message& m,
                     HubOutput* out);
  // The artifacts (digest -> name) the definitions placed on `site` name.
  std::map<std::string, std::string> NeededArtifacts(const SiteRecord& site) const;
  const std::map<std::string, std::string>& ArtifactsOf(const WorkflowRecord& d) const;
  // Brings a site's incarnation in line with one it announced (HELLO or a bundle); false
  // (and `why`) when the incarnation was retired or the store failed.
  bool AdoptIncarnation(SiteRecord& site, uint64_t incarnation, std::string* why);
  nlohmann::json SiteArtifactsJson(const SiteRecord& s) const;

  HubStore* store_;
  const Clock& clock_;
  Rng* rng_;
  HubOptions options_;
  Faults faults_;
  mutable std::map<std::string, SiteRecord> sites_;  // down_head freshened in const reads
  std::map<std::string, std::string> by_key_;  // public key -> site name
  std::map<std::string, WorkflowRecord> defs_;
  std::optional<Signed> policy_;  // the newest fleet policy pushed (root-signed)
  int64_t policy_version_ = 0;
  std::map<std::string, std::unique_ptr<Conn>> conns_;  // site -> live session
  HubCounters counters_;
  std::map<std::string, ArtifactRecord> artifacts_;  // digest -> record
  mutable std::map<std::string, std::map<std::string, std::string>> def_artifacts_;  // by hash
  struct Transfer {
    uint64_t chunks_served = 0;
    uint64_t chunks = 0;
    TimeMs last = 0;
  };
  std::map<std::string, std::map<std::string, Transfer>> transfers_;  // site -> digest
  struct ExportPlan;
  std::map<std::string, std::shared_ptr<ExportPlan>> exports_;  // bundle id -> plan
  uint64_t hub_epoch_ = 0;  // 0 until a restore is declared
  std::set<std::string> stale_noted_;  // sites whose refusal of this store was logged
  uint64_t audit_next_ = 1;
  RunCache run_cache_;
  // The sessions' timers, ordered: Tick and NextDeadline cost the sessions that are due,
  // not the 10,000 that are connected. A site whose session was touched (Emit, Drop) is
  // marked and its deadline read again before the next look.
  void RefreshDeadlines() const;
  mutable std::set<std::string> deadline_dirty_;
  mutable std::set<std::pair<TimeMs, std::string>> deadlines_;
  mutable std::map<std::string, TimeMs> deadline_at_;
  TimeMs housekeep_at_ = 0;                     // next retention check (0: at the first tick)
  std::map<std::string, TimeMs> quota_logged_;  // site -> when its quota was last logged
  // Runs in the run view by state, kept as they change (status, /metrics and the
  // dashboard read these instead of every run) and stored beside them.
  std::map<std::string, uint64_t> run_counts_;
  TimeMs unknown_logged_at_ = -1'000'000;
  uint64_t unknown_suppressed_ = 0;
  // faults_.ack_before_durable: batches acknowledged but not yet written.
  std::vector<std::pair<std::string, std::pair<uint64_t, std::vector<std::string>>>> deferred_;
  TimeMs deferred_since_ = 0;
  // Group commit: batches applied since the last sync, and what waits for that sync.
  bool sync_failed_ = false;
  uint64_t unsynced_batches_ = 0;
  std::vector<HubOutput::Frame> held_;
  bool group_commit() const { return options_.group_commit > 1 && store_->defers_sync(); }
  void HandleSiteFrame(const std::string& identity, const std::string& peer,
                       std::string_view payload, HubOutput* out);
};

}  // namespace outpost
