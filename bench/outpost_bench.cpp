// outpost-bench: agent task throughput next to xargs in the same run, and the engine's
// own cost per task. Not a test: it prints numbers.
//
//   outpost-bench [--agent PATH] [--tasks N] [--chain N] [--parallel P]
//
// 1. engine only: N independent tasks, a chain, and N instances of one for_each task,
//    driven with synthetic exits under a
//    ManualClock (no processes, no disk): the pure state-machine cost per task;
// 2. the real outpost-agent (synced RocksDB commits, real processes): N independent
//    `true` tasks with --max-parallel P, and a chain of `true` tasks, whose gap between
//    one task's end and the next one's start is read from the run's task records;
// 3. `xargs -P P -n1 true` over the same N, timed the same way.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
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

struct Agent {
  pid_t pid = -1;
  std::string dir;
  std::string sock() const { return dir + "/agent.sock"; }
};

bool StartAgent(const std::string& bin, int parallel, Agent* a) {
  a->dir = (std::filesystem::temp_directory_path() / ("outpost_bench_" + std::to_string(getpid())))
               .string();
  std::filesystem::remove_all(a->dir);
  a->pid = fork();
  if (a->pid == 0) {
    std::string p = std::to_string(parallel);
    execl(bin.c_str(), bin.c_str(), "--data-dir", a->dir.c_str(), "--site", "bench",
          "--max-parallel", p.c_str(), "--log-level", "warn", static_cast<char*>(nullptr));
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
  std::string agent_bin = "build/site-agent/outpost-agent";
  int n = 1000, chain = 200, parallel = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--agent")) agent_bin = argv[i + 1];
    else if (!strcmp(argv[i], "--tasks")) n = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--chain")) chain = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--parallel")) parallel = atoi(argv[i + 1]);
  }
  if (n < 1 || chain < 2 || parallel < 1) {
    fprintf(stderr, "usage: outpost-bench [--agent PATH] [--tasks N>0] [--chain N>1] [--parallel P>0]\n");
    return 2;
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

  Agent a;
  if (!StartAgent(agent_bin, parallel, &a)) {
    fprintf(stderr, "could not start %s\n", agent_bin.c_str());
    return 1;
  }
  json wide_run, chain_run;
  double wide_s = RunOnAgent(a, WideYaml(n, "\"true\""), &wide_run);
  double chain_s = RunOnAgent(a, ChainYaml(chain, "\"true\""), &chain_run);
  kill(a.pid, SIGTERM);
  waitpid(a.pid, nullptr, 0);
  std::filesystem::remove_all(a.dir);

  long long gap_sum = 0, gap_max = 0;
  int gaps = 0;
  const auto& tasks = chain_run["tasks"];
  for (size_t i = 1; i < tasks.size(); ++i) {
    long long g = Ms(tasks[i]["started"]) - Ms(tasks[i - 1]["finished"]);
    gap_sum += g;
    gap_max = std::max(gap_max, g);
    ++gaps;
  }
  printf("%-34s %10s %12s\n", "real processes", "seconds", "tasks/s");
  printf("%-34s %10.3f %12.1f\n", ("xargs -P" + std::to_string(parallel) + " -n1 true").c_str(),
         xargs_s, n / xargs_s);
  printf("%-34s %10.3f %12.1f   (%s, %.0f%% of xargs)\n", "outpost-agent, independent", wide_s,
         n / wide_s, wide_run.value("state", "?").c_str(), 100.0 * xargs_s / wide_s);
  printf("%-34s %10.3f %12.1f   (%s)\n", "outpost-agent, chain", chain_s, chain / chain_s,
         chain_run.value("state", "?").c_str());
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
