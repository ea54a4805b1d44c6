#include "simulator/invariants.h"

#include <map>
#include <set>
#include <tuple>

#include "simulator/network.h"
#include "site-agent/commands.h"
#include "simulator/world.h"

namespace outpost::sim {

Invariants::Invariants(const Scenario& scenario, const EventQueue& queue, Report* report)
    : sc_(scenario), queue_(queue), report_(report) {
  for (const char* name :
       {"hub copy is a prefix of the site log", "every event at the hub exactly once",
        "every hub command applied exactly once", "no request id made two runs",
        "hub view equals each site's state", "sites ran work while cut off",
        "converged after the last heal", "no store errors", "schedules fire each tick once",
        "synced writes survive crashes", "runs did what their definitions say"}) {
    report_->invariants.push_back({name, true, ""});
  }
}

void Invariants::Violation(const std::string& invariant, const std::string& detail) {
  for (auto& inv : report_->invariants) {
    if (inv.name == invariant && inv.ok) {
      inv.ok = false;
      inv.detail = "at " + std::to_string(queue_.SinceStart()) + " ms: " + detail;
    }
  }
}

void Invariants::CheckPrefix(const World& world, const SimSite& s) {
  if (!world.hub_alive()) return;
  const SiteRecord* rec = world.hub().site(s.name);
  if (checked_.size() <= s.index) checked_.resize(s.index + 1);
  auto& [incarnation, checked] = checked_[s.index];
  if (!rec || rec->incarnation != s.incarnation) return;  // a new disk the hub has not seen
  if (incarnation != s.incarnation) incarnation = s.incarnation, checked = 0;
  if (rec->up_applied <= checked) return;
  // A group the hub holds is not written yet, and reading it would write it early (and
  // change the run): checked once the hub has written it.
  if (world.hub().holding()) return;
  auto got = world.hub_store().ReadUp(s.name, rec->incarnation, checked, rec->up_applied - checked);
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
    checked = r.seq;
  }
}

bool Invariants::Converged(const World& world) const {
  if (!world.hub_alive()) return false;
  for (const auto& s : world.sites()) {
    if (!s->alive || !s->session->established() || s->engine->active_runs() > 0 ||
        !s->pending.empty()) {
      return false;
    }
    const SiteRecord* rec = world.hub().site(s->name);
    const EventLog& log = s->store->log();
    if (!rec || rec->incarnation != log.incarnation() || rec->up_applied != log.head() ||
        log.acked() != log.head() || rec->down_head != s->down_applied ||
        rec->down_acked != rec->down_head) {
      return false;
    }
  }
  return true;
}

void Invariants::NotConverged(const World& world, const SimNetwork& net) {
  const std::string who = FirstBehind(world, net);
  Violation("converged after the last heal", "not converged within " +
                                                 std::to_string(sc_.converge_within / 1000) + " s" +
                                                 (who.empty() ? "" : "; first behind: " + who));
}

std::string Invariants::FirstBehind(const World& world, const SimNetwork& net) const {
  if (!world.hub_alive()) return "the hub is down";
  for (const auto& s : world.sites()) {
    const SiteRecord* rec = world.hub().site(s->name);
    if (!s->alive) return s->name + " (agent down)";
    if (!rec) continue;
    const EventLog& log = s->store->log();
    const bool established = s->session->established();
    if (established && s->engine->active_runs() == 0 && s->pending.empty() &&
        rec->incarnation == log.incarnation() && rec->up_applied == log.head() &&
        log.acked() == log.head() && rec->down_head == s->down_applied &&
        rec->down_acked == rec->down_head) {
      continue;
    }
    return s->name + " (site head " + std::to_string(log.head()) + ", acked " +
           std::to_string(log.acked()) + ", hub applied " + std::to_string(rec->up_applied) +
           "; commands: hub head " + std::to_string(rec->down_head) + ", site applied " +
           std::to_string(s->down_applied) + ", hub saw acked " + std::to_string(rec->down_acked) +
           "; session " + (established ? "established" : "down") +
           (net.connected(*s) ? ", connected" : ", not connected") +
           (net.reconnect_pending(*s) ? ", reconnect pending" : "") + ", active runs " +
           std::to_string(s->engine->active_runs()) + (s->pending.empty() ? "" : ", writes pending") +
           (rec->incarnation == log.incarnation() ? "" : ", hub has another incarnation") + ")";
  }
  return "";
}

