#include "site-agent/commands.h"

#include "common/codec.h"
#include "common/workflow/workflow.h"

namespace outpost {

namespace {

void Reject(const Command& c, const std::string& why, const Clock& clock, Effects* fx) {
  Event e;
  e.time = clock.Now();
  e.type = static_cast<uint8_t>(EventType::kCommandRejected);
  // Only a refused start ends its run (the hub shows it failed with this reason); a
  // refused cancel or approval names its run in the message and leaves the run alone.
  const bool start = c.command_type() == CommandType::kStartRun;
  if (start) e.run = c.run;
  e.workflow = c.workflow;
  e.request = c.request;
  e.message = std::string(CommandTypeName(c.type)) + ": " +
              (start || c.run.empty() ? "" : "run " + c.run + ": ") + why;
  if (!c.author.empty()) e.message += " (asked by " + c.author + ")";
  fx->events.push_back(std::move(e));
}

// A state key as this batch leaves it: a write earlier in the batch wins over the store.
Result<std::optional<std::string>> StateAfter(const std::string& key, const AgentStore& store,
                                              const std::vector<StateWrite>& extra) {
  for (auto it = extra.rbegin(); it != extra.rend(); ++it) {
    if (it->key == key) return it->value;
  }
  return store.log().GetState(key);
}

// The placement in force for `workflow` (nullopt: none); an error if it cannot be read.
Result<std::optional<Command>> PlacedCommand(const std::string& workflow, const AgentStore& store,
                                             const std::vector<StateWrite>& extra) {
  auto v = StateAfter("wf/" + workflow, store, extra);
  if (!v.ok()) return v.status();
  if (!*v) return std::optional<Command>();
  Command placed;
  if (!DecodeCommand(**v, &placed).ok()) return std::optional<Command>();
  return std::optional<Command>(std::move(placed));
}

// The fleet policy a kSetPolicy command carries: adopted when the root signed it and it
// is newer than the one in force (a repeat is rewritten: the batch may be a retry).
CommandOutcome ApplyPolicy(const Command& c, TrustGate* gate, const Clock& clock, Effects* fx,
                           std::vector<StateWrite>* extra) {
  if (!gate) {
    return {CommandOutcome::kNoop, "no trust root is configured here; the policy is not used"};
  }
  Signed s{c.grant, c.signer, c.sig};
  bool newer = false;
  auto p = gate->CheckPolicy(s, &newer);
  if (!p.ok()) {
    Reject(c, p.status().message(), clock, fx);
    return {CommandOutcome::kRejected, p.status().message()};
  }
  extra->push_back({kPolicyStateKey, EncodeSigned(s)});
  if (!newer) return {CommandOutcome::kNoop, "policy v" + std::to_string(p->version) + " is in force"};
  Event e;
  e.time = clock.Now();
  e.type = static_cast<uint8_t>(EventType::kPolicyApplied);
  e.message = "fleet " + p->fleet + " policy v" + std::to_string(p->version) + " from the hub, " +
              std::to_string(p->operators.size()) + " operator(s)";
  fx->events.push_back(std::move(e));
  gate->Adopt(s, std::move(p).value());
  return {};
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
                               const Clock& clock, Effects* fx, std::vector<StateWrite>* extra,
                               TrustGate* gate, const WorkflowSourceParser* parse) {
  auto reject = [&](const std::string& why) {
    Reject(c, why, clock, fx);
    return CommandOutcome{CommandOutcome::kRejected, why};
  };
  if (c.command_type() == CommandType::kSetPolicy) return ApplyPolicy(c, gate, clock, fx, extra);
  if (c.command_type() == CommandType::kStartRun) {
    // A start already carried out is a duplicate, signed or not (the hub resends).
    if (engine.FindRun(c.run)) return {CommandOutcome::kDuplicate, "run " + c.run + " already exists"};
    auto existing = store.GetRun(c.run);
    // Not knowing is not "no": a start read as new while the store cannot be read would
    // run again (the simulator found one, resent after a hub restore).
    if (!existing.ok()) {
      return {CommandOutcome::kRetry, "cannot read run " + c.run + ": " + existing.status().message()};
    }
    if (*existing) return {CommandOutcome::kDuplicate, "run " + c.run + " already exists"};
    // With a trust root the gate refuses a replayed signed request itself, below.
    if (!gate && !c.request.empty()) {
      auto made = StateAfter(std::string(kRunByRequestPrefix) + c.request, store, *extra);
      if (!made.ok()) {
        return {CommandOutcome::kRetry, "cannot read requests: " + made.status().message()};
      }
      if (*made && **made != c.run) {
        return reject("request " + c.request + " already started run " + **made + " here");
      }
    }
  }
  // The definition a start or placement carries, parsed before anything is written: a
  // source still being validated off the loop defers the command with nothing done. Its
  // errors are reported after the trust gate's, as they always were.
  std::optional<ParsedWorkflow> parsed;
  if (c.command_type() == CommandType::kStartRun || c.command_type() == CommandType::kPlaceWorkflow) {
    const std::string origin = "hub:" + c.workflow;
    if (parse) {
      parsed = (*parse)(c.source, origin);
    } else {
      auto def = ParseWorkflow(c.source, origin);
      parsed = def.ok() ? ParsedWorkflow(std::make_shared<const WorkflowDef>(std::move(def).value()))
                        : ParsedWorkflow(def.status());
    }
    if (!parsed) {
      CommandOutcome o{CommandOutcome::kRetry, "workflow " + c.workflow + " (" +
                                                   std::to_string(c.source.size()) +
                                                   " bytes) is being validated"};
      o.validating = true;
      return o;
    }
  }
  if (gate) {
    std::optional<Command> placed;
    std::string run_workflow;
    if (c.command_type() == CommandType::kStartRun || c.command_type() == CommandType::kPlaceWorkflow) {
      auto p = PlacedCommand(c.workflow, store, *extra);
      if (!p.ok()) return {CommandOutcome::kRetry, "cannot read placements: " + p.status().message()};
      placed = std::move(p).value();
    } else if (const RunRecord* r = engine.FindRun(c.run)) {
      run_workflow = r->workflow;
    }
    Grant g;
    if (Status s = gate->Check(c, clock.Now(), placed, run_workflow, &g); !s.ok()) {
      return reject(s.message());
    }
    if (c.command_type() == CommandType::kStartRun) {
      // One signed start starts one run here, however often the hub sends it.
      const std::string used = std::string(kUsedRequestPrefix) + g.request;
      auto seen = StateAfter(used, store, *extra);
      if (!seen.ok()) {
        return {CommandOutcome::kRetry, "cannot read used requests: " + seen.status().message()};
      }
      if (*seen) return reject("replayed: signed request " + g.request + " already started a run here");
      extra->push_back({used, EncodeU64(static_cast<uint64_t>(g.expires))});
    }
  }
  switch (c.command_type()) {
    case CommandType::kStartRun: {
      if (!parsed->ok()) return reject(parsed->status().message());
      const std::shared_ptr<const WorkflowDef>& shared = **parsed;
      StartOptions o;
      o.request = c.request;
      o.sealed = c.secrets;
      if (c.has_priority) o.priority = c.priority;
      Status s = engine.StartRun(shared, c.run, c.params, fx, o);
      if (!s.ok()) return reject(s.message());
      if (!c.request.empty()) extra->push_back({std::string(kRunByRequestPrefix) + c.request, c.run});
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
      if (!parsed->ok()) return reject(parsed->status().message());
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
    case CommandType::kSetPolicy:
      break;  // handled above
  }
  return reject("unknown command type " + std::to_string(c.type));
}

Status ApplyCommandBatch(
    uint64_t first_seq, const std::vector<std::string>& entries, Engine& engine,
    const AgentStore& store, const Clock& clock, TrustGate* gate, Effects* fx,
    std::vector<StateWrite>* extra, uint64_t* applied_through,
    const std::function<void(uint64_t seq, const Command* c, const CommandOutcome& o)>& told,
    const WorkflowSourceParser* parse) {
  *applied_through = first_seq - 1;
  Status stopped;
  size_t n = 0;
  for (; n < entries.size(); ++n) {
    Command c;
    Status s = DecodeCommand(entries[n], &c);
    if (!s.ok()) {
      RecordUndecodableCommand(first_seq + n, s, clock, fx);
      told(first_seq + n, nullptr, {CommandOutcome::kRejected, s.message()});
      continue;
    }
    CommandOutcome o = ApplyHubCommand(c, engine, store, clock, fx, extra, gate, parse);
    told(first_seq + n, &c, o);
    if (o.kind == CommandOutcome::kRetry) {
      stopped = Status::Unavailable("command " + std::to_string(first_seq + n) + ": " + o.message);
      break;
    }
  }
  if (n == 0) return stopped;
  *applied_through = first_seq + n - 1;
  extra->push_back({kInboxWatermarkKey, EncodeU64(*applied_through)});
  extra->push_back({kInboxDigestKey, EncodeU64(CommandDigest(entries[n - 1]))});
  return stopped;
}

}  // namespace outpost
