#include "simulator/sweep.h"

#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>

namespace outpost::sim {

namespace {

struct Child {
  uint64_t seed = 0;
  int fd = -1;
};

// In the child: run one seed and write its verdict (first failed invariant, if any) to fd.
[[noreturn]] void RunChild(const Scenario& scenario, const SweepOptions& o, uint64_t seed, int fd) {
  Options opt;
  opt.seed = seed;
  opt.mutation = o.mutation;
  opt.faults = o.faults;
  Simulation sim(scenario, opt);
  const Report r = sim.Run();
  std::string line = r.ok() ? "ok" : "FAIL";
  for (const auto& i : r.invariants) {
    if (!i.ok) {
      line += " " + i.name + ": " + i.detail;
      break;
    }
  }
  line += "\n";
  for (size_t done = 0; done < line.size();) {
    const ssize_t n = write(fd, line.data() + done, line.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  _exit(r.ok() ? 0 : 1);
}

std::string ReadAllFd(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace

bool ParseSeedRange(const std::string& text, uint64_t* first, uint64_t* last) {
  char* end = nullptr;
  const unsigned long long a = strtoull(text.c_str(), &end, 10);
  if (end == text.c_str()) return false;
  unsigned long long b = a;
  if (*end == '-') {
    const char* rest = end + 1;
    b = strtoull(rest, &end, 10);
    if (end == rest) return false;
  }
  if (*end != '\0' || a < 1 || b < a || b - a > 10'000'000) return false;
  *first = a;
  *last = b;
  return true;
}

SweepResult RunSweep(const Scenario& scenario, const SweepOptions& o) {
  SweepResult res;
  const auto t0 = std::chrono::steady_clock::now();
  std::map<pid_t, Child> running;
  const uint64_t total = o.last - o.first + 1;
  uint64_t next = o.first, reported = 0;
  auto replay = [&](uint64_t seed) {
    return "outpost-sim " + o.scenario_path + " --seed " + std::to_string(seed) +
           (o.mutation == "none" ? "" : " --mutate " + o.mutation);
  };
  fflush(stdout);
  fflush(stderr);
  while ((next <= o.last && !(o.until_failure && res.failed > 0)) || !running.empty()) {
    while (next <= o.last && static_cast<int>(running.size()) < o.jobs &&
           !(o.until_failure && res.failed > 0)) {
      int p[2];
      if (pipe(p) != 0) {
        perror("outpost-sim sweep: pipe");
        exit(2);
      }
      const pid_t pid = fork();
      if (pid < 0) {
        perror("outpost-sim sweep: fork");
        exit(2);
      }
      if (pid == 0) {
        close(p[0]);
        RunChild(scenario, o, next, p[1]);
      }
      close(p[1]);
      running[pid] = {next, p[0]};
      ++next;
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) break;
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const Child c = it->second;
    running.erase(it);
    std::string verdict = ReadAllFd(c.fd);
    close(c.fd);
    ++res.seeds;
    const bool exited_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!exited_ok) {
      ++res.failed;
      if (verdict.empty()) {
        ++res.crashed;
        verdict = WIFSIGNALED(status) ? "CRASH signal " + std::to_string(WTERMSIG(status))
                                      : "CRASH exit " + std::to_string(WEXITSTATUS(status));
      }
      while (!verdict.empty() && verdict.back() == '\n') verdict.pop_back();
      printf("seed %llu: %s\n  replay: %s\n", static_cast<unsigned long long>(c.seed),
             verdict.c_str(), replay(c.seed).c_str());
      fflush(stdout);
    }
    if (o.progress && (res.seeds * 20 / total > reported || res.seeds == total)) {
      reported = res.seeds * 20 / total;
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      fprintf(stderr, "sweep: %llu of %llu seeds, %llu failed, %.0f s\n",
              static_cast<unsigned long long>(res.seeds), static_cast<unsigned long long>(total),
              static_cast<unsigned long long>(res.failed), s);
    }
  }
  res.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace outpost::sim