void Invariants::FinalChecks(const World& world) {
  uint64_t events = 0;
  for (const auto& s : world.sites()) {
    if (s->alive) CheckSchedules(*s);
    events += s->shadow.size();
    if (!world.hub_alive() || !s->alive) continue;
    const SiteRecord* rec = world.hub().site(s->name);
    if (!rec) continue;
    CheckHubCopy(world, *s, *rec);
    CheckRetired(world, *s);
    CheckSemantics(world, *s);
    CheckRuns(world, *s);
  }
  report_->events = events;
  if (world.hub_alive()) {
    report_->commands_adopted_in_restore += world.hub().counters().commands_adopted_in_restore;
  }
  if (world.hub_alive()) CheckRequestedRuns(world);
  CheckOfflineWork();
  for (auto& inv : report_->invariants) {
    if (inv.ok && inv.name == "converged after the last heal") {
      inv.detail = "in " + std::to_string(report_->convergence_ms) + " ms";
    }
  }
}

// Every tick fired at most once, and the scheduler's persisted counts equal what its log
// says it did: state and events land in one batch, whatever crashed when.
void Invariants::CheckSchedules(const SimSite& s) {
  std::map<std::string, uint64_t> fired, skipped;
  std::set<std::pair<std::string, std::string>> ticks;
  for (const auto& payload : s.shadow) {
    Event e;
    if (!Decode(payload, &e).ok()) continue;
    if (e.type == static_cast<uint8_t>(EventType::kScheduleFired)) {
      ++fired[e.workflow];
      ++report_->scheduled_runs;
      std::string tick = e.message;
      if (auto p = tick.find(" (catch-up)"); p != std::string::npos) tick.resize(p);
      if (!ticks.emplace(e.workflow, tick).second) {
        Violation("schedules fire each tick once",
                  s.name + ": " + e.workflow + " fired twice for " + tick);
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
                    std::to_string(fired[info.workflow]) + ", " +
                    std::to_string(skipped[info.workflow]));
    }
  }
}

// Every event at the hub exactly once: the hub's copy equals the site's whole log. Every
// command applied exactly once: the site applied all the hub sent.
void Invariants::CheckHubCopy(const World& world, const SimSite& s, const SiteRecord& rec) {
  report_->events_lost_in_restore +=
      CompareCopy(world, s, rec.incarnation, s.shadow, SIZE_MAX, "");
  if (rec.down_head != s.down_applied) {
    Violation("every hub command applied exactly once",
              s.name + ": hub sent " + std::to_string(rec.down_head) + " commands, site applied " +
                  std::to_string(s.down_applied));
  }
}

uint64_t Invariants::CompareCopy(const World& world, const SimSite& s, uint64_t incarnation,
                                 const std::vector<std::string>& shadow, uint64_t must_have,
                                 const char* what) {
  const char* inv = "every event at the hub exactly once";
  auto copy = world.hub_store().ReadUp(s.name, incarnation, 0, SIZE_MAX);
  if (!copy.ok()) {
    Violation(inv, s.name + ": " + copy.status().ToString());
    return 0;
  }
  uint64_t lost = 0;
  size_t j = 0;
  for (uint64_t seq = 1; seq <= shadow.size(); ++seq) {
    if (j < copy->size() && (*copy)[j].seq == seq) {
      if ((*copy)[j].payload != shadow[seq - 1]) {
        Violation(inv, s.name + ": event " + std::to_string(seq) + what + " differs");
        return lost;
      }
      ++j;
      continue;
    }
    if (seq > must_have && j == copy->size()) break;  // a lost disk's unacknowledged tail
    if (!MayBeLost(s.name, incarnation, seq)) {
      Violation(inv, s.name + ": hub has " + std::to_string(copy->size()) + " events" + what +
                         ", the site logged " + std::to_string(shadow.size()) + "; event " +
                         std::to_string(seq) + " is missing");
      return lost;
    }
    ++lost;
    Event e;
    if (Decode(shadow[seq - 1], &e).ok() && !e.run.empty()) lost_runs_.insert(e.run);
  }
  if (j < copy->size()) {
    Violation(inv, s.name + ": hub has " + std::to_string(copy->size()) + " events" + what +
                       ", past the " + std::to_string(shadow.size()) + " the site logged");
  }
  return lost;
}

