#include "site-agent/commands.h"

#include "common/workflow/workflow.h"

namespace outpost {

namespace {

void Reject(const Command& c, const std::string& why, const Clock& clock, Effects* fx) {
  Event e;
  e.time = clock.Now();
  e.type = static_cast<uint8_t>(EventType::kCommandRejected);
  e.run = c.run;
  e.workflow = c.workflow;
  e.request = c.request;
  e.message = std::string(CommandTypeName(c.type)) + ": " + why;
  fx->events.push_back(std::move(e));
}

}  // namespace

void RecordUndecodableCommand(uint64_t seq, const Status& why, const Clock& clock, Effects* fx) {
  Event e;
  e.time = clock.Now();
  e.type = static_cast<uint8_t>(EventType::kCommandRejected);
  e.message = "command " + std::to_string(seq) + " does not decode: " + why.message();
  fx->events.push_back(std::move(e));
}

CommandOutcome ApplyHubCommand(const Command& c, Engine& engine, const AgentStore& store,
                               const Clock& clock, Effects* fx, std::vector<StateWrite>* extra) {
  auto reject = [&](const std::string& why) {
    Reject(c, why, clock, fx);
    return CommandOutcome{CommandOutcome::kRejected, why};
  };
  switch (c.command_type()) {
    case CommandType::kStartRun: {
      auto existing = store.GetRun(c.run);
      if (engine.FindRun(c.run) || (existing.ok() && *existing)) {
        return {CommandOutcome::kDuplicate, "run " + c.run + " already exists"};
      }
      auto def = ParseWorkflow(c.source, "hub:" + c.workflow);
      if (!def.ok()) return reject(def.status().message());
      auto shared = std::make_shared<const WorkflowDef>(std::move(def).value());
      StartOptions o;
      o.request = c.request;
      if (c.has_priority) o.priority = c.priority;
      Status s = engine.StartRun(shared, c.run, c.params, fx, o);
      if (!s.ok()) return reject(s.message());
      return {};
    }
    case CommandType::kCancelRun:
      if (engine.FindRun(c.run)) {
        // Refused only while the run's compensations run: they are never cancelled.
        if (Status s = engine.Cancel(c.run, c.reason, fx); !s.ok()) {
          return {CommandOutcome::kNoop, s.message()};
        }
        return {};
      }
      // Finished while the cancel was on its way (or never known): a no-op by rule.
      return {CommandOutcome::kNoop, "run " + c.run + " is not active"};
    case CommandType::kApprove: {
      Status s = engine.Approve(c.run, c.task, c.reason != "reject", c.author, fx);
      // A gate no longer waiting (decided locally, timed out, run finished): a no-op.
      if (!s.ok()) return {CommandOutcome::kNoop, s.message()};
      return {};
    }
    case CommandType::kPlaceWorkflow: {
      auto def = ParseWorkflow(c.source, "hub:" + c.workflow);
      if (!def.ok()) return reject(def.status().message());
      extra->push_back({"wf/" + c.workflow, Encode(c)});
      Event e;
      e.time = clock.Now();
      e.type = static_cast<uint8_t>(EventType::kWorkflowPlaced);
      e.workflow = c.workflow;
      e.message = c.hash;
      fx->events.push_back(std::move(e));
      return {};
    }
    case CommandType::kRemoveWorkflow: {
      extra->push_back({"wf/" + c.workflow, std::nullopt});
      Event e;
      e.time = clock.Now();
      e.type = static_cast<uint8_t>(EventType::kWorkflowRemoved);
      e.workflow = c.workflow;
      fx->events.push_back(std::move(e));
      return {};
    }
  }
  return reject("unknown command type " + std::to_string(c.type));
}

}  // namespace outpost
