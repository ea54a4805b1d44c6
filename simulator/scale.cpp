// outpost-sim scale: how many sites one HubCore carries, under virtual time.
//
// Each site is what its link costs the hub: a real SyncSession in the site role with an
// event log in memory that drops what the hub acknowledged, starting a run every few
// hours (five events: created, attempt started and finished, task and run finished).
// The hub is the real HubCore on a RocksHubStore in a scratch directory (unsynced: the
// disk's speed is outpost-bench-hub's subject). Frames go through the wire codec both
// ways, delivered at once. At the end every site's events must be acknowledged, the hub's
// watermark and event count equal to each site's log, and every run in the run view
// finished: the invariants of the full simulator, checked by count.
#include "simulator/scale.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <queue>
#include <string>
#include <vector>

#include "common/faults.h"
#include "common/keys.h"
#include "common/protocol/event.h"
#include "common/protocol/sync_session.h"
#include "common/protocol/wire.h"
#include "common/random.h"
#include "hub/hub_core.h"
#include "hub/rocks_hub_store.h"
#include "simulator/shared_store.h"

namespace outpost::sim {
namespace {

// A site's log as the link sees it: entries kept until the hub acknowledges them.
class ShortLog final : public OutgoingStream {
 public:
  void Append(std::string e) { kept_.push_back(std::move(e)); }
  uint64_t head() const override { return acked_ + kept_.size(); }
  uint64_t acked() const override { return acked_; }
  Result<std::vector<LogRecord>> Read(uint64_t after, size_t max_count,
                                      size_t max_bytes) const override {
    std::vector<LogRecord> out;
    size_t bytes = 0;
    for (uint64_t s = std::max(after, acked_) + 1; s <= head() && out.size() < max_count; ++s) {
      const std::string& e = kept_[s - acked_ - 1];
      if (!out.empty() && bytes + e.size() > max_bytes) break;
      bytes += e.size();
      out.push_back({s, e});
    }
    return out;
  }
  Status Acknowledge(uint64_t seq) override {
    while (acked_ < seq && !kept_.empty()) {
      kept_.pop_front();
      ++acked_;
    }
    return Status::Ok();
  }

 private:
  std::deque<std::string> kept_;
  uint64_t acked_ = 0;
};

class NoCommands final : public IncomingStream {
 public:
  uint64_t applied() const override { return applied_; }
  Status Apply(uint64_t first_seq, const std::vector<std::string>& entries) override {
    applied_ = first_seq + entries.size() - 1;
    return Status::Ok();
  }
  uint64_t hub_epoch() const override { return 0; }
  Status SetHubEpoch(uint64_t) override { return Status::Ok(); }