bool Invariants::MayBeLost(const std::string& site, uint64_t incarnation, uint64_t seq) const {
  auto it = lost_windows_.find({site, incarnation});
  if (it == lost_windows_.end()) return false;
  for (const auto& [from, to] : it->second) {
    if (seq >= from && seq <= to) return true;
  }
  return false;
}

void Invariants::OnHubRestored(const World& world, const Watermarks& applied_max) {
  for (const auto& [key, max] : applied_max) {
    const auto& [site, incarnation] = key;
    // What the backup holds of this stream: its last entry.
    auto copy = world.hub_store().ReadUp(site, incarnation, 0, SIZE_MAX);
    const uint64_t held = copy.ok() && !copy->empty() ? copy->back().seq : 0;
    if (max > held) lost_windows_[key].push_back({held + 1, max});
    if (const SimSite* s = world.site(site); s && s->index < checked_.size() &&
                                             checked_[s->index].first == incarnation) {
      checked_[s->index].second = std::min(checked_[s->index].second, held);
    }
  }
}

// A lost disk loses only what the hub had not acknowledged: the hub's copy of each
// replaced incarnation is a prefix of what that disk logged and holds at least what the
// site had seen acknowledged (less what a hub restore lost).
void Invariants::CheckRetired(const World& world, const SimSite& s) {
  for (const auto& r : s.retired) {
    CompareCopy(world, s, r.incarnation, r.shadow, r.acked, " of a lost disk");
  }
}

namespace {

// The rule a task's `when` or `trigger` sets, on its upstream tasks' final states
// (docs/workflows.md): written from the table there, not from the engine.
bool ShouldRun(const TaskDef& td, const std::vector<TaskState>& up) {
  size_t ok = 0, failed = 0;
  for (TaskState s : up) {
    ok += s == TaskState::kSucceeded;
    failed += s == TaskState::kFailed;
  }
  if (td.trigger) {
    switch (*td.trigger) {
      case Trigger::kAllSuccess: return ok == up.size();
      case Trigger::kAllDone: return true;
      case Trigger::kOneSuccess: return ok > 0;
      case Trigger::kOneFailed: return failed > 0;
      case Trigger::kNoneFailed: return failed == 0;
    }
  }
  switch (td.when) {
    case When::kSuccess: return ok == up.size();
    case When::kFailure: return failed > 0;
    case When::kAlways: return true;
  }
  return true;
}

}  // namespace

