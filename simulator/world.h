// The simulated world: the hub and the sites as processes. The hub is the real HubCore on
// a RocksHubStore; each site is the real Engine, AgentStore/EventLog, Scheduler, hub command
// application and SyncSession, on its own skewed clock, with simulated task processes. All
// databases live on one in-memory RocksDB Env. A crash loses a process's memory and its
// task processes and keeps its database, which holds exactly what was synced, because
// every write is synced; a restart reopens it. A hub outage is a hub crash with a fixed
// restart time, so the world schedules those too.
//
// The world drives its processes' timers (each site's wake-ups, the hub's once-a-second
// tick) and its crashes on the EventQueue; it sends and is delivered frames through the
// SimNetwork, and reports store errors to the Invariants.
//
// Not thread-safe: everything runs on the simulation's one thread, from its EventQueue.
#pragma once

#include <rocksdb/env.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/keys.h"
#include "common/random.h"
#include "hub/hub_core.h"
#include "simulator/event_queue.h"
#include "simulator/scenario.h"
#include "simulator/sim.h"
#include "simulator/sim_storage.h"
#include "site-agent/agent_store.h"
#include "site-agent/engine.h"
#include "site-agent/log_stream.h"
#include "site-agent/scheduler.h"

namespace outpost::sim {

class Invariants;
class SimNetwork;

// A site's clock: the simulation's clock, off by a fixed skew.
class SkewedClock final : public Clock {
 public:
  SkewedClock(const ManualClock& base, DurationMs skew) : base_(base), skew_(skew) {}
  TimeMs Now() const override { return base_.Now() + skew_; }
  DurationMs skew() const { return skew_; }

 private:
  const ManualClock& base_;
  DurationMs skew_;
};

// One site: what it is, its agent process and that process's task processes. Its link
// and connection are the SimNetwork's.
struct SimSite {
  SimSite(const ManualClock& base, DurationMs skew, uint64_t seed) : clock(base, skew), rng(seed) {}

  std::string name;
  std::map<std::string, std::string> labels;
  size_t index = 0;  // in World::sites()
  SkewedClock clock;
  Rng rng;
  uint64_t incarnation = 0;
  CurveKeys keys;  // the site's CURVE keypair (bundles are sealed with it)

  // The agent; everything from `store` on is lost in a crash and rebuilt by OpenSite.
  bool alive = false;
  uint64_t generation = 0;  // bumps on every crash; stale timers check it
  std::unique_ptr<AgentStore> store;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<Scheduler> sched;  // the scenario's scheduled workflows that target it
  std::unique_ptr<EventLogStream> up;
  std::unique_ptr<IncomingStream> inbox;
  std::unique_ptr<SyncSession> session;
  uint64_t down_applied = 0;
  uint64_t hub_epoch = 0;  // the hub epoch reconciled with (state key sync/hub_epoch)
  uint64_t down_digest = 0;  // CommandDigest of the last command applied
  Effects pending;
  bool log_grew = false;
  TimeMs wake = 0;                          // the pending wake-up, 0 if none
  std::map<std::string, uint64_t> running;  // task processes: attempt -> token of its exit
  uint64_t next_token = 0;

  std::vector<std::string> shadow;  // every event this site ever logged, in order
  // Lost disks: each replaced incarnation's shadow and how much of it the hub had
  // acknowledged when the disk went.
  struct Retired {
    uint64_t incarnation = 0;
    std::vector<std::string> shadow;
    uint64_t acked = 0;
  };
  std::vector<Retired> retired;
  bool crash_armed = false;  // a crash point waits for the site's next writes
  // What the simulated processes did, for the reference model: (run, task) -> attempt ->
  // 'R' running, 'S' exited 0, 'F' failed, 'K' killed by the agent, 'I' died in a crash.
  std::map<std::pair<std::string, std::string>, std::map<int, char>> processes;
};

class World {
 public:
  World(const Scenario& scenario, Options options, EventQueue* queue, Rng* rng, Report* report,
        Invariants* invariants);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  // The network the sessions send through; set once, before anything runs.
  void set_network(SimNetwork* net) { net_ = net; }

  // The scenario's workflow definitions, parsed once and shared by every site.
  void LoadWorkflows();
  const std::shared_ptr<const WorkflowDef>& def(const std::string& name) const {
    return defs_.at(name);
  }
  // A definition by its hash: the scenario's and every revision an operator applied.
  std::shared_ptr<const WorkflowDef> def_by_hash(const std::string& hash) const {
    auto it = by_hash_.find(hash);
    return it == by_hash_.end() ? nullptr : it->second;
  }
  void AddRevision(const std::string& source);

  // The fleet. Sites are added before the run starts and never removed.
  SimSite& AddSite(std::string name, std::map<std::string, std::string> labels, DurationMs skew,
                   uint64_t seed);
  const std::vector<std::unique_ptr<SimSite>>& sites() const { return sites_; }
  SimSite* site(const std::string& name) const;

