#include "simulator/world.h"

#include <sodium.h>
#include <zmq.h>

#include <cstring>

#include "common/protocol/command.h"
#include "common/ulid.h"
#include "common/workflow/workflow.h"
#include "hub/rocks_hub_store.h"
#include "simulator/invariants.h"
#include "simulator/network.h"
#include "simulator/workload.h"
#include "site-agent/commands.h"

namespace outpost::sim {

namespace {

std::string AttemptName(const AttemptKey& k) {
  return k.run + "/" + k.task + "/" + std::to_string(k.attempt);
}

}  // namespace

// A site's inbox: applies the hub's commands as the agent does, each batch and the new
// watermark in one write.
class World::Inbox final : public IncomingStream {
 public:
  Inbox(World* world, SimSite* site) : world_(world), s_(site) {}
  uint64_t applied() const override { return s_->down_applied; }
  Status Apply(uint64_t first_seq, const std::vector<std::string>& entries) override {
    std::vector<StateWrite> extra;
    uint64_t through = 0;
    Status batch = ApplyCommandBatch(first_seq, entries, *s_->engine, *s_->store, s_->clock,
                                     nullptr, &s_->pending, &extra, &through,
                                     [this](uint64_t, const Command* c, const CommandOutcome& o) {
                                       if (c && o.kind != CommandOutcome::kRetry) {
                                         ++world_->report_->commands;
                                       }
                                     });
    if (through < first_seq) return batch;
    OUTPOST_RETURN_IF_ERROR(world_->Flush(*s_, extra));
    s_->down_applied = through;
    s_->down_digest = CommandDigest(entries[through - first_seq]);
    return batch;
  }
  uint64_t hub_epoch() const override { return s_->hub_epoch; }
  uint64_t applied_digest() const override { return s_->down_digest; }
  Status SetHubEpoch(uint64_t epoch) override {
    if (epoch == s_->hub_epoch) return Status::Ok();
    // Through the commit path, as the agent does: with whatever effects are pending.
    OUTPOST_RETURN_IF_ERROR(world_->Flush(*s_, {StateWrite{kHubEpochKey, EncodeU64(epoch)}}));
    s_->hub_epoch = epoch;
    return Status::Ok();
  }

