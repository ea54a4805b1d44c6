// outpost-bench: agent task throughput next to xargs in the same run, and the engine's
// own cost per task. Not a test: it prints numbers.
//
//   outpost-bench [--agent PATH] [--tasks N] [--chain N] [--parallel P]
//                 [--fsync-delay-ms D] [--snakemake PATH] [--agent-arg FLAG]...
//
// 1. engine only: N independent tasks, a chain, and N instances of one for_each task,
//    driven with synthetic exits under a
//    ManualClock (no processes, no disk): the pure state-machine cost per task;
// 2. the real outpost-agent (synced RocksDB commits, real processes): N independent
//    `true` tasks with --max-parallel P, and a chain of `true` tasks, whose gap between
//    one task's end and the next one's start is read from the run's task records;
// 3. `xargs -P P -n1 true` over the same N, timed the same way;
// 4. the disk's own fsync latency where the agent keeps its database (4 KiB written and
//    fdatasync'd, 200 times), so numbers from different machines can be compared;
//    --fsync-delay-ms adds D ms to every sync the agent's RocksDB makes (a slow SD card
//    or eMMC; $OUTPOST_BENCH_FSYNC_DELAY_US, common/rocks.cpp);
// 5. with --snakemake: the same chain as Snakemake rules, each `touch`ing its output.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>
#include <thread>

#include "common/protocol/control.h"
#include "site-agent/engine.h"

namespace {

using namespace outpost;
using json = nlohmann::json;
using Clk = std::chrono::steady_clock;

double Seconds(Clk::time_point a, Clk::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::string WideYaml(int n, const std::string& cmd) {
  std::string y = "name: wide\ntasks:\n";
  for (int i = 0; i < n; ++i) y += "  - {id: t" + std::to_string(i) + ", run: [" + cmd + "]}\n";
  return y;
}

std::string ChainYaml(int n, const std::string& cmd) {
  std::string y = "name: chain\ntasks:\n  - {id: t0, run: [" + cmd + "]}\n";
  for (int i = 1; i < n; ++i) {
    y += "  - {id: t" + std::to_string(i) + ", run: [" + cmd + "], needs: [t" +
         std::to_string(i - 1) + "]}\n";
  }
  return y;
}

// Drives the engine alone; returns nanoseconds per task.
double EngineOnly(const std::string& yaml, int parallel) {
  ManualClock clock;
  Rng rng(1);
  Engine engine(clock, &rng, EngineOptions{parallel, 5000, "bench", {}, {}, {}});
  auto def = std::make_shared<const WorkflowDef>(ParseWorkflow(yaml, "bench").value());
  auto t0 = Clk::now();
  Effects fx;
  if (!engine.StartRun(def, "r", {}, &fx).ok()) return -1;
  std::vector<StartProcess> running = fx.starts;
  size_t tasks = 0;
  while (!running.empty()) {
    StartProcess sp = running.back();
    running.pop_back();
    Effects step;
    ExitInfo ok;
    ok.exit_code = 0;
    engine.OnExit(sp.key, ok, &step);
    clock.Advance(1);
    ++tasks;
    for (auto& s : step.starts) running.push_back(std::move(s));
  }
  return Seconds(t0, Clk::now()) * 1e9 / static_cast<double>(tasks);
}

// fdatasync of a 4 KiB write in `dir`, 200 times: {median, p90} in ms.
std::pair<double, double> FsyncLatency(const std::string& dir) {
  std::filesystem::create_directories(dir);
  const std::string f = dir + "/fsync-probe";
  int fd = open(f.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) return {-1, -1};
  std::vector<double> ms;
  std::string block(4096, 'x');
  for (int i = 0; i < 200; ++i) {
    auto t0 = Clk::now();
    if (write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size()) ||
        fdatasync(fd) != 0) {
      break;
    }
    ms.push_back(Seconds(t0, Clk::now()) * 1000);
  }
  close(fd);
  unlink(f.c_str());
  if (ms.empty()) return {-1, -1};
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms[ms.size() * 9 / 10]};
}

// The chain as Snakemake rules (each touches its output after the previous one's);
// returns wall seconds, or -1.
double SnakemakeChain(const std::string& bin, int n) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("outpost_bench_smk_" + std::to_string(getpid())))
          .string();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream sf(dir + "/Snakefile");
  sf << "rule all:\n    input: \"t" << n - 1 << "\"\n";
  sf << "rule t0:\n    output: \"t0\"\n    shell: \"true && touch {output}\"\n";
  for (int i = 1; i < n; ++i) {
    sf << "rule t" << i << ":\n    input: \"t" << i - 1 << "\"\n    output: \"t" << i
       << "\"\n    shell: \"true && touch {output}\"\n";
  }
  sf.close();
  const std::string cmd = "cd " + dir + " && " + bin + " -j1 --quiet > smk.log 2>&1";
  auto t0 = Clk::now();
  const int rc = system(cmd.c_str());
  const double s = Seconds(t0, Clk::now());
  std::filesystem::remove_all(dir);
  return rc == 0 ? s : -1;
}

