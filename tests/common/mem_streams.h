// In-memory OutgoingStream / IncomingStream for sync session tests: a log that trims on
// acknowledge, and an applied list with a watermark. Apply can be made to fail.
#pragma once

#include <string>
#include <vector>

#include "common/protocol/sync_session.h"

namespace outpost::testing {

class MemOutgoing : public OutgoingStream {
 public:
  void Append(const std::string& e) { all_.push_back(e); }
  uint64_t head() const override { return all_.size(); }
  uint64_t acked() const override { return acked_; }
  Result<std::vector<LogRecord>> Read(uint64_t after, size_t max_count,
                                      size_t max_bytes) const override {
    std::vector<LogRecord> out;
    size_t bytes = 0;
    if (after < acked_) after = acked_;  // trimmed
    for (uint64_t s = after + 1; s <= all_.size() && out.size() < max_count; ++s) {
      const std::string& e = all_[s - 1];
      if (!out.empty() && bytes + e.size() > max_bytes) break;
      bytes += e.size();
      out.push_back({s, e});
    }
    return out;
  }
  Status Acknowledge(uint64_t seq) override {
    if (fail_acks_ > 0) {
      --fail_acks_;
      return Status::IoError("injected: the acknowledgement's write failed");
    }
    if (seq > all_.size()) return Status::InvalidArgument("ack beyond head");
    if (seq > acked_) acked_ = seq;
    return Status::Ok();
  }
  const std::vector<std::string>& all() const { return all_; }
  void fail_next_acks(int n) { fail_acks_ = n; }

 private:
  std::vector<std::string> all_;
  uint64_t acked_ = 0;
  int fail_acks_ = 0;
};

class MemIncoming : public IncomingStream {
 public:
  uint64_t applied() const override { return applied_.size(); }
  Status Apply(uint64_t first_seq, const std::vector<std::string>& entries) override {
    if (fail_) return Status::ResourceExhausted("injected: disk full");
    if (first_seq != applied_.size() + 1) return Status::Internal("apply out of order");
    for (const auto& e : entries) applied_.push_back(e);
    return Status::Ok();
  }
  uint64_t hub_epoch() const override { return hub_epoch_; }
  Status SetHubEpoch(uint64_t epoch) override {
    hub_epoch_ = epoch;
    return Status::Ok();
  }
  const std::vector<std::string>& applied_entries() const { return applied_; }
  void set_fail(bool f) { fail_ = f; }

 private:
  std::vector<std::string> applied_;
  uint64_t hub_epoch_ = 0;
  bool fail_ = false;
};

}  // namespace outpost::testing