 private:
  uint64_t applied_ = 0;
};

struct LightSite {
  std::string name;
  ShortLog up;
  NoCommands down;
  std::unique_ptr<SyncSession> session;
  uint64_t runs = 0;
  size_t at = 0;  // the hub process it is connected to
};

double AnonymousMb() {
  std::ifstream in("/proc/self/smaps_rollup");
  std::string line, key, unit;
  double kb = 0;
  std::getline(in, line);
  while (in >> key >> kb >> unit) {
    if (key == "Anonymous:") return kb / 1024;
  }
  return 0;
}

double RssMb() {
  std::ifstream in("/proc/self/statm");
  long pages = 0, rss = 0;
  in >> pages >> rss;
  return static_cast<double>(rss) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
}

}  // namespace

int RunScale(const ScaleOptions& o) {
  spdlog::set_level(spdlog::level::err);
  namespace fs = std::filesystem;
  const std::string dir = fs::temp_directory_path() / ("outpost-sim-scale-" + std::to_string(getpid()));
  fs::remove_all(dir);
  const auto wall0 = std::chrono::steady_clock::now();
  ManualClock clock;
  Rng rng(o.seed);
  RocksHubStore::Options so;
  so.sync = false;
  const size_t hubs = static_cast<size_t>(std::max(1, o.hubs));
  so.check_revisions = hubs > 1;
  auto store = RocksHubStore::Open(dir, so);
  if (!store.ok()) {
    fprintf(stderr, "outpost-sim scale: %s\n", store.status().ToString().c_str());
    return 2;
  }
  HubOptions ho;
  // Sessions as a large fleet would be tuned: a ping every 30 minutes.
  ho.sync.idle_ping = 30 * 60'000;
  ho.sync.dead_after = 90 * 60'000;
  ho.sync.resend_after = 60'000;
  auto faults = Faults::Parse(o.mutation);
  if (!faults.ok()) {
    fprintf(stderr, "outpost-sim scale: %s\n", faults.status().message().c_str());
    return 2;
  }
  // Several hubs: each its own HubCore over a view of the one store.
  std::vector<SharedStoreView*> view_list;
  std::vector<std::unique_ptr<SharedStoreView>> views;
  std::vector<std::unique_ptr<HubCore>> cores;
  for (size_t h = 0; h < hubs; ++h) {
    HubStore* over = store->get();
    if (hubs > 1) {
      views.push_back(std::make_unique<SharedStoreView>(store->get(), &view_list));
      view_list.push_back(views.back().get());
      over = views.back().get();
    }
    HubOptions mine = ho;
    mine.process_name = "hub" + std::to_string(h);
    auto core = HubCore::Open(over, clock, &rng, mine, *faults);
    if (!core.ok()) return 2;
    cores.push_back(std::move(core).value());
  }
  HubCore& hub = *cores[0];
  const double mem_before = AnonymousMb();

  std::vector<std::unique_ptr<LightSite>> sites;
  sites.reserve(o.sites);
  for (size_t i = 0; i < o.sites; ++i) {
    auto s = std::make_unique<LightSite>();
    s->name = "s" + std::to_string(i);
    // Enrolled by key as `site add` does (a made-up key: nothing here speaks CURVE).
    char key[41];
    snprintf(key, sizeof key, "%040zu", i);
    HubOutput ignore;
    nlohmann::json r = hub.OnOperator("scale", {{"op", "site.add"}, {"name", s->name}, {"key", key}},
                                      &ignore);
    if (!r.value("ok", false)) {
      fprintf(stderr, "outpost-sim scale: site.add: %s\n", r.dump().c_str());
      return 2;
    }
    s->session = std::make_unique<SyncSession>(SyncSession::Role::kSite, clock, ho.sync, &s->up,
                                               &s->down, s->name, rng.Next() | 1);
    s->at = i % hubs;
    sites.push_back(std::move(s));
  }
  for (size_t h = 1; h < hubs; ++h) {
    HubOutput ignore;
    cores[h]->RefreshFromStore(&ignore);  // the sites hub 0 enrolled
  }
  const double mem_sites = AnonymousMb();

  uint64_t frames = 0;
  // Delivers a site's frames to the hub and the hub's answers back, until both are quiet.
  std::vector<std::pair<size_t, Message>> to_hub;
  // A hub's frames reach a site only over the connection it has now (to hub h).
  auto deliver = [&](size_t h, const HubOutput& out, std::vector<std::pair<size_t, Message>>* next) {
    for (auto& f : out.send) {
      Message back;
      if (!DecodeMessage(EncodeMessage(f.message), &back).ok()) continue;
      const size_t j = std::stoul(f.peer.substr(1));
      if (sites[j]->at != h) continue;
      SyncOutput so2;
      sites[j]->session->OnMessage(back, &so2);
      for (auto& m2 : so2.send) next->emplace_back(j, std::move(m2));
    }
  };
  uint64_t moves = 0, late_batches = 0;
  auto settle = [&]() {
    while (!to_hub.empty()) {
      std::vector<std::pair<size_t, Message>> next;
      for (auto& [i, m] : to_hub) {
        HubOutput out;
        const size_t h = sites[i]->at;
        cores[h]->OnSiteFrame(sites[i]->name, sites[i]->name, EncodeMessage(m), &out);
        ++frames;
        deliver(h, out, &next);
      }
      for (size_t h = 0; h < cores.size(); ++h) {  // as a driver does when nothing waits
        HubOutput out;
        cores[h]->Flush(&out).IgnoreError();
        deliver(h, out, &next);
      }
      to_hub = std::move(next);
    }
  };
  // Timers: (when, site) for a run to start; sessions are ticked every minute in passes.
  using Due = std::pair<TimeMs, size_t>;
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> runs_due;
  const TimeMs start = clock.Now(), end = start + static_cast<TimeMs>(o.hours) * 3'600'000;
  for (size_t i = 0; i < sites.size(); ++i) {
    SyncOutput out;
    sites[i]->session->OnConnected(&out);
    for (auto& m : out.send) to_hub.emplace_back(i, std::move(m));
    if (to_hub.size() > 1024) settle();
    runs_due.push({start + static_cast<TimeMs>(rng.Uniform(static_cast<uint64_t>(o.run_every_ms))), i});
  }
  settle();
  uint64_t events = 0, runs = 0;
  TimeMs next_tick = start + 60'000;
  while (true) {
    const TimeMs t = std::min(next_tick, runs_due.empty() ? end : runs_due.top().first);
    if (t >= end) break;
    clock.Set(t);
    if (t == next_tick) {
      next_tick += 60'000;
      for (size_t h = 0; h < hubs; ++h) {
        HubOutput hout;
        if (hubs > 1) cores[h]->OnStoreChanges(&hout);
        cores[h]->Tick(&hout);
        deliver(h, hout, &to_hub);
      }
      for (auto& s : sites) {
        SyncOutput out;
        s->session->Tick(&out);
        const size_t i = static_cast<size_t>(&s - &sites[0]);
        for (auto& m : out.send) to_hub.emplace_back(i, std::move(m));
      }
      settle();
      continue;
    }
    const size_t i = runs_due.top().second;
    runs_due.pop();
    LightSite& s = *sites[i];
    auto log_run = [&]() {
      const std::string run =
          s.name + "-01J" + std::to_string(1'000'000'000'000'000'000ULL + ++s.runs);
      const EventType kinds[] = {EventType::kRunCreated, EventType::kAttemptStarted,
                                 EventType::kAttemptFinished, EventType::kTaskFinished,
                                 EventType::kRunFinished};
      for (EventType k : kinds) {
        Event e;
        e.time = t;
        e.run = run;
        e.type = static_cast<uint8_t>(k);
        e.attempt = 1;
        e.exit_code = 0;
        if (k == EventType::kRunCreated) {
          e.workflow = "collect";
          e.tasks = {"read"};
        } else if (k != EventType::kRunFinished) {
          e.task = "read";
        }
        if (k == EventType::kAttemptStarted) e.state = "running";
        if (k == EventType::kTaskFinished || k == EventType::kRunFinished) e.state = "succeeded";
        s.up.Append(Encode(e));
        ++events;
      }
      ++runs;
    };
    log_run();
    SyncOutput out;
    s.session->Poke(&out);
    if (hubs > 1 && s.session->established() &&
        rng.Uniform(static_cast<uint64_t>(std::max(1, o.move_every))) == 0) {
      // The link breaks with this batch in flight. The site reaches another hub, which
      // applies it (and the site's next run); then the old hub gets the batch, late.
      ++moves;
      const size_t old = s.at;
      s.session->OnDisconnected();
      s.at = (old + 1 + rng.Uniform(hubs - 1)) % hubs;
      SyncOutput hello;
      s.session->OnConnected(&hello);
      for (auto& m : hello.send) to_hub.emplace_back(i, std::move(m));
      settle();
      log_run();
      SyncOutput more;
      s.session->Poke(&more);
      for (auto& m : more.send) to_hub.emplace_back(i, std::move(m));
      settle();
      for (auto& m : out.send) {
        if (m.type() != MsgType::kBatch) continue;
        ++late_batches;
        HubOutput ignore;  // its answers go to a connection that is gone
        cores[old]->OnSiteFrame(s.name, s.name, EncodeMessage(m), &ignore);
      }
    } else {
      for (auto& m : out.send) to_hub.emplace_back(i, std::move(m));
      settle();
    }
    runs_due.push({t + o.run_every_ms / 2 + static_cast<TimeMs>(rng.Uniform(static_cast<uint64_t>(o.run_every_ms))), i});
  }
  clock.Set(end);
  settle();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  const double mem_end = AnonymousMb();

  // The invariants, by count.
  size_t bad = 0;
  for (size_t h = 0; h < hubs; ++h) {
    // Each hub learns what the others last did, as it would at its next tick.
    HubOutput ignore;
    if (hubs > 1) cores[h]->OnStoreChanges(&ignore);
  }
  for (const auto& s : sites) {
    auto stored = (*store)->GetSite(s->name);
    const SiteRecord* r = stored.ok() && *stored ? &**stored : nullptr;
    if (!r || s->up.acked() != s->up.head() || r->up_applied != s->up.head() ||
        r->events_total != s->up.head() || !cores[s->at]->online(s->name)) {
      if (++bad <= 5) {
        fprintf(stderr,
                "site %s: logged %llu events, %llu acknowledged by the hub; the hub's watermark "
                "is %llu and it applied %llu events\n",
                s->name.c_str(), static_cast<unsigned long long>(s->up.head()),
                static_cast<unsigned long long>(s->up.acked()),
                static_cast<unsigned long long>(r ? r->up_applied : 0),
                static_cast<unsigned long long>(r ? r->events_total : 0));
      }
    }
  }
  uint64_t succeeded = 0;
  if (hubs == 1) {
    const auto& counts = hub.run_counts();
    succeeded = counts.count("succeeded") ? counts.at("succeeded") : 0;
  } else {
    (*store)->ScanRuns([&](const HubRun& r) {
      succeeded += r.state == "succeeded";
      return true;
    }).IgnoreError();
  }
  if (succeeded != runs) {
    ++bad;
    fprintf(stderr, "run view: %llu runs succeeded, %llu were run\n",
            static_cast<unsigned long long>(succeeded), static_cast<unsigned long long>(runs));
  }
  printf("scale      %zu sites against %zu HubCore%s, %d simulated hours, seed %llu%s%s\n",
         o.sites, hubs, hubs == 1 ? "" : "s over one store", o.hours,
         static_cast<unsigned long long>(o.seed),
         o.mutation == "none" ? "" : ", planted bug ", o.mutation == "none" ? "" : o.mutation.c_str());
  printf("work       %llu runs, %llu events, %llu frames to the hub\n",
         static_cast<unsigned long long>(runs), static_cast<unsigned long long>(events),
         static_cast<unsigned long long>(frames));
  if (hubs > 1) {
    uint64_t conflicts = 0, taken = 0;
    for (const auto& c : cores) {
      conflicts += c->counters().store_conflicts;
      taken += c->counters().sessions_taken_over;
    }
    printf("hubs       %llu moves, %llu batches late at the old hub, %llu writes refused by "
           "compare-and-set, %llu sessions ended there\n",
           static_cast<unsigned long long>(moves), static_cast<unsigned long long>(late_batches),
           static_cast<unsigned long long>(conflicts), static_cast<unsigned long long>(taken));
  }
  printf("time       %.1f s wall (%.0fx real time)\n", wall, o.hours * 3600.0 / wall);
  printf("memory     %.0f MB anonymous at the end (RSS %.0f MB): %.2f KB per site (%.2f KB when "
         "enrolled, before any traffic)\n",
         mem_end, RssMb(), (mem_end - mem_before) * 1024 / static_cast<double>(o.sites),
         (mem_sites - mem_before) * 1024 / static_cast<double>(o.sites));
  printf("invariants %s\n", bad == 0 ? "every event at the hub once, every run in the view: ok"
                                     : "VIOLATED (above)");
  cores.clear();
  views.clear();
  store->reset();
  fs::remove_all(dir);
  return bad == 0 ? 0 : 1;
}

}  // namespace outpost::sim
