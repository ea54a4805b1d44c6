// outpost-bench-validate: how long validating a large workflow and starting a run of it
// take, for shapes that used to cost cubic time — a chain (each task needs the one before)
// and a fan-in (one task needs all the others) — at several sizes, so the growth shows:
// linear work doubles when the size doubles.
//   outpost-bench-validate [--max N]     (default 20000)
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "common/random.h"
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

int Main(int argc, char** argv) {
  int max = 20000;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--max") && i + 1 < argc) max = atoi(argv[++i]);
  }
  printf("| shape   |  tasks |     YAML     | validate ms |  start ms |\n");
  printf("|---|---|---|---|---|\n");
  for (int n = max / 8; n <= max; n *= 2) Measure("chain", n, Chain(n));
  for (int n = max / 8; n <= max; n *= 2) Measure("fan-in", n, FanIn(n));
  return 0;
}

}  // namespace
}  // namespace outpost

int main(int argc, char** argv) { return outpost::Main(argc, argv); }
