#include "simulator/sim.h"

#include <zmq.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>

#include "common/command.h"
#include "common/ulid.h"
#include "common/workflow.h"
#include "site-agent/commands.h"

namespace outpost::sim {

using json = nlohmann::json;

Result<Mutation> ParseMutation(const std::string& n) {
  if (n == "none") return Mutation::kNone;
  if (n == "ack-before-durable") return Mutation::kAckBeforeDurable;
  if (n == "apply-gaps") return Mutation::kApplyGaps;
  if (n == "forget-watermark") return Mutation::kForgetWatermark;
  return Status::InvalidArgument("unknown mutation '" + n +
                                 "' (ack-before-durable, apply-gaps, forget-watermark)");
}

const char* MutationName(Mutation m) {
  switch (m) {
    case Mutation::kNone:
      return "none";
    case Mutation::kAckBeforeDurable:
      return "ack-before-durable";
    case Mutation::kApplyGaps:
      return "apply-gaps";
    case Mutation::kForgetWatermark:
      return "forget-watermark";
  }
  return "?";
}

bool Report::ok() const {
  return std::all_of(invariants.begin(), invariants.end(), [](const auto& i) { return i.ok; });
}

class Simulation::SkewedClock final : public Clock {
 public:
  SkewedClock(const ManualClock& base, DurationMs skew) : base_(base), skew_(skew) {}
  TimeMs Now() const override { return base_.Now() + skew_; }
  DurationMs skew() const { return skew_; }

 private:
  const ManualClock& base_;
  DurationMs skew_;
};

struct Simulation::Site {
  Site(const ManualClock& base, DurationMs skew, uint64_t seed) : clock(base, skew), rng(seed) {}
  std::string name;
  std::map<std::string, std::string> labels;
  size_t index = 0;
  SkewedClock clock;
  Rng rng;
  uint64_t incarnation = 0;
  LinkSpec link;
  bool alive = false;
  uint64_t generation = 0;  // bumps on every crash; stale timers check it
  std::unique_ptr<AgentStore> store;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<Scheduler> sched;  // the scenario's scheduled workflows that target it
  std::unique_ptr<EventLogStream> up;
  std::unique_ptr<Inbox> inbox;
  std::unique_ptr<SyncSession> session;
  uint64_t down_applied = 0;
  Effects pending;
  bool log_grew = false;
  std::map<std::string, uint64_t> running;  // attempt -> token of its scheduled exit
  uint64_t next_token = 0;
  std::vector<std::string> shadow;  // every event this site ever logged, in order
  uint64_t checked = 0;             // hub copy verified up to here
  bool connected = false;
  uint64_t epoch = 0;  // connection number; frames of older connections are lost
  int reconnect_attempt = 0;
  bool reconnect_pending = false;
  TimeMs link_down_until = 0;
  TimeMs busy_up = 0, busy_down = 0;  // bandwidth: when the link is free again
  TimeMs wake = 0;
};

class Simulation::Inbox : public IncomingStream {
 public:
  Inbox(Simulation* sim, Site* site) : sim_(sim), s_(site) {}
  uint64_t applied() const override { return s_->down_applied; }
  Status Apply(uint64_t first_seq, const std::vector<std::string>& entries) override {
    std::vector<StateWrite> extra;
    for (size_t i = 0; i < entries.size(); ++i) {
      Command c;
      Status st = DecodeCommand(entries[i], &c);
      if (!st.ok()) {
        RecordUndecodableCommand(first_seq + i, st, s_->clock, &s_->pending);
        continue;
      }
      ApplyHubCommand(c, *s_->engine, *s_->store, s_->clock, &s_->pending, &extra);
      ++sim_->report_.commands;
    }
    const uint64_t last = first_seq + entries.size() - 1;
    extra.push_back({kInboxWatermarkKey, EncodeU64(last)});
    OUTPOST_RETURN_IF_ERROR(sim_->Flush(*s_, extra));
    s_->down_applied = last;
    return Status::Ok();
  }

