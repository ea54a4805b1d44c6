// outpost-bench-hub: how fast the hub takes in site events, next to the raw RocksDB
// ceiling measured in the same run on the same disk.
//
//  ceiling  synced WriteBatches of the same size, keys and values as the hub writes
//           (no decoding, no view), straight into RocksDB.
//  hub      HubCore with its real store on disk: N sites, each a real SyncSession in
//           the site role with E events waiting, exchanging real wire frames (encoded
//           and decoded) with the hub until every event is acknowledged. Everything the
//           hub does per batch is included: decode, copy of the log, run view, watermark,
//           one synced WriteBatch. The network and CURVE are not (see docs/performance.md).
//
//   outpost-bench-hub [--sites N] [--events E] [--dir PATH]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>

#include <spdlog/spdlog.h>

#include "../tests/common/mem_streams.h"
#include "common/rocks.h"
#include "common/transport/zmq_link.h"
#include "hub/hub_core.h"
#include "hub/rocks_hub_store.h"

namespace outpost {
namespace {

using json = nlohmann::json;
using Clk = std::chrono::steady_clock;

std::string SampleEvent(int site, uint64_t i) {
  Event e;
  e.time = 1'700'000'000'000 + static_cast<TimeMs>(i);
  e.run = "site" + std::to_string(site) + "-01M87C95MV8X5HZQ572CT220" + std::to_string(i / 50);
  e.task = "task-" + std::to_string(i % 50);
  e.attempt = 1;
  e.type = static_cast<uint8_t>(i % 2 ? EventType::kAttemptStarted : EventType::kTaskFinished);
  e.state = i % 2 ? "running" : "succeeded";
  e.exit_code = 0;
  return Encode(e);
}

double Ceiling(const std::string& dir, int sites, int events, size_t batch) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto rocks = OpenRocks(dir, {"up", "sites"}, RocksOptions{nullptr, 8 << 20, 32 << 20});
  if (!rocks.ok()) {
    fprintf(stderr, "%s\n", rocks.status().ToString().c_str());
    exit(1);
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  const auto t0 = Clk::now();
  uint64_t total = 0;
  for (int s = 0; s < sites; ++s) {
    const std::string name = "site" + std::to_string(s);
    for (int first = 0; first < events; first += static_cast<int>(batch)) {
      rocksdb::WriteBatch wb;
      for (int i = first; i < std::min<int>(events, first + static_cast<int>(batch)); ++i) {
        wb.Put(rocks->cfs[1], StreamKey(name, 1, static_cast<uint64_t>(i) + 1), SampleEvent(s, i));
        ++total;
      }
      wb.Put(rocks->cfs[2], name, std::string(120, 's'));
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
};

double HubIngest(const std::string& dir, int sites, int events, uint64_t* frames) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto store = RocksHubStore::Open(dir, RocksHubStore::Options{});
  SystemClock clock;
  Rng rng(1);
  HubOptions ho;
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
    for (int e = 0; e < events; ++e) fleet.back()->up.Append(SampleEvent(i, e));
    by_peer[fleet.back()->name] = fleet.back().get();
  }
  const auto t0 = Clk::now();
  // Every site connects; then frames flow both ways until nobody has anything to say.
  std::vector<std::pair<Site*, Message>> to_hub;
  for (auto& s : fleet) {
    SyncOutput so;
    s->session.OnConnected(&so);
    for (auto& m : so.send) to_hub.emplace_back(s.get(), std::move(m));
  }
  *frames = 0;
  while (!to_hub.empty()) {
    std::vector<std::pair<Site*, Message>> next;
    for (auto& [site, m] : to_hub) {
      HubOutput out;
      (*core)->OnSiteFrame(site->name, site->name, EncodeMessage(m), &out);
      ++*frames;
      for (auto& f : out.send) {
        Site* dst = by_peer[f.peer];
        Message back;
        if (!DecodeMessage(EncodeMessage(f.message), &back).ok()) exit(1);
        SyncOutput so;
        dst->session.OnMessage(back, &so);
        for (auto& m2 : so.send) next.emplace_back(dst, std::move(m2));
      }
    }
    to_hub = std::move(next);
  }
  const double secs = std::chrono::duration<double>(Clk::now() - t0).count();
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
  }
  printf("hub ingest: %d sites x %d events, synced writes, store in %s\n", sites, events, dir.c_str());
  const double ceiling = Ceiling(dir + "/raw", sites, events, SyncOptions{}.batch_count);
  printf("  raw RocksDB ceiling (synced batches of %zu): %10.0f events/s\n",
         SyncOptions{}.batch_count, ceiling);
  uint64_t frames = 0;
  const double hub = HubIngest(dir + "/hub", sites, events, &frames);
  printf("  HubCore + HubStore, wire codec, no network:  %10.0f events/s (%.0f%% of ceiling), %llu frames\n",
         hub, 100.0 * hub / ceiling, static_cast<unsigned long long>(frames));
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace outpost

int main(int argc, char** argv) { return outpost::Main(argc, argv); }
