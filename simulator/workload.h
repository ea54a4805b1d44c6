// The simulation's workload: what the operator does at the hub (enrolls the sites, applies
// the workflows, requests runs, sometimes retrying a request with the same id), what the
// sites start on their own (local runs), and how long their task processes take and
// whether they fail (`run: [sim, DURATION, FAILURE_RATE]`). The sites' own schedules are
// the real Scheduler, run by the World.
//
// Not thread-safe: everything runs on the simulation's one thread, from its EventQueue.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/random.h"
#include "simulator/event_queue.h"
#include "simulator/scenario.h"
#include "simulator/sim.h"

namespace outpost::sim {

class Invariants;
class SimNetwork;
class World;
struct SimSite;

// A simulated task process: `run: [sim, DURATION, FAILURE_RATE]` takes DURATION ±50% and
// fails with that probability; anything else takes a second ±50% and succeeds.
struct SimTask {
  DurationMs duration = 0;
  bool fails = false;
};
SimTask DrawTask(const std::vector<std::string>& argv, Rng* rng);

class Workload {
 public:
  Workload(const Scenario& scenario, EventQueue* queue, Rng* rng, Report* report, World* world,
           SimNetwork* net, Invariants* invariants);
  Workload(const Workload&) = delete;
  Workload& operator=(const Workload&) = delete;

  // The operator enrolls a site with its labels and a key of its own.
  void Enroll(const SimSite& s);
  // The operator applies the scenario's workflows with their target selectors.
  void ApplyWorkflows();
  // The site's local runs, each at its period from a random start, until `end`.
  void ScheduleLocalRuns(SimSite& s, TimeMs t0, TimeMs end);
  // The operator's run requests: single ones at their time, periodic ones until `end`.
  void ScheduleRequests(TimeMs t0, TimeMs end);
  // The scenario's other operator actions (`operators`), until `end`.
  void ScheduleOperators(TimeMs t0, TimeMs end);

 private:
  void StartLocalRun(SimSite& s, const WorkflowSpec& w);
  // Request number n; request ids are "req-N".
  void Request(const Periodic& p, int n);
  // The operator's client sends a request again; it must get the runs of the first time.
  void Retry(const nlohmann::json& request, const nlohmann::json& first_runs);
  void OperatorAction();
  nlohmann::json Operate(const nlohmann::json& request);

  const Scenario& sc_;
  EventQueue* queue_;
  Rng* rng_;  // the simulation's: keys, local run phases, duplicate requests
  Report* report_;
  World* world_;
  SimNetwork* net_;
  Invariants* invariants_;
  // Runs the hub made for requests, by workflow (for cancels and approvals).
  std::map<std::string, std::vector<std::string>> runs_;
  int revision_ = 0;  // of re-applied definitions
};

}  // namespace outpost::sim
