// outpost-bench-hub: how fast the hub takes in site events, next to the raw RocksDB
// ceiling measured in the same run on the same disk.
//
//  ceiling  synced WriteBatches of the same size, keys and values as the hub writes
//           (no decoding, no view), straight into RocksDB.
//  hub      HubCore with its real store on disk: N sites, each a real SyncSession in
//           the site role with E events waiting, exchanging real wire frames (encoded
//           and decoded) with the hub until every event is acknowledged. The sites run
//           on a thread of their own; the hub's thread does the hub's work. Everything the
//           hub does per batch is included: decode, copy of the log, run view, watermark,
//           one synced WriteBatch. The network and CURVE are not (see docs/performance.md).
//
//   outpost-bench-hub [--sites N] [--events E] [--dir PATH]
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>

#include <spdlog/spdlog.h>

#include "../tests/common/mem_streams.h"
#include "bench/sample_event.h"
#include "common/rocks.h"
#include "common/transport/zmq_link.h"
#include "hub/hub_core.h"
#include "hub/rocks_hub_store.h"

namespace outpost {
namespace {

using json = nlohmann::json;
using Clk = std::chrono::steady_clock;

using bench::SampleEvent;

// 0: SampleEvent (runs of 50 tasks, each task reported once); N: runs of N tasks, each
// task started and later finished (bench::LargeRunEvent).
uint64_t run_tasks = 0;
size_t batch = SyncOptions{}.batch_count;  // --batch: events per batch (sites and ceiling)
bool whole_runs = false;  // --whole-runs: the store writes every run whole (the baseline)
size_t group_commit = HubOptions{}.group_commit;  // --group-commit: batches per synced write
std::string BenchEvent(size_t site, uint64_t i) {
  return run_tasks ? bench::LargeRunEvent(site, i, run_tasks) : SampleEvent(site, i);
}

// CPU time of the calling thread.
double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec / 1e9;
}

// `group`: batches per synced write (the last one of each group synced; 1: every one).
double Ceiling(const std::string& dir, int sites, int events, size_t batch, size_t group = 1) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto rocks = OpenRocks(dir, {"up", "sites"}, RocksOptions{nullptr, 8 << 20, 32 << 20});
  if (!rocks.ok()) {
    fprintf(stderr, "%s\n", rocks.status().ToString().c_str());
    exit(1);
  }
  rocksdb::WriteOptions wo;
  const auto t0 = Clk::now();
  uint64_t total = 0, writes = 0;
  for (int s = 0; s < sites; ++s) {
    const std::string name = "site" + std::to_string(s);
    for (int first = 0; first < events; first += static_cast<int>(batch)) {
      rocksdb::WriteBatch wb;
      for (int i = first; i < std::min<int>(events, first + static_cast<int>(batch)); ++i) {
        wb.Put(rocks->cfs[1], StreamKey(name, 1, static_cast<uint64_t>(i) + 1), BenchEvent(s, i));
        ++total;
      }
      wb.Put(rocks->cfs[2], name, std::string(120, 's'));
      const bool last = s + 1 == sites && first + static_cast<int>(batch) >= events;
      wo.sync = ++writes % group == 0 || last;
      if (!rocks->db->Write(wo, &wb).ok()) exit(1);
    }
  }
  return total / std::chrono::duration<double>(Clk::now() - t0).count();
}

struct Site {
  Site(int i, const Clock& clock, SyncOptions o)
      : name("site" + std::to_string(i)),
        session(SyncSession::Role::kSite, clock, o, &up, &down, name, 1) {}
  std::string name;
  testing::MemOutgoing up;
  testing::MemIncoming down;
  SyncSession session;
  bool finished = false;  // every event acknowledged
  std::vector<std::string> waiting;  // events appended once every site is connected
};

