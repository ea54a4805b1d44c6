// AgentStore: the site agent's view of its EventLog — turns the engine's Effects into
// one synced WriteBatch, loads unfinished runs at start, and answers queries.
//
// Thread-safety: one owner thread (the agent loop).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/faults.h"
#include "common/protocol/event_log.h"
#include "site-agent/engine.h"
#include "site-agent/run_state.h"

namespace outpost {

struct RunView {
  RunRecord run;
  std::vector<TaskRecord> tasks;  // in definition order
};

class AgentStore {
 public:
  explicit AgentStore(std::unique_ptr<EventLog> log, const Faults& faults = Faults::None())
      : log_(std::move(log)), faults_(faults) {}

  // Appends fx's events and the engine's current records for fx's dirty runs/tasks, and
  // the output tail of every finished attempt, and `extra` (the inbox watermark and
  // placed workflows when a hub command is applied), in one synced write.
  Status Commit(const Effects& fx, const Engine& engine, const std::vector<StateWrite>& extra = {});

  // Unfinished runs with their tasks, for Engine::Restore after a restart.
  Result<std::vector<RunView>> LoadUnfinished() const;

  Result<std::optional<RunView>> GetRun(const std::string& run_id) const;
  // The newest `limit` runs (run ids sort by creation time), newest last.
  Result<std::vector<RunRecord>> ListRuns(size_t limit) const;
  // Output tail of an attempt; attempt 0 means the last attempt.
  Result<std::optional<std::string>> GetOutput(const std::string& run, const std::string& task,
                                               int attempt) const;

  // The planted bugs of the simulator's mutation check (none in the agent).
  const Faults& faults() const { return faults_; }
  EventLog& log() { return *log_; }
  const EventLog& log() const { return *log_; }

 private:
  std::unique_ptr<EventLog> log_;
  Faults faults_;
};

}  // namespace outpost