struct Agent {
  pid_t pid = -1;
  std::string dir;
  std::string sock() const { return dir + "/agent.sock"; }
};

bool StartAgent(const std::string& bin, int parallel, Agent* a, const char* pid_delay_ms,
                const std::vector<std::string>& extra) {
  a->dir = (std::filesystem::temp_directory_path() / ("outpost_bench_" + std::to_string(getpid())))
               .string();
  std::filesystem::remove_all(a->dir);
  a->pid = fork();
  if (a->pid == 0) {
    std::string p = std::to_string(parallel);
    std::vector<std::string> args = {bin, "--data-dir", a->dir, "--site", "bench",
                                     "--max-parallel", p, "--log-level", "warn",
                                     "--pid-write-delay-ms", pid_delay_ms};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& x : args) argv.push_back(x.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  for (int i = 0; i < 500; ++i) {
    if (ControlCall(a->sock(), {{"op", "status"}}, 1000).ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Runs `yaml` on the agent; returns wall seconds, fills the finished run.
double RunOnAgent(const Agent& a, const std::string& yaml, json* run) {
  auto t0 = Clk::now();
  auto r = ControlCall(a.sock(), {{"op", "run.start"}, {"source", yaml}}, 60000);
  if (!r.ok() || !(*r).value("ok", false)) {
    fprintf(stderr, "run.start failed: %s\n", r.ok() ? r->dump().c_str() : r.status().ToString().c_str());
    return -1;
  }
  auto w = ControlCall(a.sock(), {{"op", "run.wait"}, {"id", (*r)["id"]}}, -1);
  double s = Seconds(t0, Clk::now());
  if (w.ok()) *run = (*w)["run"];
  return s;
}

// Parses "2026-11-24T11:21:14.123Z" to ms (same day is enough for differences).
long long Ms(const json& t) {
  if (!t.is_string()) return 0;
  int h, m, s, ms;
  if (sscanf(t.get<std::string>().c_str() + 11, "%d:%d:%d.%d", &h, &m, &s, &ms) != 4) return 0;
  return ((h * 60LL + m) * 60 + s) * 1000 + ms;
}

}  // namespace

int main(int argc, char** argv) {
  std::string agent_bin = "build/site-agent/outpost-agent", snakemake;
  int n = 1000, chain = 200, parallel = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  double fsync_delay_ms = 0;
  std::vector<std::string> agent_args;  // --agent-arg X (repeatable): more agent flags
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--agent")) agent_bin = argv[i + 1];
    else if (!strcmp(argv[i], "--tasks")) n = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--chain")) chain = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--parallel")) parallel = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--fsync-delay-ms")) fsync_delay_ms = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--snakemake")) snakemake = argv[i + 1];
    else if (!strcmp(argv[i], "--agent-arg")) agent_args.push_back(argv[i + 1]);
  }
  if (n < 1 || chain < 2 || parallel < 1 || fsync_delay_ms < 0 || fsync_delay_ms > 1000) {
    fprintf(stderr, "usage: outpost-bench [--agent PATH] [--tasks N>0] [--chain N>1] [--parallel P>0] "
                    "[--fsync-delay-ms 0-1000] [--snakemake PATH]\n");
    return 2;
  }
  if (fsync_delay_ms > 0) {
    // Read by the agent's RocksDB (common/rocks.cpp): every sync takes this much longer.
    setenv("OUTPOST_BENCH_FSYNC_DELAY_US", std::to_string(static_cast<int64_t>(fsync_delay_ms * 1000)).c_str(), 1);
  }
  signal(SIGPIPE, SIG_IGN);
  printf("outpost-bench: %d independent tasks, chain of %d, parallelism %d\n\n", n, chain, parallel);

  printf("engine only (no processes, no disk)\n");
  printf("  independent: %8.1f us/task\n", EngineOnly(WideYaml(n, "x"), parallel) / 1000);
  printf("  chain:       %8.1f us/task\n", EngineOnly(ChainYaml(chain, "x"), parallel) / 1000);
  // The same N as the instances of one for_each task, then one fan-in task.
  std::string fan = "name: fan\ntasks:\n  - id: each\n    for_each: [";
  for (int i = 0; i < n; ++i) fan += (i ? "," : "") + std::to_string(i);
  fan += "]\n    run: [x, \"{{ item }}\"]\n  - {id: after, needs: [each], run: [x]}\n";
  printf("  fan-out:     %8.1f us/task (%d instances of one for_each task, then a fan-in)\n\n",
         EngineOnly(fan, parallel) / 1000, n);

  std::string cmd = "seq " + std::to_string(n) + " | xargs -P" + std::to_string(parallel) +
                    " -n1 true";
  auto x0 = Clk::now();
  if (system(cmd.c_str()) != 0) fprintf(stderr, "xargs failed\n");
  double xargs_s = Seconds(x0, Clk::now());
  // A chain's floor on this machine: the same number of processes one after another.
  const std::string chain_cmd = "seq " + std::to_string(chain) + " | xargs -P1 -n1 true";
  x0 = Clk::now();
  if (system(chain_cmd.c_str()) != 0) fprintf(stderr, "xargs failed\n");
  const double xargs_chain_s = Seconds(x0, Clk::now());

  // The agent as shipped (group commit: one synced write per step), then, as the baseline
  // in the same run, with every pid written on its own (two synced writes per task).
  json wide_run, chain_run, wide2_run, chain2_run;
  double wide_s = 0, chain_s = 0, wide2_s = 0, chain2_s = 0;
  for (const char* delay : {"200", "0"}) {
    Agent a;
    if (!StartAgent(agent_bin, parallel, &a, delay, agent_args)) {
      fprintf(stderr, "could not start %s\n", agent_bin.c_str());
      return 1;
    }
    const bool grouped = strcmp(delay, "0") != 0;
    (grouped ? wide_s : wide2_s) = RunOnAgent(a, WideYaml(n, "\"true\""), grouped ? &wide_run : &wide2_run);
    (grouped ? chain_s : chain2_s) =
        RunOnAgent(a, ChainYaml(chain, "\"true\""), grouped ? &chain_run : &chain2_run);
    kill(a.pid, SIGTERM);
    waitpid(a.pid, nullptr, 0);
    std::filesystem::remove_all(a.dir);
  }

  long long gap_sum = 0, gap_max = 0;
  int gaps = 0;
  const auto& tasks = chain_run["tasks"];
  for (size_t i = 1; i < tasks.size(); ++i) {
    long long g = Ms(tasks[i]["started"]) - Ms(tasks[i - 1]["finished"]);
    gap_sum += g;
    gap_max = std::max(gap_max, g);
    ++gaps;
  }
  const auto [fs_med, fs_p90] = FsyncLatency(std::filesystem::temp_directory_path().string() +
                                            "/outpost_bench_fsync_" + std::to_string(getpid()));
  printf("disk: fdatasync of 4 KiB in %s: median %.3f ms, p90 %.3f ms\n",
         std::filesystem::temp_directory_path().c_str(), fs_med, fs_p90);
  if (fsync_delay_ms > 0) printf("      the agent's syncs took %.1f ms more (--fsync-delay-ms)\n", fsync_delay_ms);
  printf("\n");
  printf("%-34s %10s %12s\n", "real processes", "seconds", "tasks/s");
  printf("%-34s %10.3f %12.1f\n", ("xargs -P" + std::to_string(parallel) + " -n1 true").c_str(),
         xargs_s, n / xargs_s);
  printf("%-34s %10.3f %12.1f   (%s, %.0f%% of xargs)\n", "outpost-agent, independent", wide_s,
         n / wide_s, wide_run.value("state", "?").c_str(), 100.0 * xargs_s / wide_s);
  printf("%-34s %10.3f %12.1f\n", ("xargs -P1 -n1 true (" + std::to_string(chain) + ")").c_str(),
         xargs_chain_s, chain / xargs_chain_s);
  printf("%-34s %10.3f %12.1f   (%s, %.0f%% of xargs -P1)\n", "outpost-agent, chain", chain_s,
         chain / chain_s, chain_run.value("state", "?").c_str(), 100.0 * xargs_chain_s / chain_s);
  printf("%-34s %10.3f %12.1f   (%s, %.0f%% of xargs)\n", "  two writes per task, independent",
         wide2_s, n / wide2_s, wide2_run.value("state", "?").c_str(), 100.0 * xargs_s / wide2_s);
  printf("%-34s %10.3f %12.1f   (%s)\n", "  two writes per task, chain", chain2_s, chain / chain2_s,
         chain2_run.value("state", "?").c_str());
  if (!snakemake.empty()) {
    const double smk = SnakemakeChain(snakemake, chain);
    if (smk > 0) {
      printf("%-34s %10.3f %12.1f   (outpost-agent's chain is %.1fx faster)\n",
             ("snakemake -j1, chain of " + std::to_string(chain)).c_str(), smk, chain / smk,
             smk / chain_s);
    } else {
      printf("snakemake: failed (see its log)\n");
    }
  }
  printf("\nchain: %.2f ms wall per task, end to end (an upper bound on the time from one\n"
         "       task's end to the next one's start: it includes the task's own process)\n",
         chain_s * 1000 / chain);
  if (gaps > 0) {
    printf("chain: previous finished -> next started as the engine records them: mean %.2f ms,\n"
           "       max %lld ms over %d gaps (state transition only; ms resolution)\n",
           static_cast<double>(gap_sum) / gaps, gap_max, gaps);
  }
  return wide_run.value("state", "") == "succeeded" && chain_run.value("state", "") == "succeeded" ? 0 : 1;
}
