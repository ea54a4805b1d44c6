#include "simulator/sim.h"

#include <algorithm>
#include <chrono>

#include "simulator/courier.h"
#include "simulator/event_queue.h"
#include "simulator/invariants.h"
#include "simulator/network.h"
#include "simulator/workload.h"
#include "simulator/world.h"

namespace outpost::sim {

bool Report::ok() const {
  return std::all_of(invariants.begin(), invariants.end(), [](const auto& i) { return i.ok; });
}

Simulation::Simulation(Scenario scenario, Options options)
    : sc_(std::move(scenario)), opt_(options), rng_(options.seed) {
  report_.scenario = sc_.name.empty() ? sc_.file : sc_.name;
  if (sc_.swarm) sc_ = DrawSwarm(sc_, opt_.seed, &report_.swarm);
  report_.seed = opt_.seed;
  report_.mutation = opt_.mutation;
  queue_ = std::make_unique<EventQueue>();
  invariants_ = std::make_unique<Invariants>(sc_, *queue_, &report_);
  world_ = std::make_unique<World>(sc_, opt_, queue_.get(), &rng_, &report_, invariants_.get());
  net_ = std::make_unique<SimNetwork>(sc_, queue_.get(), &rng_, &report_, world_.get(),
                                      invariants_.get());
  world_->set_network(net_.get());
  queue_->set_after_each([w = world_.get()] { w->AfterEvent(); });
  workload_ = std::make_unique<Workload>(sc_, queue_.get(), &rng_, &report_, world_.get(),
                                         net_.get(), invariants_.get());
  couriers_ = std::make_unique<Couriers>(sc_, world_.get(), net_.get(), queue_.get(), &rng_,
                                         &report_, invariants_.get());
}

Simulation::~Simulation() = default;

Report Simulation::Run() {
  const auto wall0 = std::chrono::steady_clock::now();
  world_->LoadWorkflows();
  if (Status s = world_->OpenHub(); !s.ok()) {
    invariants_->Violation("no store errors", "hub open: " + s.ToString());
    return report_;
  }
  BuildFleet();
  world_->StartDiskFaults();
  const TimeMs t0 = queue_->Now();
  const TimeMs end = t0 + sc_.duration;
  for (const auto& s : world_->sites()) {
    if (!StartSite(*s, t0, end)) return report_;
  }
  workload_->ScheduleRequests(t0, end);
  workload_->ScheduleOperators(t0, end);
  world_->ScheduleHubFaults(t0, end);
  net_->Start(t0);
  queue_->At(end, [this] { Heal(); });
  const bool converged = RunUntilConverged(end);
  report_.virtual_ms = queue_->Now() - t0;
  if (!converged) invariants_->NotConverged(*world_, *net_);
  invariants_->FinalChecks(*world_);
  report_.trace_hash = queue_->trace_hash();
  report_.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  return report_;
}

// The fleet: enrolled, labelled, with workflows applied by label.
void Simulation::BuildFleet() {
  for (const auto& g : sc_.sites) {
    for (int i = 1; i <= g.count; ++i) {
      const DurationMs skew = sc_.max_clock_skew > 0
                                  ? static_cast<DurationMs>(rng_.Uniform(
                                        static_cast<uint64_t>(2 * sc_.max_clock_skew))) -
                                        sc_.max_clock_skew
                                  : 0;
      SimSite& s = world_->AddSite(g.prefix + "-" + std::to_string(i), g.labels, skew, rng_.Next());
      s.incarnation = rng_.Next() | 1;
      // Sites a courier serves need real keys (bundles are sealed); others keep the
      // scenario's draws as they were.
      if (!sc_.couriers.empty()) s.keys = World::SeededKeys(&rng_);
      net_->AddSite(s);
      workload_->Enroll(s);
    }
  }
  report_.sites = world_->sites().size();
  workload_->ApplyWorkflows();
}

bool Simulation::StartSite(SimSite& s, TimeMs t0, TimeMs end) {
  // A first start that fails under injected disk faults is retried (World::ReopenSite);
  // without them it is a violation and the run stops.
  if (!world_->ReopenSite(s) && !sc_.storage.any()) return false;
  net_->ScheduleFirstConnect(s, t0);
  workload_->ScheduleLocalRuns(s, t0, end);
  world_->ScheduleCrashes(s, t0, end);
  world_->ScheduleDiskFaults(s, t0, end);
  couriers_->Schedule(s, t0, end);
  net_->ScheduleResets(s, t0, end);
  return true;
}

void Simulation::Heal() {
  world_->Heal();
  for (const auto& s : world_->sites()) {
    if (!s->alive && !world_->ReopenSite(*s)) continue;
    net_->Heal(*s);
  }
  world_->HubActivity();
}

// After the heal, convergence is checked every simulated second until the deadline.
bool Simulation::RunUntilConverged(TimeMs end) {
  const TimeMs deadline = end + sc_.converge_within;
  bool converged = false;
  queue_->Recurring(end + 1, [this, &converged, end, deadline]() -> std::optional<TimeMs> {
    if (invariants_->Converged(*world_)) {
      converged = true;
      report_.convergence_ms = queue_->Now() - end;
      return std::nullopt;
    }
    if (queue_->Now() < deadline) return queue_->Now() + 1000;
    return std::nullopt;
  });
  while (!converged && queue_->RunNext(deadline)) {
  }
  return converged;
}

}  // namespace outpost::sim
