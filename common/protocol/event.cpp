#include "common/protocol/event.h"

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
