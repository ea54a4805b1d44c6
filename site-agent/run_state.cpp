#include "site-agent/run_state.h"

#include <cstdio>

namespace outpost {

const char* TaskStateName(TaskState s) {
  switch (s) {
    case TaskState::kPending: return "pending";
    case TaskState::kWaiting: return "pending";
    case TaskState::kRunning: return "running";
    case TaskState::kSucceeded: return "succeeded";
    case TaskState::kFailed: return "failed";
    case TaskState::kSkipped: return "skipped";
    case TaskState::kCancelled: return "cancelled";
    case TaskState::kAwaitingApproval: return "awaiting_approval";
  }
  return "unknown";
}

const char* RunStateName(RunState s) {
  switch (s) {
    case RunState::kPending: return "pending";
    case RunState::kRunning: return "running";
    case RunState::kSucceeded: return "succeeded";
    case RunState::kFailed: return "failed";
    case RunState::kCancelled: return "cancelled";
    case RunState::kCompensated: return "compensated";
    case RunState::kCompensationFailed: return "compensation_failed";
  }
  return "unknown";
}

bool IsFinal(TaskState s) {
  return s == TaskState::kSucceeded || s == TaskState::kFailed || s == TaskState::kSkipped ||
         s == TaskState::kCancelled;
}

bool IsFinal(RunState s) {
  return s == RunState::kSucceeded || s == RunState::kFailed || s == RunState::kCancelled ||
         s == RunState::kCompensated || s == RunState::kCompensationFailed;
}

std::string RunKey(const std::string& run) { return "run/" + run; }
std::string TaskKey(const std::string& run, const std::string& task) {
  return "task/" + run + "/" + task;
}
std::string TaskPrefix(const std::string& run) { return "task/" + run + "/"; }
std::string OutputKey(const std::string& run, const std::string& task, int attempt) {
  char buf[16];
  snprintf(buf, sizeof buf, "%08d", attempt);
  return "out/" + run + "/" + task + "/" + buf;
}

}  // namespace outpost
