// outpost-bench-validate: how long validating a large workflow and starting a run of it
// take, for shapes that used to cost cubic time — a chain (each task needs the one before)
// and a fan-in (one task needs all the others) — at several sizes, so the growth shows:
// linear work doubles when the size doubles.
//   outpost-bench-validate [--max N]     (default 20000)
// With --agent PATH it also starts the real agent and measures what the agent's loop
// does while a --max-task chain is validated for a run.start: status round trips beside
// the same calls on an idle agent, in the same run.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <vector>
#include <cstring>
#include <string>

#include "common/protocol/control.h"
#include "common/random.h"
#include "simulator/processes.h"
#include "common/workflow/workflow.h"
#include "site-agent/engine.h"

namespace outpost {
namespace {

using Clk = std::chrono::steady_clock;

std::string Chain(int n) {
  std::string y = "name: chain\ntasks:\n";
  for (int i = 0; i < n; ++i) {
    y += "  - {id: t" + std::to_string(i) + ", run: [\"true\"]";
    if (i > 0) y += ", needs: [t" + std::to_string(i - 1) + "]";
    y += "}\n";
  }
  return y;
}

std::string FanIn(int n) {
  std::string y = "name: fanin\ntasks:\n";
  for (int i = 0; i < n - 1; ++i) y += "  - {id: t" + std::to_string(i) + ", run: [\"true\"]}\n";
  y += "  - id: last\n    run: [\"true\"]\n    needs: [";
  for (int i = 0; i < n - 1; ++i) y += (i ? ", t" : "t") + std::to_string(i);
  y += "]\n";
  return y;
}

double Ms(Clk::time_point a, Clk::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

void Measure(const char* shape, int n, const std::string& yaml) {
  const auto t0 = Clk::now();
  auto def = ParseWorkflow(yaml, "bench.yaml");
  const auto t1 = Clk::now();
  if (!def.ok()) {
    fprintf(stderr, "%s %d: %s\n", shape, n, def.status().ToString().substr(0, 300).c_str());
    exit(1);
  }
  ManualClock clock(1'800'000'000'000);
  Rng rng(1);
  Engine engine(clock, &rng, EngineOptions{4, 5000, "bench", {}, {}, {}});
  Effects fx;
  auto shared = std::make_shared<const WorkflowDef>(std::move(def).value());
  const auto t2 = Clk::now();
  Status s = engine.StartRun(shared, "bench-run", {}, &fx);
  const auto t3 = Clk::now();
  if (!s.ok()) {
    fprintf(stderr, "start: %s\n", s.ToString().c_str());
    exit(1);
  }
  printf("| %-7s | %6d | %8zu KiB | %10.1f | %10.1f |\n", shape, n, yaml.size() / 1024,
         Ms(t0, t1), Ms(t2, t3));
}

// Status round trips (ms) until `done` says stop or `count` were made.
std::vector<double> StatusCalls(const std::string& socket, size_t count,
                                const std::function<bool()>& done) {
  std::vector<double> ms;
  while (ms.size() < count && !done()) {
    const auto t0 = Clk::now();
    auto r = ControlCall(socket, {{"op", "status"}}, 30000);
    const auto t1 = Clk::now();
    if (!r.ok()) {
      fprintf(stderr, "status: %s\n", r.status().ToString().c_str());
      exit(1);
    }
    ms.push_back(Ms(t0, t1));
  }
  return ms;
}

void PrintCalls(const char* what, std::vector<double> ms) {
  if (ms.empty()) {
    printf("| %-34s | %5d | %8s | %8s |\n", what, 0, "-", "-");
    return;
  }
  std::sort(ms.begin(), ms.end());
  printf("| %-34s | %5zu | %8.2f | %8.2f |\n", what, ms.size(), ms[ms.size() / 2], ms.back());
}

int MeasureAgent(const std::string& agent, int n) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("outpost-bench-validate-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string data = (dir / "agent").string(), socket = data + "/agent.sock";
  pid_t pid = sim::Spawn({agent, "--data-dir", data, "--site", "bench"}, (dir / "agent.log").string());
  if (!sim::Eventually([&] { return ControlCall(socket, {{"op", "status"}}, 1000).ok(); }, 10000)) {
    fprintf(stderr, "the agent did not come up; see %s\n", (dir / "agent.log").c_str());
    sim::Kill(&pid, SIGKILL);
    return 1;
  }
  // A chain broken at its very end: the whole file is validated, nothing runs.
  std::string yaml = Chain(n);
  yaml += "  - {id: last, run: [\"true\"], needs: [missing]}\n";
  auto fd = ConnectUnix(socket);
  if (!fd.ok()) return 1;
  const std::string line =
      nlohmann::json{{"op", "run.start"}, {"source", yaml}, {"file", "chain.yaml"}}.dump() + "\n";
  std::vector<double> idle = StatusCalls(socket, 200, [] { return false; });
  const auto sent = Clk::now();
  for (size_t off = 0; off < line.size();) {
    ssize_t w = write(*fd, line.data() + off, line.size() - off);
    if (w <= 0) return 1;
    off += static_cast<size_t>(w);
  }
  double answered = 0;
  auto replied = [&] {
    pollfd p{*fd, POLLIN, 0};
    if (answered == 0 && poll(&p, 1, 0) > 0) answered = Ms(sent, Clk::now());
    return answered > 0;
  };
  std::vector<double> during = StatusCalls(socket, 100000, replied);
  while (!replied()) usleep(1000);
  close(*fd);
  printf("\nThe real agent (%s), a %d-task chain sent as run.start: answered (refused at its end) "
         "after %.0f ms\n\n", agent.c_str(), n, answered);
  printf("| status round trips                 | calls |  p50 ms  |  max ms  |\n|---|---|---|---|\n");
  PrintCalls("idle agent (baseline, same run)", idle);
  PrintCalls("while the chain was validated", during);
  sim::Kill(&pid, SIGTERM);
  fs::remove_all(dir);
  return 0;
}

int Main(int argc, char** argv) {
  int max = 20000;
  std::string agent;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--max") && i + 1 < argc) max = atoi(argv[++i]);
    if (!strcmp(argv[i], "--agent") && i + 1 < argc) agent = argv[++i];
  }
  if (max < 8) max = 8;
  printf("| shape   |  tasks |     YAML     | validate ms |  start ms |\n");
  printf("|---|---|---|---|---|\n");
  for (int n = max / 8; n <= max; n *= 2) Measure("chain", n, Chain(n));
  for (int n = max / 8; n <= max; n *= 2) Measure("fan-in", n, FanIn(n));
  if (!agent.empty()) return MeasureAgent(agent, max);
  return 0;
}

}  // namespace
}  // namespace outpost

int main(int argc, char** argv) { return outpost::Main(argc, argv); }