// For every finished run on the site, each plain task of its definition (fan-out
// instances and compensations aside): the engine recorded as many attempts as the
// simulator started processes, no more than the retry policy allows; the task's state
// follows from its last process (succeeded after a success, failed once the attempts
// ran out on failures); and it ran exactly when its rule on its upstream tasks' final
// states says so. Runs that were cancelled, timed out or had a process killed are held
// only to the attempt counts.
void Invariants::CheckSemantics(const World& world, const SimSite& s) {
  const char* kName = "runs did what their definitions say";
  auto runs = s.store->ListRuns(SIZE_MAX);
  if (!runs.ok()) return;
  // What the site's log says of each attempt: how it ended ('S', 'F', 'I' interrupted).
  std::map<std::tuple<std::string, std::string, int>, char> logged;
  for (const auto& payload : s.shadow) {
    Event e;
    if (!Decode(payload, &e).ok()) continue;
    if (e.type == static_cast<uint8_t>(EventType::kAttemptFinished)) {
      logged[{e.run, e.task, e.attempt}] = e.exit_code == 0 && e.signal == 0 ? 'S' : 'F';
    } else if (e.type == static_cast<uint8_t>(EventType::kAttemptInterrupted)) {
      logged[{e.run, e.task, e.attempt}] = 'I';
    }
  }
  for (const auto& rec : *runs) {
    if (!IsFinal(rec.run_state())) continue;
    std::shared_ptr<const WorkflowDef> def = world.def_by_hash(rec.hash);
    if (!def) continue;
    auto view = s.store->GetRun(rec.id);
    if (!view.ok() || !*view) continue;
    std::map<std::string, const TaskRecord*> by_id;
    for (const auto& t : (*view)->tasks) by_id[t.id] = &t;
    bool killed = rec.run_state() == RunState::kCancelled || rec.timed_out || rec.cancel_requested;
    for (const auto& t : (*view)->tasks) {
      auto p = s.processes.find({rec.id, t.id});
      if (p == s.processes.end()) continue;
      for (const auto& [n, o] : p->second) killed = killed || o == 'K';
    }
    for (const auto& td : def->tasks) {
      if (td.for_each.present || td.approval) continue;
      auto it = by_id.find(td.id);
      if (it == by_id.end()) {
        Violation(kName, s.name + ": run " + rec.id + " has no record of task " + td.id);
        continue;
      }
      const TaskRecord& t = *it->second;
      const std::string where = s.name + ": run " + rec.id + " (" + rec.workflow + ") task " + td.id;
      auto p = s.processes.find({rec.id, td.id});
      // Each recorded attempt: a process the simulator ran, whose exit the log records as
      // it was, or one the agent recorded as interrupted (it died before or while the
      // process ran, or before recording its exit).
      char last = 0;
      bool bad = false;
      for (int n = 1; n <= t.attempts && !bad; ++n) {
        char proc = 0;
        if (p != s.processes.end()) {
          auto q = p->second.find(n);
          if (q != p->second.end()) proc = q->second;
        }
        auto l = logged.find({rec.id, td.id, n});
        const char log = l == logged.end() ? 0 : l->second;
        if (log == 'S' || log == 'F') {
          if ((proc == 'S' || proc == 'F') && proc != log) {
            Violation(kName, where + " attempt " + std::to_string(n) + " is recorded " +
                                 (log == 'S' ? "succeeded" : "failed") + "; its process " +
                                 (proc == 'S' ? "succeeded" : "failed"));
            bad = true;
          } else if (proc == 0) {
            Violation(kName, where + " attempt " + std::to_string(n) + " has an exit but no process ran");
            bad = true;
          }
          last = log;
        } else if (log == 'I') {
          last = 'I';
        } else if (proc == 'K') {
          last = 'K';
        } else {
          Violation(kName, where + " attempt " + std::to_string(n) +
                               " is recorded but neither finished nor interrupted");
          bad = true;
        }
      }
      if (!bad && p != s.processes.end() && p->second.rbegin()->first > t.attempts) {
        Violation(kName, where + " records " + std::to_string(t.attempts) + " attempts; " +
                             std::to_string(p->second.rbegin()->first) + " processes were started");
        bad = true;
      }
      if (bad) continue;
      if (t.attempts > td.retry.max + 1) {
        Violation(kName, where + " ran " + std::to_string(t.attempts) +
                             " attempts; its retry policy allows " + std::to_string(td.retry.max + 1));
        continue;
      }
      if (killed) continue;
      const TaskState st = t.task_state();
      if (t.attempts > 0) {
        if (last == 'S' && st != TaskState::kSucceeded) {
          Violation(kName, where + " is " + TaskStateName(st) + " after its last attempt succeeded");
        } else if (last != 'S' && st == TaskState::kSucceeded) {
          Violation(kName, where + " succeeded but its last attempt did not");
        } else if (last != 'S' && t.attempts < td.retry.max + 1) {
          Violation(kName, where + " ended " + TaskStateName(st) + " with retries left");
        }
      }
      std::vector<TaskState> up;
      bool decided = true;
      for (const auto& n : td.needs) {
        auto u = by_id.find(n);
        if (u == by_id.end() || !IsFinal(u->second->task_state())) {
          decided = false;
        } else {
          up.push_back(u->second->task_state());
        }
      }
      if (!decided || !td.when_expr.empty()) continue;
      const bool should = ShouldRun(td, up);
      if (should && t.attempts == 0) {
        Violation(kName, where + " never ran though its upstream allowed it (it is " +
                             TaskStateName(st) + ")");
      } else if (!should && t.attempts > 0) {
        Violation(kName, where + " ran though its upstream rule says it should not");
      }
    }
  }
}

