#include "simulator/network.h"

#include <algorithm>

#include "common/protocol/wire.h"
#include "simulator/invariants.h"
#include "simulator/world.h"

namespace outpost::sim {

namespace {

bool Matches(const std::string& selector, const std::string& site) {
  if (selector == "all") return true;
  if (selector == site) return true;
  return site.rfind(selector + "-", 0) == 0;  // a group prefix
}

bool InWindow(const Window& w, TimeMs now) { return now >= w.at && now < w.at + w.duration; }

}  // namespace

SimNetwork::SimNetwork(const Scenario& scenario, EventQueue* queue, Rng* rng, Report* report,
                       World* world, Invariants* invariants)
    : sc_(scenario),
      queue_(queue),
      rng_(rng),
      report_(report),
      world_(world),
      invariants_(invariants),
      partitions_(scenario.partitions),
      flapping_(scenario.flapping) {}

void SimNetwork::AddSite(const SimSite& s) {
  if (links_.size() <= s.index) links_.resize(s.index + 1);
  for (const auto& l : sc_.links) {
    if (Matches(l.sites, s.name)) links_[s.index].spec = l;
  }
}

void SimNetwork::Start(TimeMs t0) {
  for (auto* list : {&partitions_, &flapping_}) {
    for (auto& w : *list) w.at += t0;
  }
}

void SimNetwork::ScheduleFirstConnect(SimSite& s, TimeMs t0) {
  queue_->At(t0 + static_cast<TimeMs>(rng_->Uniform(1000)), [this, &s] { TryConnect(s); });
}

void SimNetwork::ScheduleResets(SimSite& s, TimeMs t0, TimeMs end) {
  if (links_[s.index].spec.disconnect_every <= 0) return;
  queue_->Recurring(t0 + Exp(rng_, links_[s.index].spec.disconnect_every),
                    [this, &s, end]() -> std::optional<TimeMs> {
                      if (queue_->Now() >= end) return std::nullopt;
                      Link& link = links_[s.index];
                      ++report_->resets;
                      link.down_until = queue_->Now() + link.spec.disconnect_for;
                      Drop(s, "connection reset");
                      return queue_->Now() + Exp(rng_, link.spec.disconnect_every);
                    });
}

bool SimNetwork::connected(const SimSite& s) const { return links_[s.index].connected; }

bool SimNetwork::reconnect_pending(const SimSite& s) const {
  return links_[s.index].reconnect_pending;
}

bool SimNetwork::Blocked(const SimSite& s, bool upstream) const {
  if (world_->healed()) return false;
  const TimeMs now = queue_->Now();
  if (links_[s.index].down_until > now) return true;
  for (const auto& w : partitions_) {
    if (!InWindow(w, now) || !Matches(w.sites, s.name)) continue;
    if (w.direction == "both" || (w.direction == "up") == upstream) return true;
  }
  for (const auto& w : flapping_) {
    if (!InWindow(w, now) || !Matches(w.sites, s.name) || w.period <= 0) continue;
    if ((now - w.at) % w.period < w.period / 2) return true;
  }
  return false;
}

bool SimNetwork::Lost(const Link& link) {
  return link.spec.drop > 0 && static_cast<double>(rng_->Uniform(999'999)) / 1e6 < link.spec.drop;
}

TimeMs SimNetwork::Arrival(const Link& link, size_t bytes, TimeMs* busy) {
  const LinkSpec& l = link.spec;
  TimeMs at = queue_->Now() + l.latency +
              static_cast<TimeMs>(rng_->Uniform(static_cast<uint64_t>(l.jitter)));
  if (l.bandwidth_bps > 0) {
    const TimeMs tx = static_cast<TimeMs>(bytes * 8 * 1000 / l.bandwidth_bps);
    *busy = std::max(*busy, queue_->Now()) + tx;
    at = std::max(at, *busy + l.latency);
  }
  return at;
}

void SimNetwork::SiteSend(SimSite& s, const SyncOutput& so) {
  Link& link = links_[s.index];
  if (world_->dying(s)) return;  // it died at a write in this step: nothing left it
  for (const auto& m : so.send) {
    std::string bytes = EncodeMessage(m);
    ++report_->frames;
    report_->wire_bytes += bytes.size();
    if (!link.connected || !world_->hub_alive() || Blocked(s, true) || Lost(link)) {
      ++report_->frames_dropped;
      continue;
    }
    const TimeMs at = Arrival(link, bytes.size(), &link.busy_up);
    queue_->At(at, [this, &s, epoch = link.epoch, bytes = std::move(bytes)] {
      DeliverToHub(s, epoch, bytes);
    });
  }
  if (so.disconnect) Drop(s, so.disconnect_reason);
}

void SimNetwork::DeliverToHub(SimSite& s, uint64_t epoch, const std::string& bytes) {
  const Link& link = links_[s.index];
  if (!world_->hub_alive() || !link.connected || link.epoch != epoch) {
    ++report_->frames_dropped;
    return;
  }
  queue_->Trace("up " + s.name + " " + std::to_string(bytes.size()));
  HubOutput out;
  world_->hub().OnSiteFrame(s.name, s.name + "#" + std::to_string(epoch), bytes, &out);
  invariants_->CheckPrefix(*world_, s);
  HubEmit(out);
  world_->HubFlushSoon(s);
}

// The hub addresses a connection as "SITE#EPOCH".
void SimNetwork::HubEmit(const HubOutput& out) {
  if (world_->hub_dying()) return;  // it died at a write in this step: nothing left it
  for (const auto& f : out.send) {
    const auto hash = f.peer.rfind('#');
    SimSite& s = *world_->site(f.peer.substr(0, hash));
    Link& link = links_[s.index];
    const uint64_t epoch = std::stoull(f.peer.substr(hash + 1));
    std::string bytes = EncodeMessage(f.message);
    ++report_->frames;
    report_->wire_bytes += bytes.size();
    if (!link.connected || link.epoch != epoch || Blocked(s, false) || Lost(link)) {
      ++report_->frames_dropped;
      continue;
    }
    const TimeMs at = Arrival(link, bytes.size(), &link.busy_down);
    queue_->At(at, [this, &s, epoch, bytes = std::move(bytes)] { DeliverToSite(s, epoch, bytes); });
  }
}

void SimNetwork::DeliverToSite(SimSite& s, uint64_t epoch, const std::string& bytes) {
  const Link& link = links_[s.index];
  if (!s.alive || !link.connected || link.epoch != epoch) {
    ++report_->frames_dropped;
    return;
  }
  Message m;
  if (!DecodeMessage(bytes, &m).ok()) {
    invariants_->Violation("no store errors", "hub sent an undecodable frame");
    return;
  }
  queue_->Trace("down " + s.name + " " + MsgTypeName(m.t) + " " + std::to_string(bytes.size()) +
                (m.message.empty() ? "" : " " + m.message));
  SyncOutput so;
  s.session->OnMessage(m, &so);
  SiteSend(s, so);
  world_->Activity(s);
}

void SimNetwork::Drop(SimSite& s, const std::string& why) {
  Link& link = links_[s.index];
  if (!link.connected) return;
  queue_->Trace("drop " + s.name + " " + why);
  link.connected = false;
  ++link.epoch;
  if (s.session) s.session->OnDisconnected();
  ScheduleReconnect(s);
}

void SimNetwork::ScheduleReconnect(SimSite& s) {
  Link& link = links_[s.index];
  if (link.reconnect_pending || !s.alive) return;
  link.reconnect_pending = true;
  BackoffPolicy p;
  p.initial = 500;
  p.max = 30'000;
  p.full_jitter = true;
  const DurationMs delay =
      std::max<DurationMs>(100, BackoffDelay(p, ++link.reconnect_attempt, rng_));
  const uint64_t gen = s.generation;
  queue_->At(queue_->Now() + delay, [this, &s, gen] {
    if (s.generation != gen) return;
    links_[s.index].reconnect_pending = false;
    TryConnect(s);
  });
}

void SimNetwork::TryConnect(SimSite& s) {
  Link& link = links_[s.index];
  if (!s.alive || link.connected) return;
  if (!world_->hub_alive() || Blocked(s, true) || Blocked(s, false)) {
    ScheduleReconnect(s);
    return;
  }
  queue_->Trace("connect " + s.name);
  link.connected = true;
  ++link.epoch;
  link.reconnect_attempt = 0;
  SyncOutput so;
  s.session->OnConnected(&so);
  SiteSend(s, so);
  world_->ScheduleWake(s);
}

void SimNetwork::OnSiteOpened(const SimSite& s) {
  Link& link = links_[s.index];
  link.connected = false;
  link.reconnect_attempt = 0;
}

void SimNetwork::OnSiteCrashed(const SimSite& s) {
  Link& link = links_[s.index];
  link.connected = false;
  ++link.epoch;
  link.reconnect_pending = false;
}

void SimNetwork::Heal(SimSite& s) {
  links_[s.index].down_until = 0;
  if (!links_[s.index].connected) ScheduleReconnect(s);
}

}  // namespace outpost::sim
