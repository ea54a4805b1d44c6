// Applying the hub's commands on a site: the one implementation shared by the agent
// daemon and the simulator. Sans-I/O: it changes the engine, appends events and state
// writes, and leaves committing them (with the inbox watermark, in one WriteBatch) to
// the caller.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/protocol/command.h"
#include "common/protocol/event_log.h"
#include "site-agent/agent_store.h"
#include "site-agent/engine.h"
#include "site-agent/trust_gate.h"

namespace outpost {

struct CommandOutcome {
  // kRetry: the store could not be read to decide; nothing was done, and the batch stops
  // there unacknowledged, to be applied when the hub sends it again.
  enum Kind { kApplied, kDuplicate, kRejected, kNoop, kRetry } kind = kApplied;
  std::string message;  // why, for rejections and no-ops
  // kRetry because the command's workflow is still being validated (WorkflowParser): the
  // caller applies the rest of the batch once it is done.
  bool validating = false;
};

// How a start's or placement's workflow source becomes a definition; errors name `origin`.
// nullopt: not ready yet (a large source parsed off the agent's loop by WorkflowParser);
// the command is deferred (kRetry, validating). Without one, the source is parsed at once.
using ParsedWorkflow = Result<std::shared_ptr<const WorkflowDef>>;
using WorkflowSourceParser =
    std::function<std::optional<ParsedWorkflow>(const std::string& source, const std::string& origin)>;

// Applies `c`: a run start (deduplicated by run id against the engine and the store), a
// cancel (a no-op if the run is not active), a placement or a removal (state key
// "wf/<name>"), a fleet policy (state key trust/policy). With a trust gate, every command
// is first checked against the policy in force (site-agent/trust_gate.h) and a signed
// start is used once (state key trust/used/<request>). A rejection is recorded as a
// command.rejected event in fx. Without a gate (no trust root), the hub is trusted.
CommandOutcome ApplyHubCommand(const Command& c, Engine& engine, const AgentStore& store,
                               const Clock& clock, Effects* fx, std::vector<StateWrite>* extra,
                               TrustGate* gate = nullptr,
                               const WorkflowSourceParser* parse = nullptr);

// A command entry that does not decode is consumed and recorded as a rejection.
void RecordUndecodableCommand(uint64_t seq, const Status& why, const Clock& clock, Effects* fx);

// One downstream batch (entries first_seq...) as the agent and the simulator both apply
// it: each entry decoded and applied in order — one that does not decode is consumed and
// recorded, so it cannot stall the stream — and the inbox watermark after the last, all
// into fx and extra for the caller's one write. `told` hears each entry's outcome (c is
// null for an entry that did not decode). A command that must be retried (kRetry) stops
// the batch: `applied_through` says how far it got (first_seq - 1 for nothing), the
// watermark written is that, and the status says why it stopped.
Status ApplyCommandBatch(
    uint64_t first_seq, const std::vector<std::string>& entries, Engine& engine,
    const AgentStore& store, const Clock& clock, TrustGate* gate, Effects* fx,
    std::vector<StateWrite>* extra, uint64_t* applied_through,
    const std::function<void(uint64_t seq, const Command* c, const CommandOutcome& o)>& told,
    const WorkflowSourceParser* parse = nullptr);

// The state key of the inbox watermark.
constexpr char kInboxWatermarkKey[] = "sync/down_applied";
// The hub epoch this site last reconciled with (docs/protocol.md, "A hub restored from a
// backup"); absent until a hub declared a restore.
constexpr char kHubEpochKey[] = "sync/hub_epoch";
// CommandDigest of the last command applied, written with the inbox watermark.
constexpr char kInboxDigestKey[] = "sync/down_digest";
// request/<id> -> the run a hub start with that request id started here: a start for the
// same request under another run id (a hub restored from a backup that forgot the request,
// then asked again) is refused, so a request makes one run on a site, signed or not.
constexpr char kRunByRequestPrefix[] = "request/";

}  // namespace outpost