  // A site's agent starts from its database.
  Status OpenSite(SimSite& s);
  // OpenSite and a first Activity; false, with a store error reported, if it failed.
  bool ReopenSite(SimSite& s);
  // The agent dies: killed (its written data stays, as in the page cache) or, with
  // `power_cut`, the machine loses power (what was not synced is lost).
  void CrashSite(SimSite& s, bool power_cut = false);
  // The site's disk is lost: the agent dies and is reinstalled with an empty database
  // (a new incarnation) after `down`.
  void LoseDisk(SimSite& s);
  // The disk faults of the scenario's `storage` for one site and the hub, until `end`.
  void ScheduleDiskFaults(SimSite& s, TimeMs t0, TimeMs end);
  // From now until the heal, the disks fail as the scenario's `storage` says (the fleet
  // is set up on good disks).
  void StartDiskFaults();
  // After every event: processes whose armed crash point fired die, and a hub whose store
  // write failed reopens it, as the daemon does.
  void AfterEvent();
  // The process's armed crash fired during the current step: what it would send is lost.
  bool dying(const SimSite& s) const { return s.crash_armed && storage_->crashed(SiteDir(s)); }
  bool hub_dying() const { return hub_crash_armed_ && storage_->crashed(kHubDir); }
  static std::string SiteDir(const SimSite& s) { return "/sites/" + s.name; }
  static constexpr const char* kHubDir = "/hub";
  const SimStorage& storage() const { return *storage_; }
  // Runs what is due on the site: engine, schedules, its session; writes the results and
  // starts or kills task processes; sets the next wake-up.
  void Activity(SimSite& s);
  void ScheduleWake(SimSite& s);
  // The scenario's agent crashes for one site, until `end`.
  void ScheduleCrashes(SimSite& s, TimeMs t0, TimeMs end);

  // The hub process starts from its database.
  Status OpenHub();
  void CrashHub(bool power_cut = false);
  // The hub's timers: run from the once-a-second tick.
  void HubActivity();
  // Group commit: after a frame the hub applied, its driver syncs when no frame is
  // waiting; here, kHubFlushAfterMs later (the frames that arrive meanwhile share one
  // synced write).
  void HubFlushSoon(const SimSite& from);
  static constexpr DurationMs kHubFlushAfterMs = 3;
  // The scenario's hub outages and hub crashes, until `end`.
  void ScheduleHubFaults(TimeMs t0, TimeMs end);
  bool hub_alive() const { return hub_alive_; }
  const std::string& hub_public_key() const { return hub_keys_.public_z85; }
  // A keypair from the simulation's seed (replays the same).
  static CurveKeys SeededKeys(Rng* rng);
  HubCore& hub() { return *hub_; }  // only while hub_alive()
  const HubCore& hub() const { return *hub_; }
  const HubStore& hub_store() const { return *hub_store_; }

  // The heal: from now on nothing crashes and schedules stop firing. Restarts the hub if
  // it is down; the caller restarts the sites.
  void Heal();
  bool healed() const { return healed_; }

 private:
  class Inbox;

  Status LoadSchedules(SimSite& s);
  // Store errors are expected under injected disk faults (counted, retried); without
  // them they are violations.
  void StoreError(const std::string& who, const Status& st);
  bool PowerCutDraw();
  void ScheduleFull(const std::string& dir, TimeMs t0, TimeMs end);
  void ArmCrash(const std::string& dir);
  // Brings the shadow in line with the reopened log: events a failed write did land are
  // added; a synced event that is gone is a violation.
  void ReconcileShadow(SimSite& s);
  void RestartSite(SimSite& s);
  void DropProcessState(SimSite& s);
  void RestartHub();
  // scenario storage.hub_restores: at a restart, back the stopped hub up, or put the last
  // backup in place of its disk and declare the restore (docs/simulator.md).
  void BackupOrRestoreHub();
  // The operator stops the restored hub it started undeclared, and declares it.
  void DeclareLate();
  // Remembers how far each site's stream was applied at the hub that is going away.
  void NoteHubWatermarks();
  void OpenHubOrReport();
  void HubTicker();
  // Commits the site's pending effects and `extra`, then acts on what they did, until
  // nothing is pending.
  Status Flush(SimSite& s, const std::vector<StateWrite>& extra);
  Status Commit(SimSite& s, const std::vector<StateWrite>& extra);
  void Spawn(SimSite& s, const StartProcess& sp);
  void Kill(SimSite& s, const KillProcess& k);
  void ExitAt(SimSite& s, TimeMs at, const AttemptKey& key, uint64_t token, ExitInfo exit);
  void Finished(SimSite& s, const std::string& run_id);

  const Scenario& sc_;
  const Options opt_;
  EventQueue* queue_;
  Rng* rng_;  // the simulation's: crash times
  Report* report_;
  Invariants* invariants_;
  SimNetwork* net_ = nullptr;
  Rng hub_rng_;
  std::unique_ptr<SimStorage> storage_;
  bool hub_crash_armed_ = false;
  bool disk_faults_on_ = false;
  uint64_t crashes_seen_ = 0;  // SimStorage::crash_points_fired() at the last AfterEvent
  StorageFaults DiskFaults() const;
  std::map<std::string, std::shared_ptr<const WorkflowDef>> defs_;
  std::map<std::string, std::shared_ptr<const WorkflowDef>> by_hash_;
  std::vector<std::unique_ptr<SimSite>> sites_;
  std::map<std::string, SimSite*> by_name_;
  std::unique_ptr<HubStore> hub_store_;
  std::unique_ptr<HubCore> hub_;
  bool hub_alive_ = false;
  bool hub_ticker_ = false;
  bool hub_flush_queued_ = false;
  std::set<size_t> held_from_;  // sites whose frames the held group applied (their checks wait)
  bool healed_ = false;
  CurveKeys hub_keys_;
  std::optional<SimStorage::Backup> hub_backup_;
  bool declare_restore_ = false;
  // The furthest any hub applied each (site, incarnation) stream: a restore may lose at
  // most what lies between the backup and this.
  std::map<std::pair<std::string, uint64_t>, uint64_t> hub_applied_max_;
};

}  // namespace outpost::sim
