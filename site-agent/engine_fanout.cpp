// Fan-out: a for_each task expands into one instance record per item.
//
// Once decided, a for_each task takes its items (FanOutItems: the static list, a rendered
// template split on commas and whitespace, or the lines an upstream task printed, kept by
// KeepFanOutSource when it succeeded), at most kMaxFanOut of them, and becomes `running`
// with `instances` set and one record "ID[N]" per item; with no items it succeeds at once.
// Instances are ordinary records with their own attempts, retries and logs, under the
// task's retry policy and timeout. Evaluate queues at most `parallelism` of a task's
// instances at a time (TakeInstanceSlot: queued, running and waiting-for-retry instances
// count). The task has no process of its own: a cancel reaches its instances one by one,
// and when the last one is final the task finishes (MaybeFinishFanOut): succeeded if all
// did, cancelled if none failed but some were cancelled, else failed. Its outputs are
// count, succeeded and failed.
#include "common/workflow/template.h"
#include "site-agent/engine.h"

namespace outpost {

namespace {

// Items of a list: trimmed, empty ones dropped; split on newlines only (`lines`), else on
// commas, spaces, tabs and newlines.
std::vector<std::string> SplitItems(const std::string& text, bool lines) {
  std::vector<std::string> out;
  std::string cur;
  auto flush = [&] {
    const auto b = cur.find_first_not_of(" \t\r");
    if (b != std::string::npos) {
      const auto e = cur.find_last_not_of(" \t\r");
      out.push_back(cur.substr(b, e - b + 1));
    }
    cur.clear();
  };
  for (char c : text) {
    const bool sep = lines ? c == '\n' : (c == ',' || c == ' ' || c == '\t' || c == '\n');
    if (sep) {
      flush();
    } else {
      cur += c;
    }
  }
  flush();
  return out;
}

}  // namespace

Result<std::vector<std::string>> Engine::FanOutItems(const Active& a, size_t i) const {
  const ForEach& fe = a.defs[i]->for_each;
  std::vector<std::string> items;
  if (!fe.lines_of.empty()) {
    items = SplitItems(a.tasks[a.index.at(fe.lines_of)].lines, true);
  } else if (!fe.expr.empty()) {
    OUTPOST_ASSIGN_OR_RETURN(auto text, RenderTemplate(fe.expr, Values(a, i)));
    items = SplitItems(text, false);
  } else {
    items = fe.items;
  }
  if (items.size() > static_cast<size_t>(kMaxFanOut)) {
    return Status::InvalidArgument(std::to_string(items.size()) + " items (at most " +
                                   std::to_string(kMaxFanOut) + ")");
  }
  return items;
}

void Engine::Expand(Active& a, size_t i, Effects* fx) {
  auto listed = FanOutItems(a, i);
  if (!listed.ok()) {
    FinishTask(a, i, TaskState::kFailed, "cannot expand for_each: " + listed.status().message(),
               fx);
    return;
  }
  const std::vector<std::string>& items = *listed;
  const std::string parent = a.tasks[i].id;
  {
    auto& t = a.tasks[i];
    t.state = static_cast<uint8_t>(TaskState::kRunning);
    t.started = clock_.Now();
    t.instances = static_cast<int32_t>(items.size());
    t.outputs = {{"count", std::to_string(items.size())}};
    t.message = std::to_string(items.size()) + " instance(s)";
    Touch(a, i, fx);
    Event e = MakeEvent(EventType::kTaskExpanded, a, &t);
    e.message = t.message;
    fx->events.push_back(std::move(e));
  }
  if (items.empty()) {
    a.tasks[i].outputs = {{"count", "0"}, {"succeeded", "0"}, {"failed", "0"}};
    FinishTask(a, i, TaskState::kSucceeded, "no items", fx);
    return;
  }
  for (size_t k = 0; k < items.size(); ++k) {
    TaskRecord r;
    r.id = parent + "[" + std::to_string(k) + "]";
    r.kind = static_cast<uint8_t>(TaskKind::kInstance);
    r.def_task = a.defs[i]->id;
    r.parent = parent;
    r.item = items[k];
    AddRecord(a, std::move(r), fx);
  }
}

// Takes one of the for_each task's `parallelism` slots for instance `i`, if one is free
// (always, with no cap). The tally lives for one Evaluate and is counted on first use.
bool Engine::TakeInstanceSlot(const Active& a, size_t i, InFlight* in_flight) const {
  const int parallelism = a.defs[i]->for_each.parallelism;
  if (parallelism <= 0) return true;
  if (!in_flight->has_value()) {
    auto& count = in_flight->emplace();
    for (size_t k = 0; k < a.tasks.size(); ++k) {
      const auto& r = a.tasks[k];
      if (r.task_kind() != TaskKind::kInstance) continue;
      if (a.queued[k] || r.task_state() == TaskState::kRunning ||
          r.task_state() == TaskState::kWaiting) {
        ++count[r.parent];
      }
    }
  }
  int& n = (**in_flight)[a.tasks[i].parent];
  if (n >= parallelism) return false;
  ++n;
  return true;
}

// A succeeded task whose output a downstream for_each {lines_of: ...} fans out over keeps
// that output in its (stored) record, for when the downstream is decided, maybe after a
// restart.
void Engine::KeepFanOutSource(Active& a, size_t i, const std::string& output) {
  auto& t = a.tasks[i];
  if (t.task_kind() != TaskKind::kTask) return;
  for (const auto& d : a.def->tasks) {
    if (d.for_each.lines_of == t.id) t.lines = output;
  }
}

void Engine::MaybeFinishFanOut(Active& a, size_t parent, Effects* fx) {
  auto& p = a.tasks[parent];
  if (p.task_state() != TaskState::kRunning || p.instances == 0) return;
  int succeeded = 0, failed = 0, cancelled = 0, total = 0;
  for (const auto& r : a.tasks) {
    if (r.task_kind() != TaskKind::kInstance || r.parent != p.id) continue;
    if (!IsFinal(r.task_state())) return;
    ++total;
    if (r.task_state() == TaskState::kSucceeded) {
      ++succeeded;
    } else if (r.task_state() == TaskState::kCancelled) {
      ++cancelled;
    } else {
      ++failed;
    }
  }
  p.outputs = {{"count", std::to_string(total)},
               {"succeeded", std::to_string(succeeded)},
               {"failed", std::to_string(failed)}};
  const std::string of = " of " + std::to_string(total) + " instance(s) ";
  if (succeeded == total) {
    FinishTask(a, parent, TaskState::kSucceeded, "", fx);
  } else if (failed == 0) {
    FinishTask(a, parent, TaskState::kCancelled, std::to_string(cancelled) + of + "cancelled", fx);
  } else {
    FinishTask(a, parent, TaskState::kFailed, std::to_string(failed) + of + "failed", fx);
  }
}

}  // namespace outpost
