// Couriers: bundles carried on media between the hub and some sites (scenario `couriers`,
// docs/simulator.md). A courier runs the real code at both ends — HubCore's bundle.export,
// bundle.record and bundle.import operator ops, and the site's ImportDownVolume and
// ExportUpVolume (site-agent/site_bundles.h) — and between them delays, loses, duplicates
// and reorders the volumes. A volume for a process that is down waits for it. The same
// invariants as for the network then hold: every event at the hub once, every command
// applied once, the run views converge.
//
// Not thread-safe: the simulation's one thread.
#pragma once

#include <string>

#include "common/clock.h"
#include "common/random.h"
#include "simulator/scenario.h"

namespace outpost::sim {

class EventQueue;
class Invariants;
class SimNetwork;
class World;
struct Report;
struct SimSite;

class Couriers {
 public:
  Couriers(const Scenario& scenario, World* world, SimNetwork* net, EventQueue* queue, Rng* rng,
           Report* report, Invariants* invariants);
  // The couriers that serve `s`, from t0 until end.
  void Schedule(SimSite& s, TimeMs t0, TimeMs end);

 private:
  void Trip(SimSite& s, const CourierSpec& c);
  void Carry(SimSite& s, const CourierSpec& c, std::string volume, bool to_site);
  void DeliverToSite(SimSite& s, const std::string& volume, int attempt);
  void DeliverToHub(const std::string& volume, int attempt);

  const Scenario& sc_;
  World* world_;
  SimNetwork* net_;
  EventQueue* queue_;
  Rng* rng_;
  Report* report_;
  Invariants* invariants_;
};

}  // namespace outpost::sim
