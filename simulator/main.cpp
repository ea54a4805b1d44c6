// outpost-sim: runs a scenario (simulator/scenarios/*.yaml) and prints its report.
//
//   outpost-sim SCENARIO [--seed N] [--mutate MUTATION] [--expect-violation] [--json]
//
// Exit status: 0 every invariant held (or, with --expect-violation, at least one was
// broken, as the mutation check wants); 1 the opposite; 2 a usage or scenario error.
#include <spdlog/spdlog.h>

#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include <nlohmann/json.hpp>

#include "simulator/real_mode.h"
#include "simulator/scale.h"
#include "simulator/sim.h"
#include "simulator/sweep.h"

namespace {

const char* kUsage =
    "usage: outpost-sim SCENARIO [--seed N] [--mutate FAULT] [--expect-violation] [--json]\n"
    "       outpost-sim sweep SCENARIO --seeds A-B [-j N] [--mutate FAULT [--until-caught]] [--twice]\n"
    "                         [--quiet]\n"
    "           the seeds in parallel processes; failures with their replay command\n"
    "           (--twice: each seed in two processes at once, failed if their traces differ)\n"
    "       outpost-sim --real [--sites N] [--seconds S] [--seed N] [--keep]\n"
    "           the real outpost-hub and outpost-agent processes through a TCP fault proxy\n"
    "       outpost-sim scale [--sites N] [--hours H] [--seed N] [--hubs N] [--move-every N]\n"
    "                         [--mutate FAULT]\n"
    "           N light sites (sessions and logs only) against one HubCore (or N sharing one\n"
    "           store, sites moving between them), virtual time\n"
    "       outpost-sim --list-faults\n";

// outpost-sim sweep: 0 when every seed held (with --mutate: when at least one seed caught
// the fault), 1 otherwise, 2 on usage errors.
int Sweep(int argc, char** argv) {
  outpost::sim::SweepOptions o;
  bool have_seeds = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--seeds" && i + 1 < argc) {
      have_seeds = outpost::sim::ParseSeedRange(argv[++i], &o.first, &o.last);
      if (!have_seeds) {
        std::cerr << "outpost-sim sweep: --seeds wants A-B with 1 <= A <= B\n";
        return 2;
      }
    } else if ((a == "-j" || a == "--jobs") && i + 1 < argc) {
      o.jobs = atoi(argv[++i]);
    } else if (a == "--mutate" && i + 1 < argc) {
      o.mutation = argv[++i];
    } else if (a == "--quiet") {
      o.progress = false;
    } else if (a == "--until-caught") {
      o.until_failure = true;
    } else if (a == "--twice") {
      o.twice = true;
    } else if (o.scenario_path.empty() && !a.empty() && a[0] != '-') {
      o.scenario_path = a;
    } else {
      std::cerr << "outpost-sim sweep: unknown argument '" << a << "'\n" << kUsage;
      return 2;
    }
  }
  if (o.scenario_path.empty() || !have_seeds || o.jobs < 1 || o.jobs > 256) {
    std::cerr << "outpost-sim sweep: needs SCENARIO, --seeds A-B and -j 1-256\n" << kUsage;
    return 2;
  }
  auto f = outpost::Faults::Parse(o.mutation);
  if (!f.ok()) {
    std::cerr << "outpost-sim sweep: " << f.status().message() << "\n";
    return 2;
  }
  o.faults = *f;
  auto sc = outpost::sim::LoadScenario(o.scenario_path);
  if (!sc.ok()) {
    std::cerr << "outpost-sim sweep: " << sc.status().message() << "\n";
    return 2;
  }
  spdlog::set_level(spdlog::level::off);
  const auto r = outpost::sim::RunSweep(*sc, o);
  const auto n = static_cast<unsigned long long>(r.seeds);
  printf("sweep      %s seeds %llu-%llu with -j %d, mutation %s\n", o.scenario_path.c_str(),
         static_cast<unsigned long long>(o.first), static_cast<unsigned long long>(o.last), o.jobs,
         o.mutation.c_str());
  printf("time       %.1f s wall, %.2f s per seed per process\n", r.wall_seconds,
         n ? r.wall_seconds * o.jobs / static_cast<double>(n * (o.twice ? 2 : 1)) : 0.0);
  if (o.mutation == "none") {
    printf("result     %llu of %llu seeds held every invariant; %llu violated (%llu crashed",
           n - r.failed, n, static_cast<unsigned long long>(r.failed),
           static_cast<unsigned long long>(r.crashed));
    if (o.twice) printf(", %llu did not replay", static_cast<unsigned long long>(r.diverged));
    printf(")\n");
    return r.failed == 0 && r.seeds == o.last - o.first + 1 ? 0 : 1;
  }
  if (o.until_failure) {
    printf("result     %s %s within %llu seed%s\n", o.mutation.c_str(),
           r.failed > 0 ? "caught" : "not caught", n, n == 1 ? "" : "s");
    return r.failed > 0 ? 0 : 1;
  }
  printf("result     %s caught on %llu of %llu seeds (%.0f%%)\n", o.mutation.c_str(),
         static_cast<unsigned long long>(r.failed), n,
         n ? 100.0 * static_cast<double>(r.failed) / static_cast<double>(n) : 0.0);
  return r.failed > 0 ? 0 : 1;
}

}  // namespace

