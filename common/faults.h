// Faults: the one seam for planted bugs — the simulator's mutation check
// (`outpost-sim --mutate NAME`, docs/simulator.md) switches them on at run time to prove
// that its invariants catch a broken guarantee. The daemons never set any: they pass
// Faults::None(), and every fault point reads `faults.NAME` where the bug would be.
//
// Adding one: a field here, a row in Faults::Table (faults.cpp), the fault point in the
// code, a row in docs/simulator.md, and a ctest that expects the simulator to catch it.
//
// Thread-safety: a plain value, copied into each core that has fault points.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace outpost {

struct Faults {
  // --- the sync protocol
  // Hub: acknowledge upstream batches at once and write them a second later.
  bool ack_before_durable = false;
  // Hub: start with every upstream watermark at 0 (the store's are ignored).
  bool forget_watermark = false;
  // Sync session: apply a batch that starts past the watermark as if it were next.
  bool apply_gaps = false;
  // Sync session (site): acknowledge a batch of commands even when applying it failed.
  bool ack_failed_apply = false;
  // Hub: apply a return bundle's events from its first entry, ignoring the watermark.
  bool bundle_replay = false;
  // --- the stores
  // Hub store: writes are not synced.
  bool hub_store_unsynced = false;
  // Site event log: writes are not synced.
  bool site_log_unsynced = false;
  // Site store: a commit writes its state (runs, tasks, the inbox watermark) and its
  // events in two batches instead of one.
  bool split_commit = false;
  // --- the hub
  // Hub: a HELLO from a new incarnation continues the old one's streams.
  bool ignore_incarnation = false;
  // Hub: a retried request id is not looked up; it makes new runs.
  bool forget_requests = false;
  // Hub run view: run.finished events are not folded in.
  bool run_view_drops_run_end = false;
  // --- the site
  // Site: the event log is trimmed as batches are sent, not as the hub acknowledges them.
  bool trim_on_send = false;
  // Engine: a task gets one attempt more than its retry policy allows.
  bool extra_retry = false;
  // Engine: attempts found running after a crash are recorded as succeeded.
  bool restore_as_succeeded = false;
  // Engine: a failed upstream counts as succeeded for trigger rules.
  bool failed_counts_as_success = false;
  // Scheduler: a fired tick does not advance the stored schedule state.
  bool schedule_forgets_fired = false;
  // Hub restored from a backup: the site's command watermark is adopted without moving
  // the commands enqueued since the restore after it, so the site takes them for ones
  // it already applied.
  bool restore_reuses_commands = false;
  // Several hubs over one store: a hub applies a site's batch over the record it holds
  // without the compare-and-set (and without reading it again at HELLO), so two hubs can
  // both apply the same events.
  bool apply_without_cas = false;

  static const Faults& None();
  // One fault by name (see Names()); "none" for none.
  static Result<Faults> Parse(const std::string& name);
  static const std::vector<std::string>& Names();
};

}  // namespace outpost