// No request made two runs; the hub's view of each run equals the site's own state.
void Invariants::CheckRuns(const World& world, const SimSite& s) {
  auto runs = s.store->ListRuns(SIZE_MAX);
  if (!runs.ok()) return;
  std::map<std::string, int> per_request;
  for (const auto& r : *runs) {
    if (!r.request.empty() && ++per_request[r.request] > 1) {
      Violation("no request id made two runs", s.name + ": request " + r.request);
    }
    if (lost_runs_.count(r.id)) continue;  // events of it were lost in a hub restore
    auto mine = s.store->GetRun(r.id);
    auto theirs = world.hub_store().GetRun(r.id);
    if (!mine.ok() || !*mine || !theirs.ok() || !*theirs) {
      Violation("hub view equals each site's state",
                s.name + ": run " + r.id + " missing at the hub");
      continue;
    }
    const auto& m = **mine;
    const auto& t = **theirs;
    bool same = t.state == RunStateName(m.run.run_state()) && t.tasks.size() == m.tasks.size();
    for (size_t i = 0; same && i < m.tasks.size(); ++i) {
      same = t.tasks[i].id == m.tasks[i].id &&
             t.tasks[i].state == TaskStateName(m.tasks[i].task_state()) &&
             t.tasks[i].attempts == m.tasks[i].attempts &&
             t.tasks[i].exit_code == m.tasks[i].exit_code;
    }
    if (!same) {
      Violation("hub view equals each site's state",
                s.name + ": run " + r.id + " is " + t.state + " at the hub, " +
                    RunStateName(m.run.run_state()) + " on the site");
    }
  }
}

// Runs the hub asked for exist exactly where it asked.
void Invariants::CheckRequestedRuns(const World& world) {
  world.hub_store()
      .ScanRuns([&](const HubRun& r) {
        const SimSite* s = world.site(r.site);
        // A reinstalled site may have lost a start it had acknowledged (docs/protocol.md,
        // "Site reinstalled"): only sites that kept their disk are held to this.
        if (!s || !s->alive || !s->retired.empty()) return true;
        auto mine = s->store->GetRun(r.id);
        // A hub restored from a backup may ask again for a request it forgot: the site
        // refuses the second run (the request made its run there already).
        auto made = s->store->log().GetState(std::string(kRunByRequestPrefix) + r.request);
        if (made.ok() && *made && **made != r.id && r.state == "failed") return true;
        if (!r.request.empty() && (!mine.ok() || !*mine)) {
          Violation("every hub command applied exactly once",
                    "requested run " + r.id + " never reached " + r.site);
        }
        return true;
      })
      .IgnoreError();
}

// With faults to be cut off by and local runs to start, some started while cut off.
void Invariants::CheckOfflineWork() {
  const bool faults =
      !sc_.partitions.empty() || !sc_.hub_outages.empty() || sc_.hub_crashes.every > 0;
  // A swarm seed may draw cuts too short to catch a local run: coverage, not safety.
  if (faults && !sc_.drawn && !sc_.local_runs.empty() && report_->local_runs_offline == 0) {
    Violation("sites ran work while cut off", "no local run started while a site was disconnected");
  }
}

}  // namespace outpost::sim
