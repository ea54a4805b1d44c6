#include "hub/run_view.h"

#include <cmath>
#include <cstdlib>

#include "common/labels.h"

namespace outpost {

using json = nlohmann::json;

json TimeJson(TimeMs t) { return t > 0 ? json(FormatTime(t)) : json(nullptr); }

bool FinalRunState(const std::string& s) {
  return s == "succeeded" || s == "failed" || s == "cancelled" || s == "compensated" ||
         s == "compensation_failed";
}

void FoldEvent(const Event& e, HubRun* run, HubTxn* txn,
               std::unordered_map<std::string, uint32_t>* task_index,
               std::vector<uint32_t>* touched) {
  HubRun& r = *run;
  r.updated = e.time;
  if (task_index && task_index->size() != r.tasks.size()) {
    task_index->clear();
    for (uint32_t i = 0; i < r.tasks.size(); ++i) task_index->emplace(r.tasks[i].id, i);
    // A stored run that names a task twice: the first is the one folded into, as without
    // the index; the index then covers fewer than the tasks, so search instead.
    if (task_index->size() != r.tasks.size()) task_index = nullptr;
  }
  auto task = [&r, task_index, touched](const std::string& id) -> HubTask& {
    if (task_index) {
      // try_emplace, not emplace: emplace makes a node (and copies the id) before it
      // looks, even for a task the index already holds.
      auto [it, added] = task_index->try_emplace(id, static_cast<uint32_t>(r.tasks.size()));
      if (!added) {
        if (touched) touched->push_back(it->second);
        return r.tasks[it->second];
      }
    } else {
      for (uint32_t i = 0; i < r.tasks.size(); ++i) {
        if (r.tasks[i].id != id) continue;
        if (touched) touched->push_back(i);
        return r.tasks[i];
      }
    }
    if (touched) touched->push_back(static_cast<uint32_t>(r.tasks.size()));
    r.tasks.push_back(HubTask{});
    r.tasks.back().id = id;
    return r.tasks.back();
  };
  switch (static_cast<EventType>(e.type)) {
    case EventType::kRunCreated:
      r.delivered = true;
      r.workflow = e.workflow;
      r.hash = e.message;
      r.params = e.params;
      if (!e.request.empty()) r.request = e.request;
      if (r.created == 0) r.created = e.time;
      for (const auto& id : e.tasks) task(id);
      break;
    case EventType::kRunStarted:
      if (!FinalRunState(r.state)) r.state = "running";
      break;
    case EventType::kAttemptStarted: {
      HubTask& t = task(e.task);
      t.state = e.state;
      t.attempts = e.attempt;
      t.started = e.time;
      t.message.clear();  // what it waited for (a retry, an artifact) is over
      break;
    }
    case EventType::kAttemptFinished:
    case EventType::kAttemptSpawnFailed: {
      HubTask& t = task(e.task);
      t.attempts = e.attempt;
      t.exit_code = e.exit_code;
      t.signal = e.signal;
      if (!e.message.empty()) t.message = e.message;
      txn->PutOutput(e.run, e.task, e.output.empty() ? e.message : e.output);
      break;
    }
    case EventType::kAttemptInterrupted:
    case EventType::kRetryScheduled:
    case EventType::kTimeoutKill:
    case EventType::kApprovalRequested:
    case EventType::kApprovalDecided:
    case EventType::kTaskExpanded: {
      HubTask& t = task(e.task);
      t.state = e.state;
      t.message = e.message;
      break;
    }
    case EventType::kTaskFinished: {
      HubTask& t = task(e.task);
      t.state = e.state;
      t.finished = e.time;
      t.exit_code = e.exit_code;
      t.signal = e.signal;
      if (!e.message.empty()) t.message = e.message;
      break;
    }
    case EventType::kCancelRequested:
      r.cancel_requested = true;
      break;
    case EventType::kCompensationStarted:
      r.message = e.message;
      break;
    case EventType::kScheduleFired:
      r.message = e.message;
      break;
    case EventType::kScheduleSkipped:
    case EventType::kOutputTrimmed:
      break;
    case EventType::kRunFinished:
      r.state = e.state;
      r.finished = e.time;
      r.message = e.message;
      break;
    case EventType::kCommandRejected:
      // The start reached the site, which refused it: delivered, and failed.
      r.delivered = true;
      r.state = "failed";
      r.finished = e.time;
      r.message = "refused by the site: " + e.message;
      break;
    case EventType::kWorkflowPlaced:
    case EventType::kWorkflowRemoved:
    case EventType::kPolicyApplied:
    case EventType::kArtifactCached:
    case EventType::kArtifactEvicted:
    case EventType::kBundleImported:
    case EventType::kSiteHealth:
      break;
  }
}

json RunSummaryJson(const HubRun& r) {
  return {{"id", r.id},
          {"site", r.site},
          {"workflow", r.workflow},
          {"hash", r.hash},
          {"state", r.state},
          {"request", r.request},
          {"author", r.author},
          {"params", r.params},
          {"created", TimeJson(r.created)},
          {"finished", TimeJson(r.finished)},
          {"delivered", r.delivered},
          {"cancel_requested", r.cancel_requested},
          {"message", r.message}};
}

json RunJson(const HubRun& r) {
  json tasks = json::array();
  for (const auto& t : r.tasks) {
    tasks.push_back({{"id", t.id},
                     {"state", t.state},
                     {"attempts", t.attempts},
                     {"exit_code", t.attempts > 0 ? json(t.exit_code) : json(nullptr)},
                     {"signal", t.signal},
                     {"started", TimeJson(t.started)},
                     {"finished", TimeJson(t.finished)},
                     {"message", t.message}});
  }
  json j = RunSummaryJson(r);
  j["tasks"] = std::move(tasks);
  return j;
}

bool ValidHealthField(const std::string& name) {
  if (name.empty() || name.size() > 48) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (!((c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9'))) return false;
  }
  return true;
}

void NoteSiteEvent(const Event& e, SiteRecord* site, const WorkflowRecord* current) {
  switch (static_cast<EventType>(e.type)) {
    case EventType::kCommandRejected:
      ++site->commands_refused;
      if (e.message.rfind("workflow.place:", 0) == 0 && !e.workflow.empty()) {
        site->placed.erase(e.workflow);
        site->refused[e.workflow] = e.message;
      } else if (e.message.rfind("policy.set:", 0) == 0) {
        site->policy_status = "refused: " + e.message;
      }
      break;
    case EventType::kWorkflowPlaced:
      site->refused.erase(e.workflow);
      // The site placed the definition the hub has now: it is placed, whatever an older
      // command's refusal, arriving before this, took away (a refused unsigned apply and
      // the signed one after it, carried in one batch or bundle).
      if (current && current->hash == e.message && SelectorMatches(current->target, site->labels)) {
        site->placed[e.workflow] = current->placed_tag();
      }
      break;
    case EventType::kPolicyApplied:
      site->policy_status = "applied: " + e.message;
      break;
    case EventType::kArtifactCached:
      // Text from the site: a size that does not parse counts as 0, never throws.
      site->artifacts[e.message] = std::strtoull(e.output.c_str(), nullptr, 10);
      break;
    case EventType::kArtifactEvicted:
      site->artifacts.erase(e.message);
      break;
    case EventType::kSiteHealth:
      // Text from the site: only names the hub exports as metrics, numbers that parse and
      // are finite; anything else is left out, never thrown on.
      site->health.clear();
      for (const auto& [k, v] : e.params) {
        if (site->health.size() >= kMaxHealthFields || !ValidHealthField(k)) continue;
        char* end = nullptr;
        const double d = std::strtod(v.c_str(), &end);
        if (v.empty() || end != v.c_str() + v.size() || !std::isfinite(d)) continue;
        site->health[k] = d;
      }
      site->health_at = e.time;
      break;
    default:
      break;
  }
}

}  // namespace outpost
