// The sweep: one scenario over a range of seeds, in parallel worker processes
// (`outpost-sim sweep SCENARIO --seeds A-B [-j N] [--mutate NAME]`, docs/simulator.md).
//
// Each seed runs in its own forked process (a simulation is single-threaded and keeps
// its databases in memory, so processes are the unit of parallelism and a crash in one
// seed is that seed's failure, not the sweep's). The sweep prints every failing seed with
// the command that replays it, and a summary (a seed that runs longer than 10 minutes of
// wall time is killed and reported as a hang); with a mutation it reports the catch rate
// (seeds whose invariants broke, out of all).
#pragma once

#include <cstdint>
#include <string>

#include "simulator/scenario.h"
#include "simulator/sim.h"

namespace outpost::sim {

struct SweepOptions {
  std::string scenario_path;  // for the replay commands
  uint64_t first = 1;
  uint64_t last = 100;
  int jobs = 2;
  std::string mutation = "none";
  Faults faults;
  bool progress = true;  // a progress line on stderr every few percent
  bool until_failure = false;  // start no more seeds after the first failure (a catch)
  // Run each seed in two processes at once and fail it if their traces differ: a seed
  // must replay the same history whatever else the machine is doing.
  bool twice = false;
};

struct SweepResult {
  uint64_t seeds = 0;
  uint64_t failed = 0;   // seeds where an invariant broke (a catch, with a mutation)
  uint64_t crashed = 0;  // seeds whose process died (counted in failed too)
  uint64_t diverged = 0; // with twice: seeds whose two runs differed (counted in failed too)
  double wall_seconds = 0;
};

// Runs the sweep; prints failures and the summary on stdout.
SweepResult RunSweep(const Scenario& scenario, const SweepOptions& options);

// "A-B" or "N" (1 <= A <= B).
bool ParseSeedRange(const std::string& text, uint64_t* first, uint64_t* last);

}  // namespace outpost::sim
