// The simulation's invariants (docs/simulator.md, "Invariants"): the hub's copy of each
// site's log is a prefix of the site's log, checked after every frame the hub applies; the
// rest — every event at the hub exactly once, every hub command applied exactly once, no
// request id with two runs, the hub's view equal to each site's state, work while cut off,
// convergence, no store errors, schedules firing each tick once — checked after the heal.
// The checker reads the World and keeps its results in the Report: every invariant is
// listed from the start, and the first violation of each is kept with the time it happened.
//
// Not thread-safe: everything runs on the simulation's one thread, from its EventQueue.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "hub/hub_store.h"
#include "simulator/event_queue.h"
#include "simulator/scenario.h"
#include "simulator/sim.h"

namespace outpost::sim {

class SimNetwork;
class World;
struct SimSite;

class Invariants {
 public:
  // Lists every invariant in the report, as holding.
  Invariants(const Scenario& scenario, const EventQueue& queue, Report* report);
  Invariants(const Invariants&) = delete;
  Invariants& operator=(const Invariants&) = delete;

  // The invariant does not hold; the first violation's detail is kept.
  void Violation(const std::string& invariant, const std::string& detail);

  // After the hub applied a frame of the site's: the hub's durable copy of the site's log
  // is a prefix of it. Checks what the hub stored since the last check.
  void CheckPrefix(const World& world, const SimSite& s);

  // Every site is up and idle, and synced both ways with a hub that is up.
  bool Converged(const World& world) const;
  // The run did not converge in time: a violation naming the first site behind.
  void NotConverged(const World& world, const SimNetwork& net);
  // The checks after the run; also counts the fleet's events and scheduled runs.
  void FinalChecks(const World& world);

  // The hub was restored from a backup and the restore declared (docs/protocol.md, "A hub
  // restored from a backup"). From here on the hub's copy of a site's stream may lack the
  // entries between what the backup held and what some hub had applied before (the site
  // trimmed them once acknowledged) — and nothing else. `applied_max`: (site, incarnation)
  // -> the furthest any hub applied that stream.
  using Watermarks = std::map<std::pair<std::string, uint64_t>, uint64_t>;
  void OnHubRestored(const World& world, const Watermarks& applied_max);

 private:
  std::string FirstBehind(const World& world, const SimNetwork& net) const;
  void CheckSchedules(const SimSite& s);
  void CheckHubCopy(const World& world, const SimSite& s, const SiteRecord& rec);
  void CheckRuns(const World& world, const SimSite& s);
  void CheckRetired(const World& world, const SimSite& s);
  // The reference model: each finished run's tasks did what the definition and the
  // simulated processes' results imply.
  void CheckSemantics(const World& world, const SimSite& s);
  void CheckRequestedRuns(const World& world);
  void CheckOfflineWork();
  // Whether entry `seq` of a site's stream may be missing at the hub (a restore lost it).
  bool MayBeLost(const std::string& site, uint64_t incarnation, uint64_t seq) const;
  // Compares the hub's copy of one stream with what the site logged: `must_have` entries
  // at least (all of them if SIZE_MAX), missing ones only where a restore may have lost
  // them. Returns the entries missing; adds their runs to lost_runs_.
  uint64_t CompareCopy(const World& world, const SimSite& s, uint64_t incarnation,
                       const std::vector<std::string>& shadow, uint64_t must_have,
                       const char* what);

  const Scenario& sc_;
  const EventQueue& queue_;
  Report* report_;
  // By SimSite::index: the hub's copy of (incarnation) verified up to here.
  std::vector<std::pair<uint64_t, uint64_t>> checked_;
  // Ranges a hub restore may have lost, by (site, incarnation); and the runs that had
  // events in them (their view at the hub is partial, so it is not compared).
  std::map<std::pair<std::string, uint64_t>, std::vector<std::pair<uint64_t, uint64_t>>>
      lost_windows_;
  std::set<std::string> lost_runs_;
};

}  // namespace outpost::sim
