#include "common/protocol/event.h"

#include <algorithm>
#include <iterator>
#include <limits>
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

namespace {

using MsgType = MsgReader::Type;

template <typename T>
bool ReadInt(const MsgReader::Value& v, T* out) {
  // msgpack-c's integer conversion: either sign, within T's range; nothing else.
  if (v.type == MsgType::kPositive) {
    if (v.u > static_cast<uint64_t>(std::numeric_limits<T>::max())) return false;
    *out = static_cast<T>(v.u);
    return true;
  }
  if (v.type == MsgType::kNegative && std::numeric_limits<T>::is_signed) {
    if (v.i < static_cast<int64_t>(std::numeric_limits<T>::min())) return false;
    *out = static_cast<T>(v.i);
    return true;
  }
  return false;
}

bool ReadString(const MsgReader::Value& v, std::string* out) {
  if (v.type != MsgType::kStr && v.type != MsgType::kBin) return false;
  out->assign(v.raw);
  return true;
}

// Reads field k's value whole. False: the bytes are not valid msgpack (r->error() says
// why). *fits: whether the value has the field's type (msgpack-c would throw
// type_error); a value that does not fit is read past all the same, so that bad msgpack
// after it is still what is reported, as msgpack-c parses everything before converting.
bool ReadEventField(size_t k, MsgReader* r, Event* e, bool* fits) {
  MsgReader::Value v;
  if (!r->Read(&v, 1)) return false;
  bool ok = false;
  switch (k) {
    case 0: ok = ReadInt(v, &e->time); break;
    case 1: ok = ReadInt(v, &e->type); break;
    case 2: ok = ReadString(v, &e->run); break;
    case 3: ok = ReadString(v, &e->task); break;
    case 4: ok = ReadInt(v, &e->attempt); break;
    case 5: ok = ReadString(v, &e->state); break;
    case 6: ok = ReadInt(v, &e->exit_code); break;
    case 7: ok = ReadInt(v, &e->signal); break;
    case 8: ok = ReadString(v, &e->message); break;
    case 9: ok = ReadString(v, &e->output); break;
    case 10: ok = ReadString(v, &e->workflow); break;
    case 13: ok = ReadString(v, &e->request); break;
    case 11:
      if (v.type == MsgType::kMap) {
        // As msgpack-c's std::map: strings to strings; a key given twice keeps its last value.
        ok = true;
        std::map<std::string, std::string> params;
        for (uint32_t i = 0; i < v.count; ++i) {
          MsgReader::Value key, val;
          if (!r->Read(&key, 2) || !r->SkipElements(key, 2)) return false;
          if (!r->Read(&val, 2) || !r->SkipElements(val, 2)) return false;
          std::string name;
          ok = ok && ReadString(key, &name) && ReadString(val, &params[std::move(name)]);
        }
        if (ok) e->params = std::move(params);
        *fits = ok;
        return true;
      }
      break;
    case 12:
      if (v.type == MsgType::kArray) {
        ok = true;
        std::vector<std::string> tasks;
        tasks.reserve(std::min<size_t>(v.count, r->left()));
        for (uint32_t i = 0; i < v.count; ++i) {
          MsgReader::Value item;
          if (!r->Read(&item, 2) || !r->SkipElements(item, 2)) return false;
          ok = ok && ReadString(item, &tasks.emplace_back());
        }
        if (ok) e->tasks = std::move(tasks);
        *fits = ok;
        return true;
      }
      break;
  }
  *fits = ok;
  return r->SkipElements(v, 1);  // a container where a scalar belongs: read past it
}

}  // namespace

Status Decode(std::string_view bytes, Event* out, const DecodeLimits& limits) {
  // The keys in MSGPACK_DEFINE_MAP's order (Event's encoding).
  static constexpr std::string_view kKeys[] = {"time",    "type",    "run",      "task",
                                               "attempt", "state",   "exit_code", "signal",
                                               "message", "output",  "workflow", "params",
                                               "tasks",   "request"};
  if (bytes.size() > limits.max_bytes) {
    return Status::ResourceExhausted("message of " + std::to_string(bytes.size()) +
                                     " bytes exceeds the limit of " +
                                     std::to_string(limits.max_bytes));
  }
  if (bytes.empty()) return Status::Corruption("empty message");
  MsgReader r(bytes, limits);
  auto bad = [&r] { return Status::Corruption(r.error()); };
  MsgReader::Value top;
  bool fits = true;
  if (!r.Read(&top, 0)) return bad();
  if (top.type != MsgType::kMap) {
    fits = false;
    if (!r.SkipElements(top, 0)) return bad();
  } else {
    uint32_t seen = 0;
    size_t next = 0;  // events are written in kKeys' order: try the key after the last first
    for (uint32_t i = 0; i < top.count; ++i) {
      MsgReader::Value key;
      if (!r.Read(&key, 1) || !r.SkipElements(key, 1)) return bad();
      size_t k = std::size(kKeys);
      if (key.type != MsgType::kStr) {
        fits = false;  // keys are strings
      } else if (next < std::size(kKeys) && kKeys[next] == key.raw) {
        k = next;
      } else {
        k = 0;
        while (k < std::size(kKeys) && kKeys[k] != key.raw) ++k;
      }
      next = k + 1;
      if (k == std::size(kKeys) || (seen & (1u << k))) {
        if (!r.Skip(1)) return bad();  // unknown, or given before: the first counts
        continue;
      }
      seen |= 1u << k;
      bool field_fits = true;
      if (!ReadEventField(k, &r, out, &field_fits)) return bad();
      fits = fits && field_fits;
    }
  }
  if (!r.AtEnd()) {
    return Status::Corruption("msgpack: " + std::to_string(r.left()) + " trailing bytes");
  }
  if (!fits) {
    return Status::Corruption(
        "a field has the wrong msgpack type (see docs/protocol.md for each field's type)");
  }
  return Status::Ok();
}

}  // namespace outpost
