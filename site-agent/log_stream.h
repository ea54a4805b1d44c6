// EventLogStream: a site's event log as the upstream stream of a SyncSession — read from
// it, and trim it as the hub acknowledges. Shared by the agent daemon and the simulator.
#pragma once

#include "common/faults.h"
#include "common/protocol/event_log.h"
#include "common/protocol/sync_session.h"

namespace outpost {

class EventLogStream : public OutgoingStream {
 public:
  explicit EventLogStream(EventLog* log, const Faults& faults = Faults::None())
      : log_(log), faults_(faults) {}
  uint64_t head() const override { return log_->head(); }
  uint64_t acked() const override { return log_->acked(); }
  Result<std::vector<LogRecord>> Read(uint64_t after, size_t max_count,
                                      size_t max_bytes) const override {
    auto got = log_->ReadAfter(after, max_count, max_bytes);
    if (faults_.trim_on_send && got.ok() && !got->empty()) {
      // The planted bug (common/faults.h): trimmed once sent, not once acknowledged.
      log_->AckAndTrim(got->back().seq).IgnoreError();
    }
    return got;
  }
  Status Acknowledge(uint64_t seq) override { return log_->AckAndTrim(seq); }

 private:
  EventLog* log_;
  Faults faults_;
};

}  // namespace outpost