 private:
  Simulation* sim_;
  Site* s_;
};

namespace {

bool Matches(const std::string& selector, const std::string& site) {
  if (selector == "all") return true;
  if (selector == site) return true;
  return site.rfind(selector + "-", 0) == 0;  // a group prefix
}

bool InWindow(const Window& w, TimeMs now) { return now >= w.at && now < w.at + w.duration; }

// Exponential draw with the given mean, at least 1 ms.
DurationMs Exp(Rng* rng, DurationMs mean) {
  const double u = (static_cast<double>(rng->Uniform(1'000'000)) + 1) / 1'000'002.0;
  return std::max<DurationMs>(1, static_cast<DurationMs>(-std::log(u) * static_cast<double>(mean)));
}

// Deterministic Z85 key from the simulation's Rng (real keys use OS entropy).
std::string SimKey(Rng* rng) {
  uint8_t raw[32];
  for (int i = 0; i < 4; ++i) {
    const uint64_t v = rng->Next();
    memcpy(raw + 8 * i, &v, 8);
  }
  char z85[41];
  zmq_z85_encode(z85, raw, 32);
  return z85;
}

}  // namespace

Simulation::Simulation(Scenario scenario, Options options)
    : sc_(std::move(scenario)),
      opt_(options),
      clock_(1'800'000'000'000),
      rng_(options.seed),
      hub_rng_(options.seed ^ 0x9e3779b97f4a7c15ULL),
      env_(rocksdb::NewMemEnv(rocksdb::Env::Default())) {
  report_.scenario = sc_.name.empty() ? sc_.file : sc_.name;
  report_.seed = opt_.seed;
  report_.mutation = opt_.mutation;
}

Simulation::~Simulation() {
  hub_.reset();
  hub_store_.reset();
  for (auto& s : sites_) {
    s->session.reset();
    s->engine.reset();
    s->store.reset();
  }
}

void Simulation::At(TimeMs t, std::function<void()> fn) {
  queue_.push(Item{std::max(t, clock_.Now()), order_++, std::move(fn)});
}

void Simulation::Trace(const std::string& what) {
  static const char* debug = getenv("OUTPOST_SIM_DEBUG");  // a site name: print its trace
  if (debug && what.find(debug) != std::string::npos) {
    fprintf(stderr, "%10lld %s\n", static_cast<long long>(clock_.Now() - 1'800'000'000'000),
            what.c_str());
  }
  // FNV-1a over the time and what happened.
  auto mix = [this](const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) hash_ = (hash_ ^ b[i]) * 1099511628211ULL;
  };
  const TimeMs t = clock_.Now();
  mix(&t, sizeof t);
  mix(what.data(), what.size());
}

