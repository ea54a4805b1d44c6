#include "simulator/workload.h"

#include <zmq.h>

#include <cstdlib>
#include <cstring>

#include "common/ulid.h"
#include "common/workflow/workflow.h"
#include "simulator/invariants.h"
#include "simulator/network.h"
#include "simulator/world.h"

namespace outpost::sim {

using json = nlohmann::json;

namespace {

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

SimTask DrawTask(const std::vector<std::string>& argv, Rng* rng) {
  DurationMs dur = 1000;
  double fail = 0;
  if (argv.size() >= 2 && argv[0] == "sim") {
    auto d = ParseDuration(argv[1]);
    if (d.ok()) dur = *d;
    if (argv.size() >= 3) fail = strtod(argv[2].c_str(), nullptr);
  }
  SimTask t;
  t.duration = dur / 2 + static_cast<DurationMs>(rng->Uniform(static_cast<uint64_t>(dur)));
  t.fails = static_cast<double>(rng->Uniform(999'999)) / 1e6 < fail;
  return t;
}

Workload::Workload(const Scenario& scenario, EventQueue* queue, Rng* rng, Report* report,
                   World* world, SimNetwork* net, Invariants* invariants)
    : sc_(scenario),
      queue_(queue),
      rng_(rng),
      report_(report),
      world_(world),
      net_(net),
      invariants_(invariants) {}

void Workload::Enroll(const SimSite& s) {
  HubOutput out;
  json r = world_->hub().OnOperator(
      "sim", {{"op", "site.add"}, {"name", s.name}, {"key", s.keys.public_z85.empty() ? SimKey(rng_) : s.keys.public_z85}, {"labels", s.labels}},
      &out);
  if (!r.value("ok", false)) {
    invariants_->Violation("no store errors", "enroll " + s.name + ": " + r.dump());
  }
}

void Workload::ApplyWorkflows() {
  for (const auto& w : sc_.workflows) {
    HubOutput out;
    json r = world_->hub().OnOperator(
        "sim", {{"op", "workflow.apply"}, {"source", w.source}, {"target", w.target}}, &out);
    if (!r.value("ok", false)) {
      invariants_->Violation("no store errors", "apply " + w.name + ": " + r.dump());
    }
  }
}

void Workload::ScheduleLocalRuns(SimSite& s, TimeMs t0, TimeMs end) {
  for (const auto& p : sc_.local_runs) {
    const WorkflowSpec* w = nullptr;
    for (const auto& ws : sc_.workflows) {
      if (ws.name == p.workflow) w = &ws;
    }
    if (!SelectorMatches(w->target, s.labels) || !SelectorMatches(p.target, s.labels)) continue;
    const DurationMs every = p.every;
    queue_->Recurring(t0 + static_cast<TimeMs>(rng_->Uniform(static_cast<uint64_t>(every))),
                      [this, &s, w, every, end]() -> std::optional<TimeMs> {
                        if (queue_->Now() >= end) return std::nullopt;
                        StartLocalRun(s, *w);
                        return queue_->Now() + every;
                      });
  }
}

void Workload::StartLocalRun(SimSite& s, const WorkflowSpec& w) {
  if (!s.alive) return;
  const std::string id = s.name + "-" + MakeUlid(s.clock.Now(), &s.rng);
  if (!s.engine->StartRun(world_->def(w.name), id, {}, &s.pending).ok()) return;
  ++report_->local_runs;
  if (!s.session->established()) ++report_->local_runs_offline;
  queue_->Trace("local " + id);
  world_->Activity(s);
}

void Workload::ScheduleRequests(TimeMs t0, TimeMs end) {
  int request_n = 0;
  for (const auto& p : sc_.requests) {
    if (p.at >= 0) {
      const int n = ++request_n;
      queue_->At(t0 + p.at, [this, &p, n] { Request(p, n); });
    }
    if (p.every > 0) {
      const int base = 1000000 * (++request_n);
      queue_->Recurring(t0 + p.every,
                        [this, &p, end, base, counter = 0]() mutable -> std::optional<TimeMs> {
                          if (queue_->Now() >= end) return std::nullopt;
                          Request(p, base + ++counter);
                          return queue_->Now() + p.every;
                        });
    }
  }
}

void Workload::Request(const Periodic& p, int n) {
  if (world_->healed() || !world_->hub_alive()) return;
  const std::string id = "req-" + std::to_string(n);
  json req = {{"op", "run.start"}, {"workflow", p.workflow}, {"request", id}, {"target", p.target}};
  HubOutput out;
  json r = world_->hub().OnOperator("sim", req, &out);
  net_->HubEmit(out);
  queue_->Trace("request " + id + " " + (r.value("ok", false) ? "ok" : "refused"));
  if (!r.value("ok", false)) {
    ++report_->requests_refused;
    return;
  }
  ++report_->requests;
  if (r.contains("runs") && r["runs"].is_array()) {
    for (const auto& id : r["runs"]) {
      if (id.is_string()) runs_[p.workflow].push_back(id.get<std::string>());
    }
  }
  if (sc_.duplicate_requests > 0 &&
      static_cast<double>(rng_->Uniform(999'999)) / 1e6 < sc_.duplicate_requests) {
    // The operator's client retries the same request id a little later.
    queue_->At(queue_->Now() + 60'000,
               [this, req, first_runs = r["runs"]] { Retry(req, first_runs); });
  }
}

void Workload::ScheduleOperators(TimeMs t0, TimeMs end) {
  if (sc_.operators_every <= 0) return;
  queue_->Recurring(t0 + Exp(rng_, sc_.operators_every), [this, end]() -> std::optional<TimeMs> {
    if (queue_->Now() >= end) return std::nullopt;
    OperatorAction();
    return queue_->Now() + Exp(rng_, sc_.operators_every);
  });
}

json Workload::Operate(const json& request) {
  if (!world_->hub_alive()) return {{"ok", false}};
  HubOutput out;
  json r = world_->hub().OnOperator("sim", request, &out);
  net_->HubEmit(out);
  ++report_->operator_actions;
  queue_->Trace("operator " + request.value("op", "") + " " + (r.value("ok", false) ? "ok" : "refused"));
  return r;
}

// One action, drawn: what an operator does to a fleet besides starting runs. Refusals
// (a run already finished, a hub that is down) are part of the game.
void Workload::OperatorAction() {
  if (world_->healed() || !world_->hub_alive()) return;
  auto pick_run = [this](bool approvals) -> std::pair<std::string, std::string> {
    std::vector<std::pair<std::string, std::string>> candidates;
    for (const auto& [wf, ids] : runs_) {
      std::string gate;
      for (const auto& td : world_->def(wf)->tasks) {
        if (td.approval) gate = td.id;
      }
      if (approvals && gate.empty()) continue;
      for (const auto& id : ids) candidates.emplace_back(id, gate);
    }
    if (candidates.empty()) return {};
    return candidates[rng_->Uniform(candidates.size() - 1)];  // Uniform(n): 0..n
  };
  const auto& sites = world_->sites();
  switch (rng_->Uniform(4)) {
    case 0: {  // cancel a run the hub made
      auto [id, gate] = pick_run(false);
      if (!id.empty()) Operate({{"op", "run.cancel"}, {"id", id}});
      break;
    }
    case 1: {  // decide an approval gate, mostly approving
      auto [id, gate] = pick_run(true);
      if (!id.empty()) {
        Operate({{"op", "run.approve"}, {"id", id}, {"task", gate}, {"reject", rng_->Uniform(3) == 0}});
      }
      break;
    }
    case 2: {  // relabel a site: placements follow
      if (sites.empty()) break;
      const SimSite& s = *sites[rng_->Uniform(sites.size() - 1)];
      if (rng_->Uniform(1) == 0) {
        Operate({{"op", "site.label"}, {"name", s.name}, {"set", {{"canary", "yes"}}}});
      } else {
        Operate({{"op", "site.label"}, {"name", s.name}, {"remove", {"canary"}}});
      }
      break;
    }
    case 3: {  // apply a changed definition (a new hash) of a workflow
      if (sc_.workflows.empty()) break;
      const WorkflowSpec& w = sc_.workflows[rng_->Uniform(sc_.workflows.size() - 1)];
      const std::string source = w.source + "\n# revision " + std::to_string(++revision_) + "\n";
      world_->AddRevision(source);
      Operate({{"op", "workflow.apply"}, {"source", source}, {"target", w.target}});
      break;
    }
    case 4: {  // remove a workflow; apply it again five minutes later
      if (sc_.workflows.empty()) break;
      const WorkflowSpec& w = sc_.workflows[rng_->Uniform(sc_.workflows.size() - 1)];
      Operate({{"op", "workflow.remove"}, {"name", w.name}});
      queue_->At(queue_->Now() + 300'000, [this, &w] {
        if (!world_->healed()) Operate({{"op", "workflow.apply"}, {"source", w.source}, {"target", w.target}});
      });
      break;
    }
  }
}

void Workload::Retry(const json& request, const json& first_runs) {
  if (!world_->hub_alive()) return;
  HubOutput out;
  json again = world_->hub().OnOperator("sim", request, &out);
  net_->HubEmit(out);
  if (!again.value("duplicate", false) || again["runs"] != first_runs) {
    invariants_->Violation("no request id made two runs",
                           "a retried request made new runs: " + again.dump());
  }
}

}  // namespace outpost::sim
