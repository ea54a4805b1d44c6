// A simulator scenario: the fleet, its workflows and the faults to put it through.
// Parsed from YAML (docs/simulator.md has the reference); every error names the file,
// the line and the key.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "common/protocol/sync_session.h"

namespace outpost::sim {

struct SiteGroup {
  std::string prefix;  // sites are prefix-1, prefix-2, ...
  int count = 1;
  std::map<std::string, std::string> labels;
};

struct WorkflowSpec {
  std::string source;  // the YAML definition; `run: [sim, DURATION, FAILURE_RATE]` tasks
  std::map<std::string, std::string> target;
  std::string name;    // filled from the definition
};

struct Periodic {
  std::string workflow;
  DurationMs every = 0;
  std::map<std::string, std::string> target;  // requests: which sites
  TimeMs at = -1;                             // requests: a single one at this time
};

struct LinkSpec {
  std::string sites = "all";  // "all", a group prefix, or a site name
  DurationMs latency = 20;
  DurationMs jitter = 10;
  uint64_t bandwidth_bps = 0;  // 0: unlimited
  double drop = 0;             // probability a frame is lost
  DurationMs disconnect_every = 0;  // mean time between connection resets (0: none)
  DurationMs disconnect_for = 0;
};

struct Window {
  std::string sites = "all";
  TimeMs at = 0;
  DurationMs duration = 0;
  std::string direction = "both";  // partitions: both | up (site->hub lost) | down
  DurationMs period = 0;           // flapping: down for period/2, up for period/2
};

// Bundles carried on media between the hub and some sites (docs/simulator.md): every
// `every` (on average) a courier takes the hub's bundle for each such site and the site's
// return bundle; each arrives after `delay` (uniformly 0.5x-1.5x, so they overtake each
// other), is lost with probability `loss` and delivered twice with `duplicate`.
struct CourierSpec {
  std::string sites = "all";
  DurationMs every = 600'000;
  DurationMs delay = 1'800'000;
  double loss = 0;
  double duplicate = 0;
};

struct CrashSpec {
  DurationMs every = 0;  // mean time between crashes (0: none)
  DurationMs down = 0;   // how long it stays down
};

// The simulated disks (simulator/sim_storage.h, docs/simulator.md "Storage faults"), for
// the hub and every site alike.
struct StorageSpec {
  double power_cuts = 0;    // share of crashes that are power cuts (unsynced writes lost)
  double crash_points = 0;  // share of crashes that fall at a write (the 1st-4th WAL write on)
  double write_error = 0;   // each WAL append fails with this probability
  double sync_error = 0;    // each WAL sync fails (and may or may not have landed)
  double corrupt_read = 0;  // each read at recovery flips a byte with this probability
  DurationMs full_every = 0;  // mean time between full-disk periods per disk (0: none)
  DurationMs full_for = 0;
  DurationMs lost_every = 0;  // mean time between lost disks per site (0: none): reinstalled
  // Share of hub restarts at which the hub's disk is replaced by its last backup (taken at
  // an earlier restart) and the restore declared, as an operator would.
  double hub_restores = 0;
  bool any() const {
    return power_cuts > 0 || crash_points > 0 || write_error > 0 || sync_error > 0 ||
           corrupt_read > 0 || full_every > 0 || lost_every > 0 || hub_restores > 0;
  }
};

struct Scenario {
  std::string name;
  std::string file;
  uint64_t seed = 1;
  DurationMs duration = 3'600'000;
  DurationMs converge_within = 1'800'000;
  SyncOptions sync;
  std::vector<SiteGroup> sites;
  std::vector<WorkflowSpec> workflows;
  std::vector<Periodic> local_runs;  // each matching site starts the workflow by itself
  std::vector<Periodic> requests;    // the hub asks for runs
  double duplicate_requests = 0;     // share of requests sent twice with the same id
  std::vector<LinkSpec> links;       // later entries override earlier ones
  std::vector<Window> partitions;
  std::vector<Window> hub_outages;
  std::vector<Window> flapping;
  std::vector<CourierSpec> couriers;
  CrashSpec agent_crashes;
  CrashSpec hub_crashes;
  StorageSpec storage;
  // Operator actions besides run starts, about every `operators_every` (0: none): cancel a
  // requested run, approve or reject a gate, relabel a site, apply a changed definition,
  // remove a workflow (applied again later).
  DurationMs operators_every = 0;
  // Swarm testing: each seed draws its own scenario within this one's bounds (DrawSwarm).
  bool swarm = false;
  bool drawn = false;  // this is a seed's draw from swarm bounds
  DurationMs max_clock_skew = 0;
  int max_parallel = 4;
};

Result<Scenario> LoadScenario(const std::string& path);

// Swarm testing (docs/simulator.md, "Swarm"): the scenario a seed draws from `bounds`.
// Each site group keeps 1..count sites; each fault of the bounds — loss, resets,
// partitions, hub outages, flapping, crashes, clock skew, each storage fault, duplicate
// requests, operator actions — is switched on with probability 1/2 and then runs at 0.25x
// to 2x its rate; partitions, hub outages and flapping get fresh windows (as many as the
// bounds list, at random times and lengths up to theirs); each local run and request
// schedule is kept with probability 3/4. `summary` says what was drawn.
Scenario DrawSwarm(const Scenario& bounds, uint64_t seed, std::string* summary);
Result<Scenario> ParseScenario(const std::string& yaml, const std::string& file);

}  // namespace outpost::sim
