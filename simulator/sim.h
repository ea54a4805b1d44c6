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

#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include <rocksdb/env.h>

#include "common/clock.h"
#include "common/random.h"
#include "hub/hub_core.h"
#include "simulator/scenario.h"
#include "site-agent/agent_store.h"
#include "site-agent/engine.h"
#include "site-agent/log_stream.h"
#include "site-agent/scheduler.h"

namespace outpost::sim {

// Protocol mutations the simulator must catch (the mutation check).
enum class Mutation { kNone, kAckBeforeDurable, kApplyGaps, kForgetWatermark };
Result<Mutation> ParseMutation(const std::string& name);
const char* MutationName(Mutation m);

struct Options {
  uint64_t seed = 1;
  Mutation mutation = Mutation::kNone;
};

struct InvariantResult {
  std::string name;
  bool ok = true;
  std::string detail;  // first violation, or a summary when ok
};

struct Report {
  std::string scenario;
  uint64_t seed = 0;
  Mutation mutation = Mutation::kNone;
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
  uint64_t agent_crashes = 0;
  uint64_t hub_crashes = 0;
  uint64_t resets = 0;
  TimeMs convergence_ms = -1;  // after the last heal; -1: did not converge
  uint64_t trace_hash = 0;
  std::vector<InvariantResult> invariants;
  bool ok() const;
};

class Simulation {
 public:
  Simulation(Scenario scenario, Options options);
  ~Simulation();
  Report Run();

 private:
  struct Site;
  class SkewedClock;
  class Inbox;
  struct Item {
    TimeMs at;
    uint64_t order;
    std::function<void()> fn;
    bool operator>(const Item& o) const { return at != o.at ? at > o.at : order > o.order; }
  };

  void At(TimeMs t, std::function<void()> fn);
  void Trace(const std::string& what);
  void Violation(const std::string& invariant, const std::string& detail);

  // Sites.
  Status OpenSite(Site& s);
  void CrashSite(Site& s);
  void Activity(Site& s);
  Status Flush(Site& s, const std::vector<StateWrite>& extra);
  void ScheduleWake(Site& s);
  void SiteSend(Site& s, const SyncOutput& so);
  void SiteDrop(Site& s, const std::string& why);
  void ScheduleReconnect(Site& s);
  void TryConnect(Site& s);
  void StartLocalRun(Site& s, const WorkflowSpec& w);
  bool Blocked(const Site& s, bool upstream) const;

  // Hub.
  Status OpenHub();
  void CrashHub();
  void HubEmit(const HubOutput& out);
  void HubActivity();
  void HubTicker();
  void CheckPrefix(Site& s);
  void Request(const Periodic& p, int n);

  // The end.
  void Heal();
  bool Converged();
  void FinalChecks();
  void CheckSchedules(Site& s);

  Scenario sc_;
  Options opt_;
  ManualClock clock_;
  Rng rng_;
  Rng hub_rng_;
  std::unique_ptr<rocksdb::Env> env_;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> queue_;
  uint64_t order_ = 0;
  std::vector<std::unique_ptr<Site>> sites_;
  std::map<std::string, Site*> by_name_;
  std::map<std::string, std::shared_ptr<const WorkflowDef>> defs_;
  std::unique_ptr<HubStore> hub_store_;
  std::unique_ptr<HubCore> hub_;
  bool hub_alive_ = false;
  bool hub_ticker_ = false;
  // Recurring actions (ticks, crashes, resets); their lambdas refer to themselves by
  // raw pointer, this owns them.
  std::vector<std::shared_ptr<std::function<void()>>> recurring_;
  bool healed_ = false;
  Report report_;
  std::map<std::string, bool> violated_;
  uint64_t hash_ = 1469598103934665603ULL;
};

}  // namespace outpost::sim