int Scale(int argc, char** argv) {
  outpost::sim::ScaleOptions o;
  for (int i = 2; i < argc; i += 2) {
    const std::string a = argv[i];
    if (i + 1 >= argc) {
      std::cerr << "outpost-sim scale: " << a << " needs a value\n" << kUsage;
      return 2;
    }
    const std::string v = argv[i + 1];
    if (a == "--mutate") {
      // Only the hub's faults this mode's sites can meet (they have no engine, no disk).
      if (v != "none" && v != "ack-before-durable" && v != "run-view-drops-run-end" &&
          v != "apply-without-cas") {
        std::cerr << "outpost-sim scale: --mutate takes ack-before-durable, "
                     "run-view-drops-run-end or apply-without-cas (with --hubs 2 or more) here "
                     "(the other faults need the scenarios' full sites)\n";
        return 2;
      }
      o.mutation = v;
      continue;
    }
    char* end = nullptr;
    errno = 0;
    const unsigned long long n = strtoull(v.c_str(), &end, 10);
    if (v.empty() || v[0] < '0' || v[0] > '9' || *end != '\0' || errno == ERANGE) {
      std::cerr << "outpost-sim scale: " << a << " wants a number, not '" << v << "'\n";
      return 2;
    }
    if (a == "--sites" && n >= 1 && n <= 10'000'000) o.sites = n;
    else if (a == "--hours" && n >= 1 && n <= 24 * 365) o.hours = static_cast<int>(n);
    else if (a == "--seed") o.seed = n;
    else if (a == "--hubs" && n >= 1 && n <= 16) o.hubs = static_cast<int>(n);
    else if (a == "--move-every" && n >= 1 && n <= 1'000'000) o.move_every = static_cast<int>(n);
    else {
      std::cerr << "outpost-sim scale: unknown or out-of-range argument '" << a << " " << v
                << "' (--sites 1-10000000, --hours 1-8760, --hubs 1-16, --move-every 1-1000000)\n"
                << kUsage;
      return 2;
    }
  }
  return outpost::sim::RunScale(o);
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "sweep") return Sweep(argc, argv);
  if (argc > 1 && std::string(argv[1]) == "scale") return Scale(argc, argv);
  if (argc > 1 && std::string(argv[1]) == "--list-faults") {
    for (const auto& n : outpost::Faults::Names()) std::cout << n << "\n";
    return 0;
  }
  std::string path;
  outpost::sim::Options opt;
  bool seed_given = false, expect_violation = false, as_json = false;
  std::string mutation = "none";
  bool real = false;
  outpost::sim::RealOptions ro;
  ro.hub_bin = OUTPOST_HUB_BIN;
  ro.agent_bin = OUTPOST_AGENT_BIN;
  ro.ctl_bin = OUTPOSTCTL_BIN;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--seed" && i + 1 < argc) {
      const char* v = argv[++i];
      char* end = nullptr;
      opt.seed = strtoull(v, &end, 10);
      if (end == v || *end != '\0') {
        std::cerr << "outpost-sim: --seed wants a number, not '" << v << "'\n";
        return 2;
      }
      seed_given = true;
    } else if (a == "--mutate" && i + 1 < argc) {
      mutation = argv[++i];
    } else if (a == "--expect-violation") {
      expect_violation = true;
    } else if (a == "--real") {
      real = true;
    } else if (a == "--sites" && i + 1 < argc) {
      ro.sites = atoi(argv[++i]);
    } else if (a == "--seconds" && i + 1 < argc) {
      ro.seconds = atoi(argv[++i]);
    } else if (a == "--keep") {
      ro.keep = true;
    } else if (a == "--json") {
      as_json = true;
    } else if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (path.empty() && a[0] != '-') {
      path = a;
    } else {
      std::cerr << "outpost-sim: unknown argument '" << a << "'\n" << kUsage;
      return 2;
    }
  }
  if (real) {
    if (ro.sites < 1 || ro.sites > 50 || ro.seconds < 5 || ro.seconds > 3600) {
      std::cerr << "outpost-sim: --real wants 1-50 --sites and 5-3600 --seconds\n";
      return 2;
    }
    ro.seed = seed_given ? opt.seed : 1;
    signal(SIGPIPE, SIG_IGN);
    const outpost::sim::Report r = outpost::sim::RunReal(ro);
    printf("mode       real processes through a TCP fault proxy   seed %llu\n",
           static_cast<unsigned long long>(r.seed));
    printf("time       %.1f s wall\n", r.wall_seconds);
    printf("fleet      %zu sites; %llu agent SIGKILLs, %llu hub SIGKILLs, %llu resets or cuts\n",
           r.sites, static_cast<unsigned long long>(r.agent_crashes),
           static_cast<unsigned long long>(r.hub_crashes), static_cast<unsigned long long>(r.resets));
    printf("work       %llu runs (%llu succeeded); %llu local (%llu while cut off); %llu hub requests\n",
           static_cast<unsigned long long>(r.runs), static_cast<unsigned long long>(r.runs_succeeded),
           static_cast<unsigned long long>(r.local_runs),
           static_cast<unsigned long long>(r.local_runs_offline),
           static_cast<unsigned long long>(r.requests));
    printf("wire       %llu events; %llu bytes through the proxy, %llu swallowed by black holes\n",
           static_cast<unsigned long long>(r.events), static_cast<unsigned long long>(r.wire_bytes),
           static_cast<unsigned long long>(r.frames_dropped));
    if (r.convergence_ms >= 0) printf("converged  %.1f s after the heal\n", r.convergence_ms / 1000.0);
    for (const auto& i : r.invariants) {
      printf("  [%s] %s%s%s\n", i.ok ? " ok " : "FAIL", i.name.c_str(), i.detail.empty() ? "" : ": ",
             i.detail.c_str());
    }
    if (!r.ok()) {
      fprintf(stderr, "outpost-sim: invariant violated (real mode, seed %llu)\n",
              static_cast<unsigned long long>(r.seed));
    }
    return r.ok() ? 0 : 1;
  }
  if (path.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  auto m = outpost::Faults::Parse(mutation);
  if (!m.ok()) {
    std::cerr << "outpost-sim: " << m.status().message() << "\n";
    return 2;
  }
  opt.mutation = mutation;
  opt.faults = *m;
  auto sc = outpost::sim::LoadScenario(path);
  if (!sc.ok()) {
    std::cerr << "outpost-sim: " << sc.status().message() << "\n";
    return 2;
  }
  if (!seed_given) opt.seed = sc->seed;
  spdlog::set_level(spdlog::level::off);  // the hub core's logging; the report says it all

  outpost::sim::Simulation sim(std::move(sc).value(), opt);
  const outpost::sim::Report r = sim.Run();
  const double ratio = r.wall_seconds > 0 ? (r.virtual_ms / 1000.0) / r.wall_seconds : 0;
  char hash[20];
  snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(r.trace_hash));
  const std::string replay = std::string("outpost-sim ") + path + " --seed " +
                             std::to_string(r.seed) +
                             (r.mutation == "none" ? "" : " --mutate " + r.mutation);
  if (as_json) {
    nlohmann::json inv = nlohmann::json::array();
    for (const auto& i : r.invariants) inv.push_back({{"name", i.name}, {"ok", i.ok}, {"detail", i.detail}});
    std::cout << nlohmann::json{{"scenario", r.scenario}, {"seed", r.seed},
                                {"mutation", r.mutation},
                                {"virtual_seconds", r.virtual_ms / 1000.0},
                                {"wall_seconds", r.wall_seconds}, {"speedup", ratio},
                                {"sites", r.sites}, {"events", r.events}, {"frames", r.frames},
                                {"frames_dropped", r.frames_dropped}, {"wire_bytes", r.wire_bytes},
                                {"bytes_per_event", r.events ? double(r.wire_bytes) / r.events : 0},
                                {"commands", r.commands}, {"runs", r.runs},
                                {"runs_succeeded", r.runs_succeeded}, {"local_runs", r.local_runs},
                                {"local_runs_offline", r.local_runs_offline},
                                {"scheduled_runs", r.scheduled_runs},
                                {"requests", r.requests}, {"requests_refused", r.requests_refused},
                                {"agent_crashes", r.agent_crashes}, {"hub_crashes", r.hub_crashes},
                                {"resets", r.resets}, {"convergence_ms", r.convergence_ms},
                                {"bundles", {{"carried", r.bundles_carried}, {"lost", r.bundles_lost},
                                             {"imported", r.bundles_imported},
                                             {"commands_applied", r.bundle_commands_applied}}},
                                {"storage", {{"power_cuts", r.power_cuts},
                                             {"crash_points", r.crash_points},
                                             {"bytes_lost", r.bytes_lost},
                                             {"disk_faults", r.disk_faults},
                                             {"store_errors", r.store_errors},
                                             {"hub_store_restarts", r.hub_store_restarts},
                                             {"reinstalls", r.reinstalls},
                                             {"hub_restores", r.hub_restores},
                                             {"events_lost_in_restore", r.events_lost_in_restore},
                                             {"commands_adopted_in_restore",
                                              r.commands_adopted_in_restore}}},
                                {"swarm", r.swarm}, {"operator_actions", r.operator_actions},
                                {"trace_hash", hash}, {"ok", r.ok()}, {"invariants", inv},
                                {"replay", replay}}
                     .dump(2)
              << "\n";
  } else {
    printf("scenario   %s   seed %llu   mutation %s\n", r.scenario.c_str(),
           static_cast<unsigned long long>(r.seed), r.mutation.c_str());
    if (!r.swarm.empty()) printf("swarm      %s\n", r.swarm.c_str());
    printf("time       %.0f s virtual in %.2f s wall (%.0fx)\n", r.virtual_ms / 1000.0,
           r.wall_seconds, ratio);
    printf("fleet      %zu sites; %llu agent crashes, %llu hub crashes, %llu connection resets\n",
           r.sites, static_cast<unsigned long long>(r.agent_crashes),
           static_cast<unsigned long long>(r.hub_crashes), static_cast<unsigned long long>(r.resets));
    printf("work       %llu runs finished (%llu succeeded); %llu local (%llu while cut off); "
           "%llu scheduled; %llu hub requests (%llu refused); %llu commands applied; %llu other "
           "operator actions\n",
           static_cast<unsigned long long>(r.runs), static_cast<unsigned long long>(r.runs_succeeded),
           static_cast<unsigned long long>(r.local_runs),
           static_cast<unsigned long long>(r.local_runs_offline),
           static_cast<unsigned long long>(r.scheduled_runs),
           static_cast<unsigned long long>(r.requests),
           static_cast<unsigned long long>(r.requests_refused),
           static_cast<unsigned long long>(r.commands),
           static_cast<unsigned long long>(r.operator_actions));
    if (r.bundles_carried > 0) {
      printf("couriers   %llu volumes carried (%llu lost), %llu deliveries, %llu commands applied from them\n",
             static_cast<unsigned long long>(r.bundles_carried),
             static_cast<unsigned long long>(r.bundles_lost),
             static_cast<unsigned long long>(r.bundles_imported),
             static_cast<unsigned long long>(r.bundle_commands_applied));
    }
    if (r.power_cuts + r.crash_points + r.disk_faults + r.reinstalls + r.store_errors +
            r.hub_store_restarts > 0) {
      printf("storage    %llu power cuts (%llu unsynced bytes lost), %llu crash points, %llu disk "
             "faults, %llu store errors retried, %llu hub store restarts, %llu disks lost\n",
             static_cast<unsigned long long>(r.power_cuts),
             static_cast<unsigned long long>(r.bytes_lost),
             static_cast<unsigned long long>(r.crash_points),
             static_cast<unsigned long long>(r.disk_faults),
             static_cast<unsigned long long>(r.store_errors),
             static_cast<unsigned long long>(r.hub_store_restarts),
             static_cast<unsigned long long>(r.reinstalls));
    }
    if (r.hub_restores > 0) {
      printf("restores   %llu hub restores from backup: %llu events the sites had trimmed and "
             "%llu commands they had applied past what the backup saw acknowledged (adopted)\n",
             static_cast<unsigned long long>(r.hub_restores),
             static_cast<unsigned long long>(r.events_lost_in_restore),
             static_cast<unsigned long long>(r.commands_adopted_in_restore));
    }
    printf("wire       %llu events; %llu frames (%llu lost); %llu bytes, %.1f bytes per event\n",
           static_cast<unsigned long long>(r.events), static_cast<unsigned long long>(r.frames),
           static_cast<unsigned long long>(r.frames_dropped),
           static_cast<unsigned long long>(r.wire_bytes),
           r.events ? static_cast<double>(r.wire_bytes) / static_cast<double>(r.events) : 0.0);
    if (r.convergence_ms >= 0) {
      printf("converged  %.1f s after the last heal\n", r.convergence_ms / 1000.0);
    } else {
      printf("converged  no\n");
    }
    for (const auto& i : r.invariants) {
      printf("  [%s] %s%s%s\n", i.ok ? " ok " : "FAIL", i.name.c_str(), i.detail.empty() ? "" : ": ",
             i.detail.c_str());
    }
    printf("trace      %s\n", hash);
  }
  if (!r.ok()) {
    fprintf(stderr, "outpost-sim: invariant violated; replay with: %s\n", replay.c_str());
  }
  if (expect_violation) return r.ok() ? 1 : 0;
  return r.ok() ? 0 : 1;
}
