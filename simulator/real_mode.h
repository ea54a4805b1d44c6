// The simulator's real-process mode (outpost-sim --real): the real outpost-hub and N real
// outpost-agent processes on loopback, each agent's link through the FaultProxy, driven
// for a number of seconds with local runs, hub requests (some retried with the same id),
// link faults (latency, bandwidth, resets, black holes, cuts after N bytes), and SIGKILLs
// of agents and of the hub; then healed and checked with the simulator's invariants
// through the operator API and the agents' control sockets.
//
// Real time and real processes are not reproducible; the seed fixes the schedule of
// actions and faults, not the interleaving.
#pragma once

#include <string>

#include "simulator/sim.h"

namespace outpost::sim {

struct RealOptions {
  uint64_t seed = 1;
  int sites = 3;
  int seconds = 20;
  std::string hub_bin, agent_bin, ctl_bin;  // the real binaries
  bool keep = false;    // keep the data directory and logs
};

Report RunReal(const RealOptions& options);

}  // namespace outpost::sim
