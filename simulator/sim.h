// Simulation: one hub and many sites in one process under virtual time.
//
// What is real: HubCore and HubStore, each site's Engine, AgentStore/EventLog and hub
// command application (site-agent/commands.h), both ends' SyncSession, the wire codec,
// RocksDB (on one in-memory Env). What is simulated: time (one virtual clock, skewed per
// site), task processes (durations and failure rates from `run: [sim, DURATION, RATE]`),
// the network (latency, jitter, bandwidth, loss, resets, partitions, flapping) and crashes
// (a crashed agent or hub loses everything but its database; the database holds exactly
// what was synced, because every write is synced).
//
// Everything is driven by one event queue ordered by (time, insertion order) and one seeded
// Rng, so a seed replays the same run: the trace hash printed at the end is equal on every
// run with the same scenario, seed and build.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/faults.h"
#include "common/random.h"
#include "common/status.h"
#include "simulator/scenario.h"

namespace outpost::sim {

class EventQueue;
class Invariants;
class SimNetwork;
class Workload;
class Couriers;
class World;
struct SimSite;

struct Options {
  uint64_t seed = 1;
  // The planted bug of the mutation check (common/faults.h), by name; "none" for none.
  std::string mutation = "none";
  Faults faults;
};

struct InvariantResult {
  std::string name;
  bool ok = true;
  std::string detail;  // first violation, or a summary when ok
};

struct Report {
  std::string scenario;
  std::string swarm;  // what a swarm seed drew (empty: not a swarm scenario)
  uint64_t seed = 0;
  std::string mutation = "none";
  TimeMs virtual_ms = 0;
  double wall_seconds = 0;
  size_t sites = 0;
  uint64_t events = 0;
  uint64_t frames = 0;
  uint64_t frames_dropped = 0;
  uint64_t wire_bytes = 0;
  uint64_t commands = 0;
  uint64_t runs = 0;
  uint64_t runs_succeeded = 0;
  uint64_t local_runs = 0;
  uint64_t local_runs_offline = 0;  // started while the site had no session with the hub
  uint64_t scheduled_runs = 0;      // started by the sites' own schedules
  uint64_t requests = 0;
  uint64_t requests_refused = 0;
  uint64_t operator_actions = 0;  // cancels, approvals, relabels, applies, removals
  uint64_t agent_crashes = 0;
  uint64_t hub_crashes = 0;
  uint64_t resets = 0;
  uint64_t bundles_carried = 0;   // volumes a courier took (scenario couriers)
  uint64_t bundles_lost = 0;
  uint64_t bundles_imported = 0;  // deliveries, duplicates included
  uint64_t bundle_commands_applied = 0;
  // Storage (scenario `storage`): what the simulated disks did, and what it cost.
  uint64_t store_errors = 0;        // writes or reopens that failed under injected faults
  uint64_t hub_store_restarts = 0;  // the hub reopened its store after a failed write
  uint64_t reinstalls = 0;          // sites whose disk was lost (new incarnation)
  uint64_t hub_restores = 0;        // hub disks replaced by an older backup (declared)
  uint64_t events_lost_in_restore = 0;    // events the sites had trimmed that the backup lacked
  uint64_t commands_adopted_in_restore = 0;  // commands sites applied past the backup's acks
  uint64_t power_cuts = 0;
  uint64_t crash_points = 0;
  uint64_t bytes_lost = 0;          // unsynced bytes dropped by power cuts
  uint64_t disk_faults = 0;         // write errors, fsync errors, full-disk refusals, bad reads
  TimeMs convergence_ms = -1;  // after the last heal; -1: did not converge
  uint64_t trace_hash = 0;
  std::vector<InvariantResult> invariants;
  bool ok() const;
};

// One run of a scenario with one seed, composed of the World (the hub and site processes,
// their crashes; world.h), the SimNetwork between them (network.h), the Workload that
// drives them (workload.h) and the Invariants that check them (invariants.h), all on one
// EventQueue (event_queue.h). Run() runs the whole simulation on the calling thread.
class Simulation {
 public:
  Simulation(Scenario scenario, Options options);
  ~Simulation();
  Report Run();

 private:
  // Creates the sites, enrolls them at the hub and applies the workflows.
  void BuildFleet();
  // Starts a site's agent and schedules its connection, local runs, crashes and resets.
  bool StartSite(SimSite& s, TimeMs t0, TimeMs end);
  // The end of the scenario: every fault ends, every process restarts.
  void Heal();
  // Runs events until converged or past the deadline; whether it converged.
  bool RunUntilConverged(TimeMs end);

  Scenario sc_;
  Options opt_;
  Rng rng_;  // shared by the parts; the order of its draws is part of the replay
  Report report_;
  std::unique_ptr<EventQueue> queue_;
  std::unique_ptr<Invariants> invariants_;
  std::unique_ptr<World> world_;
  std::unique_ptr<SimNetwork> net_;
  std::unique_ptr<Workload> workload_;
  std::unique_ptr<Couriers> couriers_;
};

}  // namespace outpost::sim
