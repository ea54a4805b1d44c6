// Event: one state change on a site, as it is stored in the site's event log and (later)
// shipped upstream to the hub. The log assigns the sequence number; the event carries
// the site's time and everything needed to rebuild what happened.
//
// The encoding is a msgpack map with short stable keys; new fields are added as new
// keys so older readers skip them. See docs/architecture.md ("Event log").
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/codec.h"

namespace outpost {

enum class EventType : uint8_t {
  kRunCreated = 1,        // run accepted: workflow name, hash, params
  kRunStarted = 2,        // first task became runnable
  kAttemptStarted = 3,    // a task attempt is about to be spawned (written before spawn)
  kAttemptFinished = 4,   // the attempt's process ended: exit code / signal, output tail
  kAttemptInterrupted = 5,  // the agent restarted while the attempt was running
  kRetryScheduled = 6,    // the task waits for its backoff before the next attempt
  kTaskFinished = 7,      // the task reached a final state (succeeded/failed/skipped/cancelled)
  kCancelRequested = 8,   // an operator asked to cancel the run
  kRunFinished = 9,       // the run reached a final state
  kAttemptSpawnFailed = 10,  // the process could not be started
  kTimeoutKill = 11,      // a timeout fired and the attempt's process group is being killed
  kCommandRejected = 12,  // a hub command could not be applied (message says why)
  kWorkflowPlaced = 13,   // the hub placed a workflow definition on this site
  kWorkflowRemoved = 14,  // the hub removed a placed workflow from this site
  kApprovalRequested = 15,  // an approval gate is waiting (state awaiting_approval)
  kApprovalDecided = 16,    // approved or rejected (message: decision and author) or timed out
  kTaskExpanded = 17,       // a for_each task created its instances (message: how many)
  kCompensationStarted = 18,  // the run failed; its compensations start (message: which)
  kScheduleFired = 19,      // a schedule tick started a run (message: tick time, catch-up)
  kScheduleSkipped = 20,    // a schedule tick started no run (message: why)
  kOutputTrimmed = 21,      // retention removed finished runs' output (message: how much)
  kPolicyApplied = 22,      // the site adopted a fleet policy (message: fleet, version, source)
  kArtifactCached = 23,     // an artifact is verified in the site's cache (message: digest;
                            // workflow: its name; output: size in bytes as text)
  kArtifactEvicted = 24,    // the cache dropped an artifact no workflow needs (message: digest)
  kBundleImported = 25,     // a bundle volume was imported (message: what it applied)
  kSiteHealth = 26,         // the site's health summary (params: field -> decimal number;
                            // docs/operations.md, "Monitoring")
};

const char* EventTypeName(EventType t);

struct Event {
  TimeMs time = 0;
  uint8_t type = 0;
  std::string run;
  std::string task;
  int32_t attempt = 0;
  std::string state;     // new state for *Finished events
  int32_t exit_code = -1;
  int32_t signal = 0;
  std::string message;   // human-readable detail (reason, error)
  std::string output;    // output tail for kAttemptFinished
  std::string workflow;  // for kRunCreated
  // kRunCreated: the resolved params, the task ids in definition order, and the hub's
  // request id when the hub asked for the run (empty for local runs).
  std::map<std::string, std::string> params;
  std::vector<std::string> tasks;
  std::string request;
  MSGPACK_DEFINE_MAP(time, type, run, task, attempt, state, exit_code, signal, message, output,
                     workflow, params, tasks, request);
};

// Decodes an event straight from its bytes (MsgReader: no msgpack-c object tree, no
// allocation but the event's own strings), with msgpack-c's rules: a key that is not a
// string or a value of the wrong type is an error, unknown keys are skipped, of a key
// given twice the first counts. tests/common/codec_test.cpp holds it to msgpack-c's own
// map decoding. Chosen over the template for every Decode(bytes, &event); encoding is
// MSGPACK_DEFINE_MAP's.
Status Decode(std::string_view bytes, Event* out, const DecodeLimits& limits = {});

}  // namespace outpost