double HubIngest(const std::string& dir, int sites, int events, uint64_t* frames,
                 double* connect_secs, double* busy_share, double* hub_cpu,
                 double* batches_per_sync) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  RocksHubStore::Options so;
  so.task_rows = !whole_runs;
  auto store = RocksHubStore::Open(dir, so);
  SystemClock clock;
  Rng rng(1);
  HubOptions ho;
  ho.sync.batch_count = batch;
  ho.group_commit = group_commit;
  auto core = HubCore::Open(store->get(), clock, &rng, ho);
  if (!store.ok() || !core.ok()) exit(1);
  std::vector<std::unique_ptr<Site>> fleet;
  std::map<std::string, Site*> by_peer;
  for (int i = 0; i < sites; ++i) {
    auto keys = GenerateCurveKeys();
    HubOutput ignore;
    json r = (*core)->OnOperator("bench", {{"op", "site.add"}, {"name", "site" + std::to_string(i)},
                                           {"key", keys->public_z85}}, &ignore);
    if (!r["ok"].get<bool>()) exit(1);
    fleet.push_back(std::make_unique<Site>(i, clock, ho.sync));
    for (int e = 0; e < events; ++e) fleet.back()->waiting.push_back(BenchEvent(i, e));
    by_peer[fleet.back()->name] = fleet.back().get();
  }
  // The sites run on their own thread, as they run on their own machines: the hub's
  // thread does only the hub's work (decode, apply, commit, answer). Frames cross between
  // the two threads as encoded bytes.
  struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::pair<Site*, std::string>> q;
    bool closed = false;
    void Push(Site* s, std::string b) {
      {
        std::lock_guard<std::mutex> l(mu);
        q.emplace_back(s, std::move(b));
      }
      cv.notify_one();
    }
    // Everything waiting (blocks until something is, or the queue is closed).
    bool PopAll(std::deque<std::pair<Site*, std::string>>* out) {
      std::unique_lock<std::mutex> l(mu);
      cv.wait(l, [&] { return !q.empty() || closed; });
      if (q.empty()) return false;
      out->swap(q);
      return true;
    }
    void Close() {
      {
        std::lock_guard<std::mutex> l(mu);
        closed = true;
      }
      cv.notify_all();
    }
  } to_hub, to_sites;
  // Two phases, both timed: every site connects (HELLO, WELCOME: the hub records each
  // site's first incarnation with a synced write), then every site's events are appended
  // at once and streamed until acknowledged.
  Clk::time_point t0 = Clk::now(), t_connected;
  std::thread sites_thread([&] {
    for (auto& s : fleet) {
      SyncOutput so;
      s->session.OnConnected(&so);
      for (auto& m : so.send) to_hub.Push(s.get(), EncodeMessage(m));
    }
    size_t connected = 0, done = 0;
    std::deque<std::pair<Site*, std::string>> in;
    while (done < fleet.size() && to_sites.PopAll(&in)) {
      for (auto& [site, bytes] : in) {
        Message back;
        if (!DecodeMessage(bytes, &back).ok()) exit(1);
        SyncOutput so;
        const bool was = site->session.established();
        site->session.OnMessage(back, &so);
        for (auto& m : so.send) to_hub.Push(site, EncodeMessage(m));
        if (!was && site->session.established() && ++connected == fleet.size()) {
          t_connected = Clk::now();
          for (auto& f : fleet) {
            for (auto& e : f->waiting) f->up.Append(std::move(e));
            SyncOutput po;
            f->session.Poke(&po);
            for (auto& m : po.send) to_hub.Push(f.get(), EncodeMessage(m));
          }
        }
        if (connected == fleet.size() && site->up.acked() == static_cast<uint64_t>(events) &&
            !site->finished) {
          site->finished = true;
          ++done;
        }
      }
      in.clear();
    }
    to_hub.Close();
  });
  *frames = 0;
  std::deque<std::pair<Site*, std::string>> in;
  double busy = 0;  // seconds the hub's thread spent on frames (the rest it waited for them)
  const double cpu0 = ThreadCpuSeconds();
  while (to_hub.PopAll(&in)) {
    for (auto& [site, bytes] : in) {
      HubOutput out;
      const auto b0 = Clk::now();
      (*core)->OnSiteFrame(site->name, site->name, bytes, &out);
      busy += std::chrono::duration<double>(Clk::now() - b0).count();
      ++*frames;
      for (auto& f : out.send) to_sites.Push(by_peer[f.peer], EncodeMessage(f.message));
    }
    // What the hub's driver does when no frame is waiting: the group's synced write, then
    // its ACKs (group commit; OnSiteFrame syncs by itself when a group is full).
    HubOutput out;
    const auto b0 = Clk::now();
    (*core)->Flush(&out).IgnoreError();
    busy += std::chrono::duration<double>(Clk::now() - b0).count();
    for (auto& f : out.send) to_sites.Push(by_peer[f.peer], EncodeMessage(f.message));
    in.clear();
  }
  *hub_cpu = ThreadCpuSeconds() - cpu0;
  const HubCounters& c = (*core)->counters();
  *batches_per_sync =
      c.group_syncs ? static_cast<double>(c.group_batches) / static_cast<double>(c.group_syncs) : 1;
  sites_thread.join();
  const double secs = std::chrono::duration<double>(Clk::now() - t_connected).count();
  *connect_secs = std::chrono::duration<double>(t_connected - t0).count();
  *busy_share = busy / std::chrono::duration<double>(Clk::now() - t0).count();
  for (auto& s : fleet) {
    if (s->up.acked() != static_cast<uint64_t>(events)) {
      fprintf(stderr, "site %s: only %llu of %d events acknowledged\n", s->name.c_str(),
              static_cast<unsigned long long>(s->up.acked()), events);
      exit(1);
    }
  }
  return static_cast<double>(sites) * events / secs;
}

