// The simulated network between the hub and the sites. Each site has one link (the
// scenario's LinkSpec: latency, jitter, bandwidth, loss, connection resets) and at most
// one connection on it; a connection is numbered (its epoch), and frames of an older one
// are lost. Frames are encoded and decoded as on the wire and travel as events on the
// EventQueue. Partitions and flapping black-hole a link without anyone being told; a reset
// drops the connection and the site sees it at once; a site reconnects with backoff.
//
// Frames that arrive are handed to the hub's HubCore or the site's SyncSession in the
// World, and the hub's copy of the site's log is checked after every frame it takes.
//
// Not thread-safe: everything runs on the simulation's one thread, from its EventQueue.
#pragma once

#include <string>
#include <vector>

#include "common/protocol/sync_session.h"
#include "common/random.h"
#include "hub/hub_core.h"
#include "simulator/event_queue.h"
#include "simulator/scenario.h"
#include "simulator/sim.h"

namespace outpost::sim {

class Invariants;
class World;
struct SimSite;

class SimNetwork {
 public:
  SimNetwork(const Scenario& scenario, EventQueue* queue, Rng* rng, Report* report, World* world,
             Invariants* invariants);
  SimNetwork(const SimNetwork&) = delete;
  SimNetwork& operator=(const SimNetwork&) = delete;

  // A new site's link: the last of the scenario's links that names it.
  void AddSite(const SimSite& s);
  // The scenario starts at t0: its partition and flapping windows move to absolute time.
  void Start(TimeMs t0);
  // The site's first connection attempt, in the first second.
  void ScheduleFirstConnect(SimSite& s, TimeMs t0);
  // The link's connection resets, until `end`.
  void ScheduleResets(SimSite& s, TimeMs t0, TimeMs end);

  bool connected(const SimSite& s) const;
  bool reconnect_pending(const SimSite& s) const;

  // Sends what the site's session has for the hub, and drops the connection if it says so.
  void SiteSend(SimSite& s, const SyncOutput& so);
  // Sends the hub's frames to the sites they are for.
  void HubEmit(const HubOutput& out);
  // The connection breaks; the site sees it and reconnects.
  void Drop(SimSite& s, const std::string& why);
  void ScheduleReconnect(SimSite& s);
  void TryConnect(SimSite& s);

  // The agent started (not connected yet) or crashed (its connection is gone).
  void OnSiteOpened(const SimSite& s);
  void OnSiteCrashed(const SimSite& s);
  // After the heal: the link is up and the site reconnects if it is not connected.
  void Heal(SimSite& s);

 private:
  struct Link {
    LinkSpec spec;
    bool connected = false;
    uint64_t epoch = 0;  // connection number; frames of older connections are lost
    int reconnect_attempt = 0;
    bool reconnect_pending = false;
    TimeMs down_until = 0;              // after a reset
    TimeMs busy_up = 0, busy_down = 0;  // bandwidth: when the link is free again
  };

  // Whether a partition, flapping or a reset cuts the link in that direction now.
  bool Blocked(const SimSite& s, bool upstream) const;
  // A frame on a link that is up is lost with the link's drop rate.
  bool Lost(const Link& link);
  // When a frame of `bytes` sent now arrives; `busy` is the direction's queue.
  TimeMs Arrival(const Link& link, size_t bytes, TimeMs* busy);
  void DeliverToHub(SimSite& s, uint64_t epoch, const std::string& bytes);
  void DeliverToSite(SimSite& s, uint64_t epoch, const std::string& bytes);

  const Scenario& sc_;
  EventQueue* queue_;
  Rng* rng_;  // the simulation's: loss, jitter, backoff
  Report* report_;
  World* world_;
  Invariants* invariants_;
  std::vector<Link> links_;  // by SimSite::index
  std::vector<Window> partitions_, flapping_;
};

}  // namespace outpost::sim
