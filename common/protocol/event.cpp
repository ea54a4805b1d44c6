#include "common/protocol/event.h"

#include <string_view>

namespace outpost {

const char* EventTypeName(EventType t) {
  switch (t) {
    case EventType::kRunCreated: return "run.created";
    case EventType::kRunStarted: return "run.started";
    case EventType::kAttemptStarted: return "attempt.started";
    case EventType::kAttemptFinished: return "attempt.finished";
    case EventType::kAttemptInterrupted: return "attempt.interrupted";
    case EventType::kRetryScheduled: return "retry.scheduled";
    case EventType::kTaskFinished: return "task.finished";
    case EventType::kCancelRequested: return "run.cancel_requested";
    case EventType::kRunFinished: return "run.finished";
    case EventType::kAttemptSpawnFailed: return "attempt.spawn_failed";
    case EventType::kTimeoutKill: return "attempt.timeout_kill";
    case EventType::kCommandRejected: return "command.rejected";
    case EventType::kWorkflowPlaced: return "workflow.placed";
    case EventType::kWorkflowRemoved: return "workflow.removed";
    case EventType::kApprovalRequested: return "approval.requested";
    case EventType::kApprovalDecided: return "approval.decided";
    case EventType::kTaskExpanded: return "task.expanded";
    case EventType::kCompensationStarted: return "run.compensation_started";
    case EventType::kScheduleFired: return "schedule.fired";
    case EventType::kScheduleSkipped: return "schedule.skipped";
    case EventType::kOutputTrimmed: return "output.trimmed";
    case EventType::kPolicyApplied: return "policy.applied";
    case EventType::kArtifactCached: return "artifact.cached";
    case EventType::kArtifactEvicted: return "artifact.evicted";
    case EventType::kBundleImported: return "bundle.imported";
    case EventType::kSiteHealth: return "site.health";
  }
  return "unknown";
}

}  // namespace outpost

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
namespace adaptor {

const msgpack::object& convert<outpost::Event>::operator()(const msgpack::object& o,
                                                             outpost::Event& v) const {
  // The keys in MSGPACK_DEFINE_MAP's order.
  static constexpr std::string_view kKeys[] = {"time",    "type",    "run",      "task",
                                               "attempt", "state",   "exit_code", "signal",
                                               "message", "output",  "workflow", "params",
                                               "tasks",   "request"};
  outpost::ForEachMapField(o, kKeys, [&v](size_t k, const msgpack::object& val) {
    switch (k) {
      case 0: val.convert(v.time); break;
      case 1: val.convert(v.type); break;
      case 2: val.convert(v.run); break;
      case 3: val.convert(v.task); break;
      case 4: val.convert(v.attempt); break;
      case 5: val.convert(v.state); break;
      case 6: val.convert(v.exit_code); break;
      case 7: val.convert(v.signal); break;
      case 8: val.convert(v.message); break;
      case 9: val.convert(v.output); break;
      case 10: val.convert(v.workflow); break;
      case 11: val.convert(v.params); break;
      case 12: val.convert(v.tasks); break;
      case 13: val.convert(v.request); break;
    }
  });
  return o;
}

}  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS)
}  // namespace msgpack
