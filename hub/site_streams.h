// Internal to HubCore (included by its .cpp files only): the two streams of one site,
// backed by the hub store, and the live session (Conn) that runs them.
//
// Upstream applies a batch of the site's events: it stores them in the hub's copy of the
// site's log, folds them into the run view and advances the watermark in one Txn; the
// SyncSession acknowledges only after Commit returned. Downstream serves the site's
// command log from the store and trims what the site acknowledged.
//
// Thread-safety: the hub's one driver thread.
#pragma once

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hub/hub_core.h"
#include "hub/run_view.h"

namespace outpost {

class HubCore::Upstream : public IncomingStream {
 public:
  Upstream(HubCore* hub, std::string site) : hub_(hub), site_(std::move(site)) {}
  uint64_t applied() const override { return hub_->sites_.at(site_).up_applied; }
  Status Apply(uint64_t first_seq, const std::vector<std::string>& entries) override {
    if (hub_->faults_.ack_before_durable) {
      // The mutation the simulator must catch: the watermark moves (and the ACK goes
      // out) before anything is on disk.
      hub_->sites_[site_].up_applied = first_seq + entries.size() - 1;
      if (hub_->deferred_.empty()) hub_->deferred_since_ = hub_->clock_.Now();
      hub_->deferred_.push_back({site_, {first_seq, entries}});
      return Status::Ok();
    }
    return ApplyDurably(first_seq, entries);
  }
  Status ApplyDurably(uint64_t first_seq, const std::vector<std::string>& entries) {
    SiteRecord copy = hub_->sites_.at(site_);
    HubStore::Txn txn;
    std::map<std::string, HotRun> runs;
    DecodeLimits limits;
    limits.max_depth = 4;
    for (size_t i = 0; i < entries.size(); ++i) {
      const uint64_t seq = first_seq + i;
      txn.PutUp(site_, copy.incarnation, seq, entries[i]);
      Event e;
      Status s = Decode(entries[i], &e, limits);
      if (!s.ok()) {
        // Kept raw in the copy of the log (nothing is lost), left out of the view.
        ++hub_->counters_.events_undecodable;
        spdlog::warn("hub.event_undecodable site={} seq={} error=\"{}\"", site_, seq, s.message());
        continue;
      }
      if (Status m = hub_->MaterializeEvent(site_, seq, e, &runs, &txn); !m.ok()) {
        ++hub_->counters_.store_errors;
        spdlog::error("hub.apply_failed site={} first_seq={} error=\"{}\"", site_, first_seq,
                      m.ToString());
        return m;
      }
      NoteSiteEvent(e, &copy, hub_->workflow(e.workflow));
    }
    std::map<std::string, int64_t> delta;
    for (auto& [id, hot] : runs) {
      txn.PutRun(hot.run);
      // Decoded, a task costs its strings, its index entry and the record: ~256 bytes.
      hot.bytes = 2 * txn.ops().back().value.size() + 256 * hot.run.tasks.size();
      if (!hot.existed) {
        ++delta[hot.run.state];
      } else if (hot.state_before != hot.run.state) {
        --delta[hot.state_before];
        ++delta[hot.run.state];
      }
    }
    std::map<std::string, uint64_t> counts = hub_->CountRuns(delta, &txn);
    copy.up_applied = first_seq + entries.size() - 1;
    copy.up_head = std::max(copy.up_head, copy.up_applied);
    copy.events_total += entries.size();
    copy.last_seen = hub_->clock_.Now();
    hub_->NoteUpBatch(&copy, copy.up_applied, entries);
    const uint64_t over_quota = hub_->TrimToQuota(&copy, &txn);
    txn.PutSite(copy);
    Status s = hub_->store_->Commit(txn);
    if (!s.ok()) {
      ++hub_->counters_.store_errors;
      spdlog::error("hub.apply_failed site={} first_seq={} error=\"{}\"", site_, first_seq,
                    s.ToString());
      return s;
    }
    hub_->sites_[site_] = std::move(copy);
    hub_->counters_.events_applied += entries.size();
    hub_->run_counts_ = std::move(counts);
    hub_->counters_.retention_quota_bytes += over_quota;
    for (auto& [id, hot] : runs) {
      hot.existed = true;
      hot.state_before = hot.run.state;
      hub_->run_cache_.Put(std::move(hot));
    }
    return Status::Ok();
  }
  Status SkipTrimmed(uint64_t through) override {
    SiteRecord copy = hub_->sites_.at(site_);
    if (through <= copy.up_applied) return Status::Ok();
    const uint64_t from = copy.up_applied + 1, lost = through - copy.up_applied;
    HubStore::Txn txn;
    hub_->Audit(&txn, {{"event", "site.events_lost_in_restore"},
                       {"site", site_},
                       {"from", from},
                       {"to", through}});
    copy.up_applied = through;
    copy.up_head = std::max(copy.up_head, through);
    txn.PutSite(copy);
    OUTPOST_RETURN_IF_ERROR(hub_->store_->Commit(txn));
    spdlog::warn("hub.events_lost_in_restore site={} from={} to={}", site_, from, through);
    hub_->sites_[site_] = std::move(copy);
    hub_->counters_.events_lost_in_restore += lost;
    return Status::Ok();
  }

 private:
  HubCore* hub_;
  std::string site_;
};

class HubCore::Downstream : public OutgoingStream {
 public:
  Downstream(HubCore* hub, std::string site) : hub_(hub), site_(std::move(site)) {}
  uint64_t head() const override { return hub_->sites_.at(site_).down_head; }
  uint64_t acked() const override { return hub_->sites_.at(site_).down_acked; }
  Result<std::vector<LogRecord>> Read(uint64_t after, size_t max_count,
                                      size_t max_bytes) const override {
    const SiteRecord& s = hub_->sites_.at(site_);
    return hub_->store_->ReadDown(site_, s.down_epoch, std::max(after, s.down_acked), max_count,
                                  max_bytes);
  }
  Status Acknowledge(uint64_t seq) override {
    SiteRecord copy = hub_->sites_.at(site_);
    if (seq <= copy.down_acked) return Status::Ok();
    copy.down_acked = seq;
    HubStore::Txn txn;
    txn.PutSite(copy);
    txn.TrimDown(site_, copy.down_epoch, seq);
    OUTPOST_RETURN_IF_ERROR(hub_->store_->Commit(txn));
    hub_->sites_[site_] = std::move(copy);
    return Status::Ok();
  }

 private:
  HubCore* hub_;
  std::string site_;
};

struct HubCore::Conn {
  std::string peer;
  std::unique_ptr<Upstream> up;
  std::unique_ptr<Downstream> down;
  std::unique_ptr<SyncSession> session;
};

}  // namespace outpost
