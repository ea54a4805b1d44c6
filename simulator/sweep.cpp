#include "simulator/sweep.h"

#include <signal.h>
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

constexpr unsigned kSeedWallSeconds = 600;

struct Child {
  uint64_t seed = 0;
  int fd = -1;
};

// What one process of a seed came back with.
struct Outcome {
  bool ok = false;
  std::string hash;     // the trace hash; empty if the process died before it wrote one
  std::string verdict;  // "ok", "FAIL <invariant>: <detail>", "CRASH ..."
};

Outcome ReadOutcome(std::string line, int status) {
  while (!line.empty() && line.back() == '\n') line.pop_back();
  Outcome o;
  const bool exited_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  const size_t sp = line.find(' ');
  if (sp == 16) {
    o.hash = line.substr(0, sp);
    o.verdict = line.substr(sp + 1);
  }
  if (o.verdict.empty()) {
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
      o.verdict = "HANG: no verdict within " + std::to_string(kSeedWallSeconds) + " s";
    } else {
      o.verdict = WIFSIGNALED(status) ? "CRASH signal " + std::to_string(WTERMSIG(status))
                                      : "CRASH exit " + std::to_string(WEXITSTATUS(status));
    }
  }
  o.ok = exited_ok && o.verdict == "ok";
  return o;
}

// In the child: run one seed and write its verdict (first failed invariant, if any) to fd.
[[noreturn]] void RunChild(const Scenario& scenario, const SweepOptions& o, uint64_t seed, int fd) {
  // A seed that hangs (a deadlock in the code under test) is that seed's failure, not a
  // sweep that never ends: SIGALRM ends the process.
  alarm(kSeedWallSeconds);
  Options opt;
  opt.seed = seed;
  opt.mutation = o.mutation;
  opt.faults = o.faults;
  Simulation sim(scenario, opt);
  const Report r = sim.Run();
  char hash[24];
  snprintf(hash, sizeof hash, "%016llx ", static_cast<unsigned long long>(r.trace_hash));
  std::string line = std::string(hash) + (r.ok() ? "ok" : "FAIL");
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
  std::map<uint64_t, Outcome> first_copy;  // with --twice: the first process of each seed
  const uint64_t total = o.last - o.first + 1;
  const uint64_t copies = o.twice ? 2 : 1;
  uint64_t next = 0, reported = 0;  // `next` counts processes: seed first + next / copies
  auto replay = [&](uint64_t seed) {
    return "outpost-sim " + o.scenario_path + " --seed " + std::to_string(seed) +
           (o.mutation == "none" ? "" : " --mutate " + o.mutation);
  };
  fflush(stdout);
  fflush(stderr);
  const uint64_t processes = total * copies;
  auto stop = [&] { return o.until_failure && res.failed > 0; };
  while ((next < processes && !stop()) || !running.empty()) {
    while (next < processes && static_cast<int>(running.size()) < o.jobs && !stop()) {
      const uint64_t seed = o.first + next / copies;
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
        RunChild(scenario, o, seed, p[1]);
      }
      close(p[1]);
      running[pid] = {seed, p[0]};
      ++next;
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) break;
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const Child c = it->second;
    running.erase(it);
    Outcome out = ReadOutcome(ReadAllFd(c.fd), status);
    close(c.fd);
    if (o.twice) {
      auto prev = first_copy.find(c.seed);
      if (prev == first_copy.end()) {
        first_copy.emplace(c.seed, std::move(out));
        continue;
      }
      const Outcome a = std::move(prev->second);
      first_copy.erase(prev);
      if (!a.ok) {
        out = a;  // report the first process's failure
      } else if (out.ok && a.hash != out.hash) {
        // Both held, but the seed did not replay the same history.
        out.ok = false;
        out.verdict = "FAIL the seed replays: two runs at once gave traces " + a.hash +
                      " and " + out.hash;
        ++res.diverged;
      }
    }
    ++res.seeds;
    if (!out.ok) {
      ++res.failed;
      if (out.hash.empty()) ++res.crashed;
      printf("seed %llu: %s\n  replay: %s\n", static_cast<unsigned long long>(c.seed),
             out.verdict.c_str(), replay(c.seed).c_str());
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