 private:
  World* world_;
  SimSite* s_;
};

World::World(const Scenario& scenario, Options options, EventQueue* queue, Rng* rng, Report* report,
             Invariants* invariants)
    : sc_(scenario),
      opt_(options),
      queue_(queue),
      rng_(rng),
      report_(report),
      invariants_(invariants),
      hub_rng_(options.seed ^ 0x9e3779b97f4a7c15ULL),
      storage_(std::make_unique<SimStorage>(options.seed ^ 0x2545f4914f6cdd1dULL)) {
  Rng keys_rng(options.seed ^ 0x5bd1e995ULL);
  hub_keys_ = SeededKeys(&keys_rng);
}

CurveKeys World::SeededKeys(Rng* rng) {
  unsigned char seed[crypto_box_SEEDBYTES], pk[crypto_box_PUBLICKEYBYTES], sk[crypto_box_SECRETKEYBYTES];
  for (size_t i = 0; i < sizeof seed; i += 8) {
    const uint64_t v = rng->Next();
    memcpy(seed + i, &v, std::min<size_t>(8, sizeof seed - i));
  }
  if (sodium_init() < 0) abort();
  crypto_box_seed_keypair(pk, sk, seed);
  char pz[41], sz[41];
  zmq_z85_encode(pz, pk, 32);
  zmq_z85_encode(sz, sk, 32);
  return {pz, sz};
}

World::~World() {
  hub_.reset();
  hub_store_.reset();
  for (auto& s : sites_) {
    s->session.reset();
    s->engine.reset();
    s->store.reset();
  }
}

void World::LoadWorkflows() {
  for (const auto& w : sc_.workflows) {
    auto def = ParseWorkflow(w.source, w.name);
    defs_[w.name] = std::make_shared<const WorkflowDef>(std::move(def).value());
    by_hash_[defs_[w.name]->hash] = defs_[w.name];
  }
}

void World::AddRevision(const std::string& source) {
  auto def = ParseWorkflow(source, "revision");
  if (!def.ok()) return;
  auto d = std::make_shared<const WorkflowDef>(std::move(def).value());
  by_hash_[d->hash] = d;
}

SimSite& World::AddSite(std::string name, std::map<std::string, std::string> labels,
                        DurationMs skew, uint64_t seed) {
  auto s = std::make_unique<SimSite>(queue_->clock(), skew, seed);
  s->name = std::move(name);
  s->labels = std::move(labels);
  s->index = sites_.size();
  by_name_[s->name] = s.get();
  sites_.push_back(std::move(s));
  return *sites_.back();
}

SimSite* World::site(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

// ---------------------------------------------------------------------------------------
// Sites.

Status World::OpenSite(SimSite& s) {
  const std::string dir = SiteDir(s);
  storage_->Restart(dir);
  if (disk_faults_on_) storage_->SetFaults(dir, DiskFaults());
  s.crash_armed = false;
  EventLog::Options lo;
  lo.env = storage_.get();
  lo.simulated = true;
  lo.new_incarnation = s.incarnation;
  lo.sync = !opt_.faults.site_log_unsynced;
  lo.on_logged = [this, &s](uint64_t first, const std::vector<std::string>& entries) {
    if (first != s.shadow.size() + 1) {
      invariants_->Violation("synced writes survive crashes",
                             s.name + ": the log took entry " + std::to_string(first) +
                                 " after " + std::to_string(s.shadow.size()));
      return;
    }
    s.shadow.insert(s.shadow.end(), entries.begin(), entries.end());
    s.log_grew = true;
  };
  OUTPOST_ASSIGN_OR_RETURN(auto log, EventLog::Open(dir, lo));
  s.store = std::make_unique<AgentStore>(std::move(log), opt_.faults);
  if (s.store->log().incarnation() != s.incarnation && s.incarnation != 0 && !s.shadow.empty()) {
    // Only a lost disk changes the incarnation, and LoseDisk retired the shadow.
    invariants_->Violation("synced writes survive crashes",
                           s.name + ": the database came back with another incarnation");
  }
  ReconcileShadow(s);
  EngineOptions eo{sc_.max_parallel, 5000, s.name, s.labels, {}, {}, {}, {}};
  eo.faults = opt_.faults;
  s.engine = std::make_unique<Engine>(s.clock, &s.rng, eo);
  s.up = std::make_unique<EventLogStream>(&s.store->log(), opt_.faults);
  s.inbox = std::make_unique<Inbox>(this, &s);
  s.session = std::make_unique<SyncSession>(SyncSession::Role::kSite, s.clock, sc_.sync, s.up.get(),
                                            s.inbox.get(), s.name, s.store->log().incarnation(),
                                            opt_.faults);
  OUTPOST_ASSIGN_OR_RETURN(auto raw, s.store->log().GetState(kInboxWatermarkKey));
  s.down_applied = raw ? DecodeU64(*raw) : 0;
  OUTPOST_ASSIGN_OR_RETURN(auto epoch, s.store->log().GetState(kHubEpochKey));
  s.hub_epoch = epoch && epoch->size() == 8 ? DecodeU64(*epoch) : 0;
  OUTPOST_ASSIGN_OR_RETURN(auto digest, s.store->log().GetState(kInboxDigestKey));
  s.down_digest = digest && digest->size() == 8 ? DecodeU64(*digest) : 0;
  s.pending = Effects();
  s.running.clear();
  OUTPOST_ASSIGN_OR_RETURN(auto unfinished, s.store->LoadUnfinished());
  for (auto& v : unfinished) {
    OUTPOST_RETURN_IF_ERROR(s.engine->Restore(std::move(v.run), std::move(v.tasks), &s.pending));
  }
  OUTPOST_RETURN_IF_ERROR(LoadSchedules(s));
  s.alive = true;
  net_->OnSiteOpened(s);
  queue_->Trace("open " + s.name);
  return Status::Ok();
}

// Schedules, as from the agent's workflow directory: state from the store.
Status World::LoadSchedules(SimSite& s) {
  s.sched = std::make_unique<Scheduler>(
      s.clock, [&s] { return s.name + "-" + MakeUlid(s.clock.Now(), &s.rng); });
  s.sched->set_faults(opt_.faults);
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
  return Status::Ok();
}

void World::ReconcileShadow(SimSite& s) {
  const EventLog& log = s.store->log();
  if (log.head() < s.shadow.size()) {
    invariants_->Violation("synced writes survive crashes",
                           s.name + ": the log reopened at " + std::to_string(log.head()) +
                               " but " + std::to_string(s.shadow.size()) +
                               " events were committed");
    s.shadow.resize(log.head());
    return;
  }
  if (log.head() == s.shadow.size()) return;
  // A write reported as failed had reached the disk (a failed fsync can do that).
  auto more = log.ReadAfter(s.shadow.size(), SIZE_MAX, SIZE_MAX);
  if (!more.ok()) {
    invariants_->Violation("no store errors", s.name + ": " + more.status().ToString());
    return;
  }
  for (auto& r : *more) s.shadow.push_back(std::move(r.payload));
}

void World::StoreError(const std::string& who, const Status& st) {
  if (sc_.storage.any() && !healed_) {
    ++report_->store_errors;
    queue_->Trace("store error " + who + ": " + st.ToString());
    return;
  }
  invariants_->Violation("no store errors", who + ": " + st.ToString());
}

bool World::ReopenSite(SimSite& s) {
  if (Status st = OpenSite(s); !st.ok()) {
    DropProcessState(s);
    StoreError(s.name + " reopen", st);
    // The service manager starts it again a little later.
    if (sc_.storage.any() && !healed_) {
      queue_->At(queue_->Now() + 5000, [this, &s] { RestartSite(s); });
    } else if (sc_.storage.any()) {
      queue_->At(queue_->Now() + 5000, [this, &s] {
        if (!s.alive && ReopenSite(s)) net_->Heal(s);
      });
    }
    return false;
  }
  Activity(s);
  return true;
}

void World::RestartSite(SimSite& s) {
  if (s.alive || healed_) return;  // after the heal, the heal restarts it
  if (ReopenSite(s)) net_->ScheduleReconnect(s);
}

void World::CrashSite(SimSite& s, bool power_cut) {
  if (!s.alive) return;
  ++report_->agent_crashes;
  queue_->Trace(std::string(power_cut ? "power cut " : "crash ") + s.name);
  const std::string dir = SiteDir(s);
  storage_->Kill(dir);  // closing its databases writes nothing more
  s.alive = false;
  ++s.generation;
  net_->OnSiteCrashed(s);
  s.wake = 0;         // its pending wake-up died with it
  for (const auto& [name, token] : s.running) {
    // "RUN/TASK/ATTEMPT": the task id may hold '/' only if the run id does not.
    const size_t a = name.rfind('/'), t = name.find('/');
    if (a == std::string::npos || t == a) continue;
    char& outcome = s.processes[{name.substr(0, t), name.substr(t + 1, a - t - 1)}]
                               [atoi(name.c_str() + a + 1)];
    if (outcome == 'R') outcome = 'I';
  }
  s.running.clear();  // its processes die with it (simulated; real ones are killed at restart)
  DropProcessState(s);
  if (power_cut) storage_->PowerCut(dir);
  storage_->Restart(dir);
  s.crash_armed = false;
}

// The agent's memory, in the order its parts refer to each other; closing the store
// closes RocksDB (what reaches the disk then is up to SimStorage).
void World::DropProcessState(SimSite& s) {
  s.session.reset();
  s.inbox.reset();
  s.up.reset();
  s.sched.reset();
  s.engine.reset();
  s.store.reset();
  s.pending = Effects();
}

void World::LoseDisk(SimSite& s) {
  if (!s.alive) return;
  NoteHubWatermarks();  // the old incarnation's stream ends here
  const uint64_t acked = s.store->log().acked();
  CrashSite(s);
  storage_->Wipe(SiteDir(s));
  ++report_->reinstalls;
  queue_->Trace("lost disk " + s.name);
  s.retired.push_back({s.incarnation, std::move(s.shadow), acked});
  s.shadow.clear();
  s.down_applied = 0;
  s.down_digest = 0;
  s.hub_epoch = 0;
  // The new database knows no runs: a start the hub redelivers because it never saw it
  // acknowledged runs afresh there (docs/protocol.md, "Incarnations and epochs"); the
  // reference model holds each database to its own processes.
  s.processes.clear();
  s.incarnation = rng_->Next() | 1;
}

bool World::PowerCutDraw() {
  return sc_.storage.power_cuts > 0 &&
         static_cast<double>(rng_->Uniform(1'000'000)) / 1e6 < sc_.storage.power_cuts;
}

void World::ArmCrash(const std::string& dir) {
  storage_->ArmCrash(dir, 1 + rng_->Uniform(4));
}

void World::ScheduleDiskFaults(SimSite& s, TimeMs t0, TimeMs end) {
  ScheduleFull(SiteDir(s), t0, end);
  if (sc_.storage.lost_every <= 0) return;
  queue_->Recurring(t0 + Exp(rng_, sc_.storage.lost_every),
                    [this, &s, end]() -> std::optional<TimeMs> {
                      if (queue_->Now() >= end) return std::nullopt;
                      LoseDisk(s);
                      const TimeMs up = queue_->Now() + std::max<DurationMs>(sc_.agent_crashes.down, 60'000);
                      queue_->At(up, [this, &s] { RestartSite(s); });
                      return up + Exp(rng_, sc_.storage.lost_every);
                    });
}

void World::ScheduleFull(const std::string& dir, TimeMs t0, TimeMs end) {
  if (sc_.storage.full_every <= 0) return;
  queue_->Recurring(t0 + Exp(rng_, sc_.storage.full_every),
                    [this, dir, end]() -> std::optional<TimeMs> {
                      if (queue_->Now() >= end || healed_) return std::nullopt;
                      storage_->SetFull(dir, true);
                      queue_->Trace("disk full " + dir);
                      const TimeMs free = queue_->Now() + sc_.storage.full_for;
                      queue_->At(free, [this, dir] { storage_->SetFull(dir, false); });
                      return free + Exp(rng_, sc_.storage.full_every);
                    });
}

void World::AfterEvent() {
  // RocksDB's flushes and compactions queued during the event run now, on this thread.
  storage_->RunBackgroundWork();
  if (hub_crash_armed_ && storage_->crashed(kHubDir)) {
    hub_crash_armed_ = false;
    CrashHub(PowerCutDraw());
    const TimeMs up = queue_->Now() + std::max<DurationMs>(sc_.hub_crashes.down, 1000);
    queue_->At(up, [this] { RestartHub(); });
  }
  if (hub_alive_ && hub_store_->write_failed()) {
    // As the daemon does (hub/hub_server.cpp): reopen the store and the core from what
    // is really on the disk.
    ++report_->hub_store_restarts;
    queue_->Trace("hub store restart");
    hub_alive_ = false;
    NoteHubWatermarks();
    hub_.reset();
    hub_store_.reset();
    for (auto& s : sites_) net_->Drop(*s, "hub restarted its store");
    OpenHubOrReport();
  }
  // Sites are scanned only when an armed crash has fired since the last look.
  if (storage_->crash_points_fired() == crashes_seen_) return;
  crashes_seen_ = storage_->crash_points_fired();
  for (auto& sp : sites_) {
    SimSite& s = *sp;
    if (!s.crash_armed || !storage_->crashed(SiteDir(s))) continue;
    CrashSite(s, PowerCutDraw());
    const TimeMs up = queue_->Now() + sc_.agent_crashes.down;
    queue_->At(up, [this, &s] { RestartSite(s); });
  }
}

void World::ScheduleCrashes(SimSite& s, TimeMs t0, TimeMs end) {
  if (sc_.agent_crashes.every <= 0) return;
  queue_->Recurring(t0 + Exp(rng_, sc_.agent_crashes.every),
                    [this, &s, end]() -> std::optional<TimeMs> {
                      if (queue_->Now() >= end) return std::nullopt;
                      if (s.alive && !s.crash_armed && sc_.storage.crash_points > 0 &&
                          static_cast<double>(rng_->Uniform(1'000'000)) / 1e6 <
                              sc_.storage.crash_points) {
                        // It dies at one of its next writes instead (AfterEvent).
                        s.crash_armed = true;
                        ArmCrash(SiteDir(s));
                        return queue_->Now() + sc_.agent_crashes.down +
                               Exp(rng_, sc_.agent_crashes.every);
                      }
                      CrashSite(s, PowerCutDraw());
                      const TimeMs up = queue_->Now() + sc_.agent_crashes.down;
                      queue_->At(up, [this, &s] { RestartSite(s); });
                      return up + Exp(rng_, sc_.agent_crashes.every);
                    });
}

void World::Activity(SimSite& s) {
  if (!s.alive) return;
  s.engine->Tick(&s.pending);
  // Schedules are workload: they fire until the heal, then the fleet must quiesce.
  if (!healed_) s.sched->Tick(*s.engine, &s.pending);
  if (Status st = Flush(s, {}); !st.ok()) StoreError(s.name, st);
  if (net_->connected(s)) {
    SyncOutput so;
    s.session->Tick(&so);
    if (s.log_grew) s.session->Poke(&so);
    s.log_grew = false;
    net_->SiteSend(s, so);
  }
  ScheduleWake(s);
}

void World::ScheduleWake(SimSite& s) {
  if (!s.alive) return;
  TimeMs d = s.engine->NextDeadline();
  if (const TimeMs t = healed_ ? 0 : s.sched->NextDeadline(); t > 0 && (d == 0 || t < d)) d = t;
  if (net_->connected(s)) {
    const TimeMs sd = s.session->NextDeadline();
    if (sd > 0 && (d == 0 || sd < d)) d = sd;
  }
  // Effects a failed commit kept are retried a second later, as the agent does.
  if (!s.pending.empty()) {
    const TimeMs retry = s.clock.Now() + 1000;
    if (d == 0 || retry < d) d = retry;
  }
  if (d == 0) return;
  const TimeMs world = std::max(queue_->Now() + 1, d - s.clock.skew());
  if (s.wake > queue_->Now() && s.wake <= world) return;  // an earlier wake is pending
  s.wake = world;
  const uint64_t gen = s.generation;
  queue_->At(world, [this, &s, gen, world] {
    if (!s.alive || s.generation != gen) return;
    if (s.wake == world) s.wake = 0;
    Activity(s);
  });
}

// ---------------------------------------------------------------------------------------
// A site's writes and its task processes.

Status World::Flush(SimSite& s, const std::vector<StateWrite>& extra) {
  std::vector<StateWrite> more = extra;
  for (int round = 0; round < 16; ++round) {
    if (s.pending.empty() && more.empty()) return Status::Ok();
    OUTPOST_RETURN_IF_ERROR(Commit(s, more));
    more.clear();
    Effects done = std::move(s.pending);
    s.pending = Effects();
    for (const auto& k : done.kills) Kill(s, k);
    for (const auto& sp : done.starts) Spawn(s, sp);
    for (const auto& id : done.finished_runs) Finished(s, id);
  }
  return Status::Ok();
}

// One batch; what it adds to the log reaches the site's shadow through on_logged.
Status World::Commit(SimSite& s, const std::vector<StateWrite>& extra) {
  return s.store->Commit(s.pending, *s.engine, extra);
}

void World::Spawn(SimSite& s, const StartProcess& sp) {
  const SimTask task = DrawTask(sp.argv, &s.rng);
  const uint64_t token = ++s.next_token;
  s.running[AttemptName(sp.key)] = token;
  s.processes[{sp.key.run, sp.key.task}][sp.key.attempt] = 'R';
  s.engine->OnSpawned(sp.key, static_cast<int>(token), &s.pending);
  ExitInfo ex;
  ex.exit_code = task.fails ? 1 : 0;
  ex.output = task.fails ? "simulated failure" : "ok";
  ExitAt(s, queue_->Now() + task.duration, sp.key, token, std::move(ex));
}

// A killed process exits 5 ms later, instead of when it would have.
void World::Kill(SimSite& s, const KillProcess& k) {
  auto it = s.running.find(AttemptName(k.key));
  if (it == s.running.end()) return;
  const uint64_t token = ++s.next_token;
  it->second = token;
  ExitInfo ex;
  ex.signal = k.signal;
  s.processes[{k.key.run, k.key.task}][k.key.attempt] = 'K';
  ExitAt(s, queue_->Now() + 5, k.key, token, std::move(ex));
}

// The attempt's process exits at `at`, unless the agent crashed or the exit was
// rescheduled (its token changed) by then.
void World::ExitAt(SimSite& s, TimeMs at, const AttemptKey& key, uint64_t token, ExitInfo exit) {
  const uint64_t gen = s.generation;
  queue_->At(at, [this, &s, name = AttemptName(key), token, gen, key, exit = std::move(exit)] {
    auto r = s.running.find(name);
    if (!s.alive || s.generation != gen || r == s.running.end() || r->second != token) return;
    s.running.erase(r);
    char& outcome = s.processes[{key.run, key.task}][key.attempt];
    if (outcome == 'R') outcome = exit.exit_code == 0 && exit.signal == 0 ? 'S' : 'F';
    s.engine->OnExit(key, exit, &s.pending);
    Activity(s);
  });
}

void World::Finished(SimSite& s, const std::string& run_id) {
  if (const RunRecord* r = s.engine->FindRun(run_id)) {
    ++report_->runs;
    if (r->run_state() == RunState::kSucceeded) ++report_->runs_succeeded;
  }
  s.engine->Forget(run_id);
}

// ---------------------------------------------------------------------------------------
// The hub.

Status World::OpenHub() {
  storage_->Restart(kHubDir);
  if (disk_faults_on_) storage_->SetFaults(kHubDir, DiskFaults());
  hub_crash_armed_ = false;
  RocksHubStore::Options so;
  so.env = storage_.get();
  so.write_buffer_bytes = 1 << 20;
  so.simulated = true;
  so.sync = !opt_.faults.hub_store_unsynced;
  so.block_cache_bytes = 8 << 20;
  OUTPOST_ASSIGN_OR_RETURN(hub_store_, RocksHubStore::Open("/hub", so));
  HubOptions ho;
  ho.sync = sc_.sync;
  ho.keys = hub_keys_;
  // Group commit as shipped: the scenarios' power cuts and crash points fall inside
  // groups (held in memory until their one synced write).
  ho.group_commit = 8;
  // The invariants compare the hub's copy of each site log with the site's, whole:
  // retention is off (its own tests are in tests/hub/retention_test.cpp).
  ho.retention.max_age = 0;
  ho.retention.site_quota = 0;
  // The planted bug of the mutation check, if any (common/faults.h).
  const Faults& faults = opt_.faults;
  OUTPOST_ASSIGN_OR_RETURN(hub_, HubCore::Open(hub_store_.get(), queue_->clock(), &hub_rng_, ho,
                                               faults));
  if (declare_restore_) {
    // What the operator runs before starting a restored hub: outpost-hub --declare-restored.
    OUTPOST_RETURN_IF_ERROR(hub_->DeclareRestored().status());
    declare_restore_ = false;
    invariants_->OnHubRestored(*this, hub_applied_max_);
  }
  hub_alive_ = true;
  HubTicker();
  queue_->Trace("hub open");
  // Sites whose reconnect loop gave up waiting are nudged as the hub comes back.
  for (auto& s : sites_) {
    if (s->alive && !net_->connected(*s)) net_->ScheduleReconnect(*s);
  }
  return Status::Ok();
}

void World::OpenHubOrReport() {
  if (Status s = OpenHub(); !s.ok()) {
    hub_.reset();
    hub_store_.reset();
    StoreError("hub reopen", s);
    // The service manager starts it again a little later.
    if (sc_.storage.any()) {
      queue_->At(queue_->Now() + 5000, [this] {
        if (!hub_alive_) OpenHubOrReport();
      });
    }
  }
}

void World::RestartHub() {
  if (hub_alive_ || healed_) return;
  if (sc_.storage.hub_restores > 0) BackupOrRestoreHub();
  OpenHubOrReport();
}

void World::BackupOrRestoreHub() {
  if (hub_backup_ && static_cast<double>(rng_->Uniform(1'000'000)) / 1e6 < sc_.storage.hub_restores) {
    storage_->RestoreBackup(kHubDir, *hub_backup_);
    ++report_->hub_restores;
    queue_->Trace("hub restored from backup");
    if (rng_->Uniform(1) == 0) {
      declare_restore_ = true;  // OpenHub declares it, as the operator does before starting
    } else {
      // The operator starts it first and declares 1-5 minutes later, when the sites'
      // refusals make them look (operators' requests meanwhile must not be lost).
      queue_->At(queue_->Now() + 60'000 + static_cast<TimeMs>(rng_->Uniform(240'000)),
                 [this] { DeclareLate(); });
    }
    return;
  }
  // Backups of varying age: the first restart takes one, later ones half the time.
  if (!hub_backup_ || rng_->Uniform(1) == 0) {
    hub_backup_ = storage_->TakeBackup(kHubDir);
    queue_->Trace("hub backup");
  }
}

void World::DeclareLate() {
  declare_restore_ = true;
  if (!hub_alive_) return;  // the next start declares
  queue_->Trace("hub stopped to declare its restore");
  CrashHub(false);
  OpenHubOrReport();
}

void World::NoteHubWatermarks() {
  if (sc_.storage.hub_restores <= 0 || !hub_) return;
  report_->commands_adopted_in_restore += hub_->counters().commands_adopted_in_restore;
  for (const auto& s : sites_) {
    if (const SiteRecord* rec = hub_->site(s->name)) {
      uint64_t& m = hub_applied_max_[{s->name, rec->incarnation}];
      m = std::max(m, rec->up_applied);
    }
  }
}

void World::CrashHub(bool power_cut) {
  if (!hub_alive_) return;
  ++report_->hub_crashes;
  queue_->Trace(power_cut ? "hub power cut" : "hub crash");
  hub_alive_ = false;
  storage_->Kill(kHubDir);
  NoteHubWatermarks();
  hub_.reset();
  hub_store_.reset();
  if (power_cut) storage_->PowerCut(kHubDir);
  storage_->Restart(kHubDir);
  hub_crash_armed_ = false;
  // Every connection breaks; the sites see the reset.
  for (auto& s : sites_) net_->Drop(*s, "hub went away");
}

void World::ScheduleHubFaults(TimeMs t0, TimeMs end) {
  for (const auto& w : sc_.hub_outages) {
    queue_->At(t0 + w.at, [this] { CrashHub(); });
    queue_->At(t0 + w.at + w.duration, [this] { RestartHub(); });
  }
  if (sc_.hub_crashes.every <= 0) return;
  ScheduleFull(kHubDir, t0, end);
  queue_->Recurring(t0 + Exp(rng_, sc_.hub_crashes.every), [this, end]() -> std::optional<TimeMs> {
    if (queue_->Now() >= end) return std::nullopt;
    if (hub_alive_ && !hub_crash_armed_ && sc_.storage.crash_points > 0 &&
        static_cast<double>(rng_->Uniform(1'000'000)) / 1e6 < sc_.storage.crash_points) {
      hub_crash_armed_ = true;
      ArmCrash(kHubDir);
      return queue_->Now() + sc_.hub_crashes.down + Exp(rng_, sc_.hub_crashes.every);
    }
    CrashHub(PowerCutDraw());
    const TimeMs up = queue_->Now() + sc_.hub_crashes.down;
    queue_->At(up, [this] { RestartHub(); });
    return up + Exp(rng_, sc_.hub_crashes.every);
  });
}

// The hub's timers run from a once-a-second tick, like a daemon polling with a one second
// timeout: computing the earliest deadline of thousands of sessions after every frame
// would cost more than the frames.
void World::HubActivity() {
  if (!hub_alive_) return;
  HubOutput out;
  hub_->Tick(&out);
  net_->HubEmit(out);
}

void World::HubFlushSoon(const SimSite& from) {
  if (!hub_alive_ || !hub_->holding()) return;
  held_from_.insert(from.index);
  if (hub_flush_queued_) return;
  hub_flush_queued_ = true;
  // A few milliseconds later, as a busy hub's round of frames takes: the frames that
  // arrive meanwhile join the group (with power cuts and crash points inside it).
  queue_->At(queue_->Now() + kHubFlushAfterMs, [this] {
    hub_flush_queued_ = false;
    if (!hub_alive_) return;
    HubOutput out;
    const bool written = hub_->Flush(&out).ok();  // failed: AfterEvent reopens the store
    // The group is on disk now: the copies of the sites it held are checked again.
    std::set<size_t> from;
    from.swap(held_from_);
    if (written) {
      for (size_t i : from) invariants_->CheckPrefix(*this, *sites_[i]);
    }
    net_->HubEmit(out);
  });
}

void World::HubTicker() {
  if (hub_ticker_) return;
  hub_ticker_ = true;
  queue_->Recurring(queue_->Now() + 1000, [this]() -> std::optional<TimeMs> {
    HubActivity();
    return queue_->Now() + 1000;
  });
}

StorageFaults World::DiskFaults() const {
  return {sc_.storage.write_error, sc_.storage.sync_error, sc_.storage.corrupt_read};
}

void World::StartDiskFaults() {
  disk_faults_on_ = true;
  storage_->SetFaults(kHubDir, DiskFaults());
  for (auto& s : sites_) storage_->SetFaults(SiteDir(*s), DiskFaults());
}

void World::Heal() {
  healed_ = true;
  disk_faults_on_ = false;
  queue_->Trace("heal");
  // Disks heal too: no more faults, full disks freed, armed crashes disarmed.
  for (auto& s : sites_) {
    storage_->SetFaults(SiteDir(*s), {});
    storage_->SetFull(SiteDir(*s), false);
    storage_->Disarm(SiteDir(*s));
    s->crash_armed = false;
  }
  storage_->SetFaults(kHubDir, {});
  storage_->SetFull(kHubDir, false);
  storage_->Disarm(kHubDir);
  hub_crash_armed_ = false;
  const StorageCounters c = storage_->counters();
  report_->power_cuts = c.power_cuts;
  report_->crash_points = c.crash_points;
  report_->bytes_lost = c.bytes_lost;
  report_->disk_faults = c.write_errors + c.sync_errors + c.full_refusals + c.corrupt_reads;
  if (!hub_alive_) OpenHubOrReport();
}

}  // namespace outpost::sim