void Simulation::Violation(const std::string& invariant, const std::string& detail) {
  for (auto& inv : report_.invariants) {
    if (inv.name == invariant && inv.ok) {
      inv.ok = false;
      inv.detail = "at " + std::to_string(clock_.Now() - 1'800'000'000'000) + " ms: " + detail;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Sites.

Status Simulation::OpenSite(Site& s) {
  EventLog::Options lo;
  lo.env = env_.get();
  lo.new_incarnation = s.incarnation;
  OUTPOST_ASSIGN_OR_RETURN(auto log, EventLog::Open("/sites/" + s.name, lo));
  s.store = std::make_unique<AgentStore>(std::move(log));
  s.engine = std::make_unique<Engine>(s.clock, &s.rng, EngineOptions{sc_.max_parallel, 5000, s.name, s.labels, {}});
  s.up = std::make_unique<EventLogStream>(&s.store->log());
  s.inbox = std::make_unique<Inbox>(this, &s);
  s.session = std::make_unique<SyncSession>(SyncSession::Role::kSite, s.clock, sc_.sync, s.up.get(),
                                            s.inbox.get(), s.name, s.store->log().incarnation());
  OUTPOST_ASSIGN_OR_RETURN(auto raw, s.store->log().GetState(kInboxWatermarkKey));
  s.down_applied = raw ? DecodeU64(*raw) : 0;
  s.pending = Effects();
  s.running.clear();
  OUTPOST_ASSIGN_OR_RETURN(auto unfinished, s.store->LoadUnfinished());
  for (auto& v : unfinished) {
    OUTPOST_RETURN_IF_ERROR(s.engine->Restore(std::move(v.run), std::move(v.tasks), &s.pending));
  }
  // Schedules, as from the agent's workflow directory: state from the store.
  s.sched = std::make_unique<Scheduler>(s.clock, [&s] { return s.name + "-" + MakeUlid(s.clock.Now(), &s.rng); });
  for (const auto& w : sc_.workflows) {
    const auto& def = defs_.at(w.name);
    if (!def->schedule || !SelectorMatches(w.target, s.labels)) continue;
    OUTPOST_ASSIGN_OR_RETURN(auto tz, TimeZone::Load(def->schedule->timezone));
    OUTPOST_ASSIGN_OR_RETURN(auto st, s.store->log().GetState(ScheduleKey(def->name)));
    std::optional<ScheduleState> state;
    if (st) {
      ScheduleState decoded;
      OUTPOST_RETURN_IF_ERROR(Decode(*st, &decoded));
      state = std::move(decoded);
    }
    OUTPOST_RETURN_IF_ERROR(s.sched->Set(def, std::move(tz), state, &s.pending));
  }
  s.alive = true;
  s.connected = false;
  s.reconnect_attempt = 0;
  Trace("open " + s.name);
  return Status::Ok();
}

void Simulation::CrashSite(Site& s) {
  if (!s.alive) return;
  ++report_.agent_crashes;
  Trace("crash " + s.name);
  s.alive = false;
  ++s.generation;
  s.connected = false;
  ++s.epoch;
  s.reconnect_pending = false;
  s.wake = 0;         // its pending wake-up died with it
  s.running.clear();  // its processes die with it (simulated; real ones are killed at restart)
  s.session.reset();
  s.inbox.reset();
  s.up.reset();
  s.sched.reset();
  s.engine.reset();
  s.store.reset();  // closes RocksDB: what was synced is what survives
  s.pending = Effects();
}

Status Simulation::Flush(Site& s, const std::vector<StateWrite>& extra) {
  std::vector<StateWrite> more = extra;
  for (int round = 0; round < 16; ++round) {
    if (s.pending.empty() && more.empty()) return Status::Ok();
    const uint64_t head = s.store->log().head();
    OUTPOST_RETURN_IF_ERROR(s.store->Commit(s.pending, *s.engine, more));
    more.clear();
    if (s.store->log().head() > head) {
      auto fresh = s.store->log().ReadAfter(head, SIZE_MAX, SIZE_MAX);
      if (!fresh.ok()) return fresh.status();
      for (auto& r : *fresh) s.shadow.push_back(std::move(r.payload));
      s.log_grew = true;
    }
    Effects done = std::move(s.pending);
    s.pending = Effects();
    for (const auto& k : done.kills) {
      const std::string key = k.key.run + "/" + k.key.task + "/" + std::to_string(k.key.attempt);
      auto it = s.running.find(key);
      if (it == s.running.end()) continue;
      const uint64_t token = ++s.next_token;
      it->second = token;
      const uint64_t gen = s.generation;
      const AttemptKey ak = k.key;
      const int sig = k.signal;
      At(clock_.Now() + 5, [this, &s, key, token, gen, ak, sig] {
        auto r = s.running.find(key);
        if (!s.alive || s.generation != gen || r == s.running.end() || r->second != token) return;
        s.running.erase(r);
        ExitInfo ex;
        ex.signal = sig;
        s.engine->OnExit(ak, ex, &s.pending);
        Activity(s);
      });
    }
    for (const auto& sp : done.starts) {
      // run: [sim, DURATION, FAILURE_RATE]; anything else takes a second and succeeds.
      DurationMs dur = 1000;
      double fail = 0;
      if (sp.argv.size() >= 2 && sp.argv[0] == "sim") {
        auto d = ParseDuration(sp.argv[1]);
        if (d.ok()) dur = *d;
        if (sp.argv.size() >= 3) fail = strtod(sp.argv[2].c_str(), nullptr);
      }
      dur = dur / 2 + static_cast<DurationMs>(s.rng.Uniform(static_cast<uint64_t>(dur)));
      const bool fails = static_cast<double>(s.rng.Uniform(999'999)) / 1e6 < fail;
      const std::string key = sp.key.run + "/" + sp.key.task + "/" + std::to_string(sp.key.attempt);
      const uint64_t token = ++s.next_token;
      s.running[key] = token;
      s.engine->OnSpawned(sp.key, static_cast<int>(token), &s.pending);
      const uint64_t gen = s.generation;
      const AttemptKey ak = sp.key;
      At(clock_.Now() + dur, [this, &s, key, token, gen, ak, fails] {
        auto r = s.running.find(key);
        if (!s.alive || s.generation != gen || r == s.running.end() || r->second != token) return;
        s.running.erase(r);
        ExitInfo ex;
        ex.exit_code = fails ? 1 : 0;
        ex.output = fails ? "simulated failure" : "ok";
        s.engine->OnExit(ak, ex, &s.pending);
        Activity(s);
      });
    }
    for (const auto& id : done.finished_runs) {
      if (const RunRecord* r = s.engine->FindRun(id)) {
        ++report_.runs;
        if (r->run_state() == RunState::kSucceeded) ++report_.runs_succeeded;
      }
      s.engine->Forget(id);
    }
  }
  return Status::Ok();
}

void Simulation::Activity(Site& s) {
  if (!s.alive) return;
  s.engine->Tick(&s.pending);
  // Schedules are workload: they fire until the heal, then the fleet must quiesce.
  if (!healed_) s.sched->Tick(*s.engine, &s.pending);
  if (Status st = Flush(s, {}); !st.ok()) {
    Violation("no store errors", s.name + ": " + st.ToString());
  }
  if (s.connected) {
    SyncOutput so;
    s.session->Tick(&so);
    if (s.log_grew) s.session->Poke(&so);
    s.log_grew = false;
    SiteSend(s, so);
  }
  ScheduleWake(s);
}

void Simulation::ScheduleWake(Site& s) {
  if (!s.alive) return;
  TimeMs d = s.engine->NextDeadline();
  if (const TimeMs t = healed_ ? 0 : s.sched->NextDeadline(); t > 0 && (d == 0 || t < d)) d = t;
  if (s.connected) {
    const TimeMs sd = s.session->NextDeadline();
    if (sd > 0 && (d == 0 || sd < d)) d = sd;
  }
  if (d == 0) return;
  const TimeMs world = std::max(clock_.Now() + 1, d - s.clock.skew());
  if (s.wake > clock_.Now() && s.wake <= world) return;  // an earlier wake is pending
  s.wake = world;
  const uint64_t gen = s.generation;
  At(world, [this, &s, gen, world] {
    if (!s.alive || s.generation != gen) return;
    if (s.wake == world) s.wake = 0;
    Activity(s);
  });
}

bool Simulation::Blocked(const Site& s, bool upstream) const {
  if (healed_) return false;
  const TimeMs now = clock_.Now();
  if (s.link_down_until > now) return true;
  for (const auto& w : sc_.partitions) {
    if (!InWindow(w, now) || !Matches(w.sites, s.name)) continue;
    if (w.direction == "both" || (w.direction == "up") == upstream) return true;
  }
  for (const auto& w : sc_.flapping) {
    if (!InWindow(w, now) || !Matches(w.sites, s.name) || w.period <= 0) continue;
    if ((now - w.at) % w.period < w.period / 2) return true;
  }
  return false;
}

void Simulation::SiteSend(Site& s, const SyncOutput& so) {
  for (const auto& m : so.send) {
    std::string bytes = EncodeMessage(m);
    ++report_.frames;
    report_.wire_bytes += bytes.size();
    if (!s.connected || !hub_alive_ || Blocked(s, true) ||
        (s.link.drop > 0 && static_cast<double>(rng_.Uniform(999'999)) / 1e6 < s.link.drop)) {
      ++report_.frames_dropped;
      continue;
    }
    TimeMs at = clock_.Now() + s.link.latency +
                static_cast<TimeMs>(rng_.Uniform(static_cast<uint64_t>(s.link.jitter)));
    if (s.link.bandwidth_bps > 0) {
      const TimeMs tx = static_cast<TimeMs>(bytes.size() * 8 * 1000 / s.link.bandwidth_bps);
      s.busy_up = std::max(s.busy_up, clock_.Now()) + tx;
      at = std::max(at, s.busy_up + s.link.latency);
    }
    const uint64_t epoch = s.epoch;
    At(at, [this, &s, epoch, bytes = std::move(bytes)] {
      if (!hub_alive_ || !s.connected || s.epoch != epoch) {
        ++report_.frames_dropped;
        return;
      }
      Trace("up " + s.name + " " + std::to_string(bytes.size()));
      HubOutput out;
      hub_->OnSiteFrame(s.name, s.name + "#" + std::to_string(epoch), bytes, &out);
      CheckPrefix(s);
      HubEmit(out);
    });
  }
  if (so.disconnect) SiteDrop(s, so.disconnect_reason);
}

void Simulation::SiteDrop(Site& s, const std::string& why) {
  if (!s.connected) return;
  Trace("drop " + s.name + " " + why);
  s.connected = false;
  ++s.epoch;
  if (s.session) s.session->OnDisconnected();
  ScheduleReconnect(s);
}

void Simulation::ScheduleReconnect(Site& s) {
  if (s.reconnect_pending || !s.alive) return;
  s.reconnect_pending = true;
  BackoffPolicy p;
  p.initial = 500;
  p.max = 30'000;
  p.full_jitter = true;
  const DurationMs delay = std::max<DurationMs>(100, BackoffDelay(p, ++s.reconnect_attempt, &rng_));
  const uint64_t gen = s.generation;
  At(clock_.Now() + delay, [this, &s, gen] {
    if (s.generation != gen) return;
    s.reconnect_pending = false;
    TryConnect(s);
  });
}

void Simulation::TryConnect(Site& s) {
  if (!s.alive || s.connected) return;
  if (!hub_alive_ || Blocked(s, true) || Blocked(s, false)) {
    ScheduleReconnect(s);
    return;
  }
  Trace("connect " + s.name);
  s.connected = true;
  ++s.epoch;
  s.reconnect_attempt = 0;
  SyncOutput so;
  s.session->OnConnected(&so);
  SiteSend(s, so);
  ScheduleWake(s);
}

void Simulation::StartLocalRun(Site& s, const WorkflowSpec& w) {
  if (!s.alive) return;
  const std::string id = s.name + "-" + MakeUlid(s.clock.Now(), &s.rng);
  if (!s.engine->StartRun(defs_.at(w.name), id, {}, &s.pending).ok()) return;
  ++report_.local_runs;
  if (!s.session->established()) ++report_.local_runs_offline;
  Trace("local " + id);
  Activity(s);
}

// ---------------------------------------------------------------------------------------
// Hub.

Status Simulation::OpenHub() {
  HubStore::Options so;
  so.env = env_.get();
  so.write_buffer_bytes = 4 << 20;
  so.block_cache_bytes = 8 << 20;
  OUTPOST_ASSIGN_OR_RETURN(hub_store_, HubStore::Open("/hub", so));
  HubOptions ho;
  ho.sync = sc_.sync;
  ho.sync.fault_apply_gaps = opt_.mutation == Mutation::kApplyGaps;
  ho.fault_ack_before_durable = opt_.mutation == Mutation::kAckBeforeDurable;
  ho.fault_forget_watermark = opt_.mutation == Mutation::kForgetWatermark;
  OUTPOST_ASSIGN_OR_RETURN(hub_, HubCore::Open(hub_store_.get(), clock_, &hub_rng_, ho));
  hub_alive_ = true;
  HubTicker();
  Trace("hub open");
  // Sites whose reconnect loop gave up waiting are nudged as the hub comes back.
  for (auto& s : sites_) {
    if (s->alive && !s->connected) ScheduleReconnect(*s);
  }
  return Status::Ok();
}

void Simulation::CrashHub() {
  if (!hub_alive_) return;
  ++report_.hub_crashes;
  Trace("hub crash");
  hub_alive_ = false;
  hub_.reset();
  hub_store_.reset();
  // Every connection breaks; the sites see the reset.
  for (auto& s : sites_) SiteDrop(*s, "hub went away");
}

void Simulation::HubEmit(const HubOutput& out) {
  for (const auto& f : out.send) {
    const auto hash = f.peer.rfind('#');
    Site* s = by_name_[f.peer.substr(0, hash)];
    const uint64_t epoch = std::stoull(f.peer.substr(hash + 1));
    std::string bytes = EncodeMessage(f.message);
    ++report_.frames;
    report_.wire_bytes += bytes.size();
    if (!s->connected || s->epoch != epoch || Blocked(*s, false) ||
        (s->link.drop > 0 && static_cast<double>(rng_.Uniform(999'999)) / 1e6 < s->link.drop)) {
      ++report_.frames_dropped;
      continue;
    }
    TimeMs at = clock_.Now() + s->link.latency +
                static_cast<TimeMs>(rng_.Uniform(static_cast<uint64_t>(s->link.jitter)));
    if (s->link.bandwidth_bps > 0) {
      const TimeMs tx = static_cast<TimeMs>(bytes.size() * 8 * 1000 / s->link.bandwidth_bps);
      s->busy_down = std::max(s->busy_down, clock_.Now()) + tx;
      at = std::max(at, s->busy_down + s->link.latency);
    }
    At(at, [this, s, epoch, bytes = std::move(bytes)] {
      if (!s->alive || !s->connected || s->epoch != epoch) {
        ++report_.frames_dropped;
        return;
      }
      Message m;
      if (!DecodeMessage(bytes, &m).ok()) {
        Violation("no store errors", "hub sent an undecodable frame");
        return;
      }
      Trace("down " + s->name + " " + MsgTypeName(m.t) + " " + std::to_string(bytes.size()) +
            (m.message.empty() ? "" : " " + m.message));
      SyncOutput so;
      s->session->OnMessage(m, &so);
      SiteSend(*s, so);
      Activity(*s);
    });
  }
}

// The hub's timers run from a once-a-second tick, like a daemon polling with a one second
// timeout: computing the earliest deadline of thousands of sessions after every frame
// would cost more than the frames.
void Simulation::HubActivity() {
  if (!hub_alive_) return;
  HubOutput out;
  hub_->Tick(&out);
  HubEmit(out);
}

void Simulation::HubTicker() {
  if (hub_ticker_) return;
  hub_ticker_ = true;
  auto tick = std::make_shared<std::function<void()>>();
  *tick = [this, self_fn = tick.get()] {
    HubActivity();
    At(clock_.Now() + 1000, *self_fn);
  };
  recurring_.push_back(tick);
  At(clock_.Now() + 1000, *tick);
}

// Continuous: the hub's durable copy of a site's log is a prefix of the site's log.
void Simulation::CheckPrefix(Site& s) {
  if (!hub_alive_) return;
  const SiteRecord* rec = hub_->site(s.name);
  if (!rec || rec->up_applied <= s.checked) return;
  auto got = hub_store_->ReadUp(s.name, rec->incarnation, s.checked, rec->up_applied - s.checked);
  if (!got.ok()) {
    Violation("hub copy is a prefix of the site log", s.name + ": " + got.status().ToString());
    return;
  }
  for (const auto& r : *got) {
    if (r.seq > s.shadow.size() || s.shadow[r.seq - 1] != r.payload) {
      Violation("hub copy is a prefix of the site log",
                s.name + ": hub entry " + std::to_string(r.seq) + " differs from the site's");
      return;
    }
    s.checked = r.seq;
  }
}

void Simulation::Request(const Periodic& p, int n) {
  if (healed_ || !hub_alive_) return;
  const std::string id = "req-" + std::to_string(n);
  json req = {{"op", "run.start"}, {"workflow", p.workflow}, {"request", id}, {"target", p.target}};
  HubOutput out;
  json r = hub_->OnOperator("sim", req, &out);
  HubEmit(out);
  Trace("request " + id + " " + (r.value("ok", false) ? "ok" : "refused"));
  if (!r.value("ok", false)) {
    ++report_.requests_refused;
    return;
  }
  ++report_.requests;
  if (sc_.duplicate_requests > 0 &&
      static_cast<double>(rng_.Uniform(999'999)) / 1e6 < sc_.duplicate_requests) {
    // The operator's client retries the same request id a little later.
    const json first_runs = r["runs"];
    At(clock_.Now() + 60'000, [this, req, first_runs] {
      if (!hub_alive_) return;
      HubOutput o2;
      json again = hub_->OnOperator("sim", req, &o2);
      HubEmit(o2);
      if (!again.value("duplicate", false) || again["runs"] != first_runs) {
        Violation("no request id made two runs",
                  "a retried request made new runs: " + again.dump());
      }
    });
  }
}

// ---------------------------------------------------------------------------------------
// The end: heal everything, wait for quiet, check.

void Simulation::Heal() {
  healed_ = true;
  Trace("heal");
  if (!hub_alive_) {
    if (Status s = OpenHub(); !s.ok()) Violation("no store errors", "hub reopen: " + s.ToString());
  }
  for (auto& s : sites_) {
    if (!s->alive) {
      if (Status st = OpenSite(*s); !st.ok()) {
        Violation("no store errors", s->name + " reopen: " + st.ToString());
        continue;
      }
      Activity(*s);
    }
    s->link_down_until = 0;
    if (!s->connected) ScheduleReconnect(*s);
  }
  HubActivity();
}

bool Simulation::Converged() {
  if (!hub_alive_) return false;
  for (auto& s : sites_) {
    if (!s->alive || !s->session->established() || s->engine->active_runs() > 0 ||
        !s->pending.empty()) {
      return false;
    }
    const SiteRecord* rec = hub_->site(s->name);
    const EventLog& log = s->store->log();
    if (!rec || rec->incarnation != log.incarnation() || rec->up_applied != log.head() ||
        log.acked() != log.head() || rec->down_head != s->down_applied ||
        rec->down_acked != rec->down_head) {
      return false;
    }
  }
  return true;
}

void Simulation::CheckSchedules(Site& s) {
  // Every tick fired at most once, and the scheduler's persisted counts equal what its
  // log says it did: state and events land in one batch, whatever crashed when.
  std::map<std::string, uint64_t> fired, skipped;
  std::set<std::pair<std::string, std::string>> ticks;
  for (const auto& payload : s.shadow) {
    Event e;
    if (!Decode(payload, &e).ok()) continue;
    if (e.type == static_cast<uint8_t>(EventType::kScheduleFired)) {
      ++fired[e.workflow];
      ++report_.scheduled_runs;
      std::string tick = e.message;
      if (auto p = tick.find(" (catch-up)"); p != std::string::npos) tick.resize(p);
      if (!ticks.emplace(e.workflow, tick).second) {
        Violation("schedules fire each tick once", s.name + ": " + e.workflow + " fired twice for " + tick);
      }
    } else if (e.type == static_cast<uint8_t>(EventType::kScheduleSkipped)) {
      ++skipped[e.workflow];
    }
  }
  for (const auto& info : s.sched->List()) {
    auto raw = s.store->log().GetState(ScheduleKey(info.workflow));
    ScheduleState st;
    if (!raw.ok() || !*raw || !Decode(**raw, &st).ok()) {
      Violation("schedules fire each tick once", s.name + ": no stored state for " + info.workflow);
      continue;
    }
    if (st.fired != fired[info.workflow] || st.skipped != skipped[info.workflow]) {
      Violation("schedules fire each tick once",
                s.name + ": " + info.workflow + " state says fired " + std::to_string(st.fired) +
                    ", skipped " + std::to_string(st.skipped) + "; the log says " +
                    std::to_string(fired[info.workflow]) + ", " + std::to_string(skipped[info.workflow]));
    }
  }
}

void Simulation::FinalChecks() {
  uint64_t events = 0;
  for (auto& s : sites_) {
    if (s->alive) CheckSchedules(*s);
    events += s->shadow.size();
    if (!hub_alive_ || !s->alive) continue;
    const SiteRecord* rec = hub_->site(s->name);
    if (!rec) continue;
    // Every event at the hub exactly once: the hub's copy equals the site's whole log.
    auto copy = hub_store_->ReadUp(s->name, rec->incarnation, 0, SIZE_MAX);
    if (!copy.ok() || copy->size() != s->shadow.size()) {
      Violation("every event at the hub exactly once",
                s->name + ": hub has " + (copy.ok() ? std::to_string(copy->size()) : "?") +
                    " events, the site logged " + std::to_string(s->shadow.size()));
    } else {
      for (size_t i = 0; i < copy->size(); ++i) {
        if ((*copy)[i].payload != s->shadow[i]) {
          Violation("every event at the hub exactly once",
                    s->name + ": event " + std::to_string(i + 1) + " differs");
          break;
        }
      }
    }
    // Every command applied exactly once.
    if (rec->down_head != s->down_applied) {
      Violation("every hub command applied exactly once",
                s->name + ": hub sent " + std::to_string(rec->down_head) +
                    " commands, site applied " + std::to_string(s->down_applied));
    }
    // No request made two runs; the hub's view equals the site's own state.
    auto runs = s->store->ListRuns(SIZE_MAX);
    if (!runs.ok()) continue;
    std::map<std::string, int> per_request;
    for (const auto& r : *runs) {
      if (!r.request.empty() && ++per_request[r.request] > 1) {
        Violation("no request id made two runs", s->name + ": request " + r.request);
      }
      auto mine = s->store->GetRun(r.id);
      auto theirs = hub_store_->GetRun(r.id);
      if (!mine.ok() || !*mine || !theirs.ok() || !*theirs) {
        Violation("hub view equals each site's state",
                  s->name + ": run " + r.id + " missing at the hub");
        continue;
      }
      const auto& m = **mine;
      const auto& t = **theirs;
      bool same = t.state == RunStateName(m.run.run_state()) && t.tasks.size() == m.tasks.size();
      for (size_t i = 0; same && i < m.tasks.size(); ++i) {
        same = t.tasks[i].id == m.tasks[i].id &&
               t.tasks[i].state == TaskStateName(m.tasks[i].task_state()) &&
               t.tasks[i].attempts == m.tasks[i].attempts;
      }
      if (!same) {
        Violation("hub view equals each site's state",
                  s->name + ": run " + r.id + " is " + t.state + " at the hub, " +
                      RunStateName(m.run.run_state()) + " on the site");
      }
    }
  }
  report_.events = events;
  // Runs the hub asked for exist exactly where it asked.
  if (hub_alive_) {
    hub_store_
        ->ScanRuns([&](const HubRun& r) {
          auto it = by_name_.find(r.site);
          if (it == by_name_.end() || !it->second->alive) return true;
          auto mine = it->second->store->GetRun(r.id);
          if (!r.request.empty() && (!mine.ok() || !*mine)) {
            Violation("every hub command applied exactly once",
                      "requested run " + r.id + " never reached " + r.site);
          }
          return true;
        })
        .IgnoreError();
  }
  const bool faults =
      !sc_.partitions.empty() || !sc_.hub_outages.empty() || sc_.hub_crashes.every > 0;
  if (faults && !sc_.local_runs.empty() && report_.local_runs_offline == 0) {
    Violation("sites ran work while cut off", "no local run started while a site was disconnected");
  }
}

Report Simulation::Run() {
  const auto wall0 = std::chrono::steady_clock::now();
  for (const char* name :
       {"hub copy is a prefix of the site log", "every event at the hub exactly once",
        "every hub command applied exactly once", "no request id made two runs",
        "hub view equals each site's state", "sites ran work while cut off",
        "converged after the last heal", "no store errors", "schedules fire each tick once"}) {
    report_.invariants.push_back({name, true, ""});
  }
  for (const auto& w : sc_.workflows) {
    auto def = ParseWorkflow(w.source, w.name);
    defs_[w.name] = std::make_shared<const WorkflowDef>(std::move(def).value());
  }
  if (Status s = OpenHub(); !s.ok()) {
    Violation("no store errors", "hub open: " + s.ToString());
    return report_;
  }
  // The fleet: enrolled, labelled, with workflows applied by label.
  for (const auto& g : sc_.sites) {
    for (int i = 1; i <= g.count; ++i) {
      const DurationMs skew = sc_.max_clock_skew > 0
                                  ? static_cast<DurationMs>(rng_.Uniform(
                                        static_cast<uint64_t>(2 * sc_.max_clock_skew))) -
                                        sc_.max_clock_skew
                                  : 0;
      auto s = std::make_unique<Site>(clock_, skew, rng_.Next());
      s->name = g.prefix + "-" + std::to_string(i);
      s->labels = g.labels;
      s->index = sites_.size();
      s->incarnation = rng_.Next() | 1;
      for (const auto& l : sc_.links) {
        if (Matches(l.sites, s->name)) s->link = l;
      }
      HubOutput out;
      json r = hub_->OnOperator(
          "sim",
          {{"op", "site.add"}, {"name", s->name}, {"key", SimKey(&rng_)}, {"labels", s->labels}},
          &out);
      if (!r.value("ok", false))
        Violation("no store errors", "enroll " + s->name + ": " + r.dump());
      by_name_[s->name] = s.get();
      sites_.push_back(std::move(s));
    }
  }
  report_.sites = sites_.size();
  for (const auto& w : sc_.workflows) {
    HubOutput out;
    json r = hub_->OnOperator(
        "sim", {{"op", "workflow.apply"}, {"source", w.source}, {"target", w.target}}, &out);
    if (!r.value("ok", false)) Violation("no store errors", "apply " + w.name + ": " + r.dump());
  }
  const TimeMs t0 = clock_.Now();
  const TimeMs end = t0 + sc_.duration;
  for (auto& sp : sites_) {
    Site& s = *sp;
    if (Status st = OpenSite(s); !st.ok()) {
      Violation("no store errors", s.name + ": " + st.ToString());
      return report_;
    }
    At(t0 + static_cast<TimeMs>(rng_.Uniform(1000)), [this, &s] { TryConnect(s); });
    // Local runs on the site's own initiative (the stand-in for schedules).
    for (const auto& p : sc_.local_runs) {
      const WorkflowSpec* w = nullptr;
      for (const auto& ws : sc_.workflows) {
        if (ws.name == p.workflow) w = &ws;
      }
      if (!SelectorMatches(w->target, s.labels) || !SelectorMatches(p.target, s.labels)) continue;
      auto tick = std::make_shared<std::function<void()>>();
      *tick = [this, &s, w, p, end, self_fn = tick.get()] {
        if (clock_.Now() >= end) return;
        StartLocalRun(s, *w);
        At(clock_.Now() + p.every, *self_fn);
      };
      recurring_.push_back(tick);
      At(t0 + static_cast<TimeMs>(rng_.Uniform(static_cast<uint64_t>(p.every))), *tick);
    }
    // Crashes and connection resets, exponential interarrival.
    if (sc_.agent_crashes.every > 0) {
      auto crash = std::make_shared<std::function<void()>>();
      *crash = [this, &s, end, self_fn = crash.get()] {
        if (clock_.Now() >= end) return;
        CrashSite(s);
        At(clock_.Now() + sc_.agent_crashes.down, [this, &s] {
          if (s.alive || healed_) return;
          if (Status st = OpenSite(s); !st.ok()) {
            Violation("no store errors", s.name + " reopen: " + st.ToString());
            return;
          }
          Activity(s);
          ScheduleReconnect(s);
        });
        At(clock_.Now() + sc_.agent_crashes.down + Exp(&rng_, sc_.agent_crashes.every), *self_fn);
      };
      recurring_.push_back(crash);
      At(t0 + Exp(&rng_, sc_.agent_crashes.every), *crash);
    }
    if (s.link.disconnect_every > 0) {
      auto reset = std::make_shared<std::function<void()>>();
      *reset = [this, &s, end, self_fn = reset.get()] {
        if (clock_.Now() >= end) return;
        ++report_.resets;
        s.link_down_until = clock_.Now() + s.link.disconnect_for;
        SiteDrop(s, "connection reset");
        At(clock_.Now() + Exp(&rng_, s.link.disconnect_every), *self_fn);
      };
      recurring_.push_back(reset);
      At(t0 + Exp(&rng_, s.link.disconnect_every), *reset);
    }
  }
  // Hub requests, outages and crashes.
  int request_n = 0;
  for (const auto& p : sc_.requests) {
    if (p.at >= 0) {
      const int n = ++request_n;
      At(t0 + p.at, [this, p, n] { Request(p, n); });
    }
    if (p.every > 0) {
      auto tick = std::make_shared<std::function<void()>>();
      auto counter = std::make_shared<int>(0);
      const int base = 1000000 * (++request_n);
      *tick = [this, p, end, self_fn = tick.get(), counter, base] {
        if (clock_.Now() >= end) return;
        Request(p, base + ++*counter);
        At(clock_.Now() + p.every, *self_fn);
      };
      recurring_.push_back(tick);
      At(t0 + p.every, *tick);
    }
  }
  for (const auto& w : sc_.hub_outages) {
    At(t0 + w.at, [this] { CrashHub(); });
    At(t0 + w.at + w.duration, [this] {
      if (!hub_alive_ && !healed_) {
        if (Status s = OpenHub(); !s.ok())
          Violation("no store errors", "hub reopen: " + s.ToString());
      }
    });
  }
  if (sc_.hub_crashes.every > 0) {
    auto crash = std::make_shared<std::function<void()>>();
    *crash = [this, end, self_fn = crash.get()] {
      if (clock_.Now() >= end) return;
      CrashHub();
      At(clock_.Now() + sc_.hub_crashes.down, [this] {
        if (!hub_alive_ && !healed_) {
          if (Status s = OpenHub(); !s.ok())
            Violation("no store errors", "hub reopen: " + s.ToString());
        }
      });
      At(clock_.Now() + sc_.hub_crashes.down + Exp(&rng_, sc_.hub_crashes.every), *self_fn);
    };
    recurring_.push_back(crash);
    At(t0 + Exp(&rng_, sc_.hub_crashes.every), *crash);
  }
  // Scenario windows shift to absolute time.
  for (auto* list : {&sc_.partitions, &sc_.flapping}) {
    for (auto& w : *list) w.at += t0;
  }
  At(end, [this] { Heal(); });
  const TimeMs deadline = end + sc_.converge_within;
  bool converged = false;
  // The convergence check runs every simulated second after the heal.
  auto check = std::make_shared<std::function<void()>>();
  *check = [this, &converged, end, self_fn = check.get(), deadline] {
    if (Converged()) {
      converged = true;
      report_.convergence_ms = clock_.Now() - end;
      return;
    }
    if (clock_.Now() < deadline) At(clock_.Now() + 1000, *self_fn);
  };
  recurring_.push_back(check);
  At(end + 1, *check);

  while (!queue_.empty() && !converged) {
    Item it = queue_.top();
    queue_.pop();
    if (it.at > deadline) break;
    clock_.Set(it.at);
    it.fn();
  }
  report_.virtual_ms = clock_.Now() - t0;
  if (!converged) {
    std::string who;
    for (auto& s : sites_) {
      if (!hub_alive_) break;
      const SiteRecord* rec = hub_->site(s->name);
      if (s->alive && rec &&
          (rec->up_applied != s->store->log().head() || !s->session->established() ||
           s->engine->active_runs() > 0)) {
        who = s->name + " (site head " + std::to_string(s->store->log().head()) + ", hub applied " +
              std::to_string(rec->up_applied) + ", session " +
              (s->session->established() ? "established" : "down") +
              (s->connected ? ", connected" : ", not connected") +
              (s->reconnect_pending ? ", reconnect pending" : "") + ", active runs " +
              std::to_string(s->engine->active_runs()) + ")";
        break;
      }
    }
    Violation("converged after the last heal",
              "not converged within " + std::to_string(sc_.converge_within / 1000) + " s" +
                  (who.empty() ? "" : "; first behind: " + who));
  }
  FinalChecks();
  for (auto& inv : report_.invariants) {
    if (inv.ok && inv.name == "converged after the last heal") {
      inv.detail = "in " + std::to_string(report_.convergence_ms) + " ms";
    }
  }
  report_.trace_hash = hash_;
  report_.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  return report_;
}

}  // namespace outpost::sim
