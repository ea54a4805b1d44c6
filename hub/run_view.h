// The run view: how the hub folds the events of a site's log into its picture of that
// site's runs and tasks (HubRun), and how a run is shown to operators.
//
// The fold is a pure function of (the run as stored, one event): the hub applies it to
// every event of an upstream batch, in order, in the same transaction that stores the
// events and advances the watermark, so the view is exactly the log's effect. Events that
// change nothing visible (schedule skips, placement acks) leave the run as it was.
// docs/protocol.md ("The run view") describes the same rules for other implementations.
//
// Thread-safety: free functions, no state.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/protocol/event.h"
#include "hub/hub_store.h"

namespace outpost {

// True for the states a run never leaves.
bool FinalRunState(const std::string& state);

// Applies event `e` (for run r.id) to `r`; output tails go to txn. `task_index`, if given,
// maps task ids to their positions in run->tasks and is kept up to date (it is rebuilt
// when it does not cover the run's tasks); without it a task is found by a search.
// `touched`, if given, gets the position of every task the event changed or added.
void FoldEvent(const Event& e, HubRun* run, HubTxn* txn,
               std::unordered_map<std::string, uint32_t>* task_index = nullptr,
               std::vector<uint32_t>* touched = nullptr);

// What a site's event says about the site itself, folded into its record: a placement it
// refused leaves `placed` for `refused` (with why) until it places that workflow (and a
// placement of `current`, the hub's definition of that workflow now, is `placed` again);
// a policy it applied or refused is its `policy_status`; every refusal is counted.
void NoteSiteEvent(const Event& e, SiteRecord* site, const WorkflowRecord* current = nullptr);

// A site's health summary (EventType::kSiteHealth) keeps at most this many fields, each
// named [a-z_][a-z0-9_]* (at most 48 characters): they become metric names at the hub.
inline constexpr size_t kMaxHealthFields = 32;
bool ValidHealthField(const std::string& name);

// The operator API's JSON for a run, tasks included.
nlohmann::json RunJson(const HubRun& r);
// The same without its tasks (run.list's rows: a page of runs does not build their tasks).
nlohmann::json RunSummaryJson(const HubRun& r);
// An optional time as JSON: RFC 3339 text, or null when never set.
nlohmann::json TimeJson(TimeMs t);

}  // namespace outpost
