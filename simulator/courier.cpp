#include "simulator/courier.h"

#include "common/json_fields.h"

#include <nlohmann/json.hpp>

#include "common/bundle.h"
#include "common/trust.h"
#include "hub/hub_core.h"
#include "simulator/event_queue.h"
#include "simulator/invariants.h"
#include "simulator/network.h"
#include "simulator/sim.h"
#include "simulator/world.h"
#include "site-agent/site_bundles.h"

namespace outpost::sim {

using json = nlohmann::json;

namespace {

bool Serves(const CourierSpec& c, const std::string& site) {
  return c.sites == "all" || c.sites == site || site.rfind(c.sites + "-", 0) == 0;
}

constexpr DurationMs kWaitForProcess = 60'000;  // a volume for a process that is down
constexpr int kMaxWaits = 240;

}  // namespace

Couriers::Couriers(const Scenario& scenario, World* world, SimNetwork* net, EventQueue* queue,
                   Rng* rng, Report* report, Invariants* invariants)
    : sc_(scenario), world_(world), net_(net), queue_(queue), rng_(rng), report_(report),
      invariants_(invariants) {}

void Couriers::Schedule(SimSite& s, TimeMs t0, TimeMs end) {
  for (const auto& c : sc_.couriers) {
    if (!Serves(c, s.name)) continue;
    const TimeMs first = t0 + static_cast<TimeMs>(rng_->Uniform(static_cast<uint64_t>(c.every)));
    queue_->Recurring(first, [this, &s, &c, end]() -> std::optional<TimeMs> {
      if (queue_->Now() >= end || world_->healed()) return std::nullopt;
      Trip(s, c);
      return queue_->Now() + c.every / 2 + static_cast<TimeMs>(rng_->Uniform(static_cast<uint64_t>(c.every)));
    });
  }
}

// One trip: the hub's bundle for the site and the site's return bundle, as they are now.
void Couriers::Trip(SimSite& s, const CourierSpec& c) {
  if (world_->hub_alive()) {
    HubOutput out;
    HubCore& hub = world_->hub();
    json r = hub.OnOperator("courier", {{"op", "bundle.export"}, {"site", s.name}}, &out);
    if (!r.value("ok", false)) {
      invariants_->Violation("no store errors", "bundle.export " + s.name + ": " + SafeDump(r));
      return;
    }
    // The hub's own replies, read with the typed reader all the same: a reply of the
    // wrong shape is a violation, not an exception.
    const json& b = r["bundle"];
    if (!b.is_object() || !b["volumes"].is_array()) {
      invariants_->Violation("no store errors", "bundle.export " + s.name + ": " + SafeDump(r));
      return;
    }
    for (const auto& v : b["volumes"]) {
      JsonFields fv(v);
      std::string head;
      int64_t records = 0;
      if (Status st = fv.Str("head", &head, kRequired, SIZE_MAX)
                          .And(fv.Int("records", &records, 0, int64_t{1} << 30, kRequired));
          !st.ok()) {
        invariants_->Violation("no store errors", "bundle.export " + s.name + ": " + st.ToString());
        return;
      }
      std::string bytes = FromBase64(head).value_or("");
      for (int64_t i = 0; i < records; ++i) {
        json rec = hub.OnOperator("courier", {{"op", "bundle.record"}, {"id", b["id"]},
                                              {"volume", v["volume"]}, {"index", i}}, &out);
        if (!rec.value("ok", false)) {
          invariants_->Violation("no store errors", "bundle.record " + s.name + ": " + rec.dump());
          return;
        }
        std::string record;
        if (Status st = JsonFields(rec).Str("record", &record, kRequired, SIZE_MAX); !st.ok()) {
          invariants_->Violation("no store errors", "bundle.record " + s.name + ": " + st.ToString());
          return;
        }
        bytes += FromBase64(record).value_or("");
      }
      Carry(s, c, std::move(bytes), true);
    }
    net_->HubEmit(out);
  }
  if (s.alive) {
    BundleHeader h;
    auto bytes = ExportUpVolume(s.store->log(), s.down_applied, s.keys, world_->hub_public_key(),
                                s.name, "C" + std::to_string(rng_->Next()), s.clock.Now(), &h);
    if (!bytes.ok()) {
      invariants_->Violation("no store errors", "return bundle " + s.name + ": " + bytes.status().ToString());
      return;
    }
    Carry(s, c, std::move(bytes).value(), false);
  }
}

void Couriers::Carry(SimSite& s, const CourierSpec& c, std::string volume, bool to_site) {
  ++report_->bundles_carried;
  if (rng_->Uniform(1'000'000) < static_cast<uint64_t>(c.loss * 1e6)) {
    ++report_->bundles_lost;
    queue_->Trace("courier lost a volume " + std::string(to_site ? "to " : "from ") + s.name);
    return;
  }
  const int copies = rng_->Uniform(1'000'000) < static_cast<uint64_t>(c.duplicate * 1e6) ? 2 : 1;
  for (int k = 0; k < copies; ++k) {
    const TimeMs at = queue_->Now() + c.delay / 2 +
                      static_cast<TimeMs>(rng_->Uniform(static_cast<uint64_t>(c.delay) + 1));
    queue_->At(at, [this, &s, volume, to_site] {
      if (to_site) {
        DeliverToSite(s, volume, 0);
      } else {
        DeliverToHub(volume, 0);
      }
    });
  }
}

void Couriers::DeliverToSite(SimSite& s, const std::string& volume, int attempt) {
  if (!s.alive) {
    if (attempt < kMaxWaits) {
      queue_->At(queue_->Now() + kWaitForProcess, [this, &s, volume, attempt] {
        DeliverToSite(s, volume, attempt + 1);
      });
    }
    return;
  }
  BundleReader check(ReadFromString(volume));
  Status st = check.ReadHead();
  if (st.ok()) st = check.CheckFraming();
  if (st.ok()) st = CheckDownHeader(check.header(), s.keys.public_z85, world_->hub_public_key());
  if (!st.ok()) {
    invariants_->Violation("bundles open", s.name + ": " + st.ToString());
    return;
  }
  BundleReader reader(ReadFromString(volume));
  (void)reader.ReadHead();
  SiteBundleHooks hooks;
  hooks.incarnation = s.store->log().incarnation();
  hooks.down_applied = [&s] { return s.down_applied; };
  hooks.apply_commands = [&s](uint64_t first, const std::vector<std::string>& entries) {
    return s.inbox->Apply(first, entries);
  };
  hooks.log_head = [&s] { return s.store->log().head(); };
  hooks.log_acked = [&s] { return s.store->log().acked(); };
  hooks.ack_events = [&s](uint64_t seq) { return s.store->log().AckAndTrim(seq); };
  SiteImport r = ImportDownVolume(reader, s.keys, hooks);
  ++report_->bundles_imported;
  report_->bundle_commands_applied += r.applied;
  queue_->Trace("courier to " + s.name + " applied " + std::to_string(r.applied) + " dup " +
                std::to_string(r.duplicates));
  if (!r.problem.empty()) {
    // A new incarnation's site refuses the old database's commands until the hub learns
    // of it (a return bundle or a session); anything else is a bug.
    if (r.problem.find("incarnation") == std::string::npos) {
      invariants_->Violation("bundles open", s.name + ": " + r.problem);
    }
  }
  world_->Activity(s);
}

void Couriers::DeliverToHub(const std::string& volume, int attempt) {
  if (!world_->hub_alive()) {
    if (attempt < kMaxWaits) {
      queue_->At(queue_->Now() + kWaitForProcess, [this, volume, attempt] { DeliverToHub(volume, attempt + 1); });
    }
    return;
  }
  BundleReader reader(ReadFromString(volume));
  Status st = reader.ReadHead();
  const size_t head_len = reader.offset();
  json records = json::array();
  std::string boxed;
  size_t pos = head_len;
  while (st.ok()) {
    auto more = reader.NextBoxed(&boxed);
    if (!more.ok()) st = more.status();
    if (!more.ok() || !*more) break;
    records.push_back(ToBase64(std::string_view(volume).substr(pos, 4 + boxed.size())));
    pos += 4 + boxed.size();
  }
  if (!st.ok()) {
    invariants_->Violation("bundles open", "at the hub: " + st.ToString());
    return;
  }
  HubOutput out;
  json r = world_->hub().OnOperator(
      "courier",
      {{"op", "bundle.import"}, {"head", ToBase64(volume.substr(0, head_len))}, {"records", records}},
      &out);
  net_->HubEmit(out);
  ++report_->bundles_imported;
  queue_->Trace("courier to hub: " + r.dump().substr(0, 200));
  if (!r.value("ok", false)) {
    // An old incarnation's volume arriving after the new one spoke is refused by design.
    const std::string err = r.value("error", "");
    if (err.find("replaced") == std::string::npos) {
      invariants_->Violation("bundles open", "at the hub: " + r.dump());
    }
  }
}

}  // namespace outpost::sim