int Main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  int sites = 100, events = 5000;
  std::string dir = "/tmp/outpost-bench-hub";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--sites")) sites = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--events")) events = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--dir")) dir = argv[i + 1];
    else if (!strcmp(argv[i], "--run-tasks")) run_tasks = strtoull(argv[i + 1], nullptr, 10);
    else if (!strcmp(argv[i], "--batch")) batch = std::max<size_t>(1, strtoull(argv[i + 1], nullptr, 10));
    else if (!strcmp(argv[i], "--whole-runs")) whole_runs = !strcmp(argv[i + 1], "on");
    else if (!strcmp(argv[i], "--group-commit")) group_commit = std::clamp<size_t>(strtoull(argv[i + 1], nullptr, 10), 1, 64);
  }
  printf("hub ingest: %d sites x %d events, synced writes, store in %s; %s\n", sites, events,
         dir.c_str(),
         run_tasks ? ("runs of " + std::to_string(run_tasks) +
                      " tasks, each started then finished").c_str()
                   : "runs of 50 tasks, each reported once");
  if (whole_runs) printf("  (--whole-runs on: every run written whole, as before task rows)\n");
  // The ceiling is measured before and after the hub and averaged: a virtual machine's
  // disk drifts within minutes, and one measurement on either side would favour one.
  const double before = Ceiling(dir + "/raw", sites, events, batch);
  uint64_t frames = 0;
  double connect = 0, busy = 0, hub_cpu = 0, per_sync = 1;
  const double hub =
      HubIngest(dir + "/hub", sites, events, &frames, &connect, &busy, &hub_cpu, &per_sync);
  const double after = Ceiling(dir + "/raw", sites, events, batch);
  const double ceiling = (before + after) / 2;
  // The disk's limit for the same writes grouped as the hub grouped them.
  const size_t group = static_cast<size_t>(per_sync + 0.5);
  const double grouped = group > 1 ? Ceiling(dir + "/raw", sites, events, batch, group) : ceiling;
  printf("  raw RocksDB ceiling (synced batches of %zu): %10.0f events/s (%.0f before the hub, %.0f after)\n",
         batch, ceiling, before, after);
  printf("  %d sites connected (HELLO, WELCOME, first incarnation recorded) in %.2f s: %.0f handshakes/s\n",
         sites, connect, sites / connect);
  printf("  HubCore + HubStore, wire codec, no network:  %10.0f events/s (%.0f%% of ceiling), %llu frames\n",
         hub, 100.0 * hub / ceiling, static_cast<unsigned long long>(frames));
  printf("  group commit: %.1f batches per synced write (--group-commit %zu); the raw ceiling "
         "with %zu batches per synced write: %.0f events/s (the hub at %.0f%% of it)\n",
         per_sync, group_commit, group, grouped, 100.0 * hub / grouped);
  printf("  the hub's thread was busy %.0f%% of the time (the rest it waited for the sites); "
         "its CPU: %.2f us per event\n",
         100.0 * busy, 1e6 * hub_cpu / (static_cast<double>(sites) * events));
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace outpost

int main(int argc, char** argv) { return outpost::Main(argc, argv); }
