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
#include <numeric>
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
  // Several hubs over one store: a write refused because another process changed the
  // site's record or one of the runs is tried again over what is stored now, unless the
  // site's watermark moved (another process applied these events: this session is over).
  Status ApplyDurably(uint64_t first_seq, const std::vector<std::string>& entries) {
    for (int attempt = 0;; ++attempt) {
      Status s = ApplyOnce(first_seq, entries);
      if (s.code() != Code::kAborted || attempt == 3) return s;
      const SiteRecord held = hub_->sites_.at(site_);
      auto fresh = hub_->store_->GetSite(site_);
      if (!fresh.ok()) return fresh.status();
      if (!*fresh || (*fresh)->incarnation != held.incarnation ||
          (*fresh)->up_applied != held.up_applied) {
        spdlog::warn("hub.session_taken_over site={} first_seq={}", site_, first_seq);
        hub_->sessions_lost_.insert(site_);
        return s;
      }
      hub_->KeepStored(std::move(**fresh));
    }
  }

 private:
  Status ApplyOnce(uint64_t first_seq, const std::vector<std::string>& entries) {
    SiteRecord copy = hub_->sites_.at(site_);
    HubStore::Txn txn;
    std::map<std::string, HotRun> runs;
    DecodeLimits limits;
    limits.max_depth = 4;
    for (size_t i = 0; i < entries.size(); ++i) {
      const uint64_t seq = first_seq + i;
      txn.PutUpBorrowed(site_, copy.incarnation, seq, entries[i]);  // committed below
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
    const bool rows = hub_->store_->stores_task_rows();
    for (auto& [id, hot] : runs) {
      // A batch that changed the tasks of at most half of a run's rows (kTaskChunk tasks
      // each) writes only those rows, on stores that keep tasks in rows; the first such
      // write after the run was read or written whole writes every row. A batch that
      // changed more, and a run of one row, write the run whole.
      std::vector<uint32_t>& rows_changed = hot.changed;  // task positions, then rows
      for (uint32_t& i : rows_changed) i /= HubTxn::kTaskChunk;
      std::sort(rows_changed.begin(), rows_changed.end());
      rows_changed.erase(std::unique(rows_changed.begin(), rows_changed.end()),
                         rows_changed.end());
      const size_t total_rows =
          (hot.run.tasks.size() + HubTxn::kTaskChunk - 1) / HubTxn::kTaskChunk;
      if (rows && total_rows > 1 && 2 * rows_changed.size() <= total_rows) {
        if (!hot.rows_stored) {
          rows_changed.resize(total_rows);
          std::iota(rows_changed.begin(), rows_changed.end(), 0u);
        }
        txn.PutRunRows(hot.run, rows_changed);
        hot.rows_stored = true;  // once committed
      } else {
        txn.PutRun(hot.run);
        hot.rows_stored = false;
      }
      // Decoded, a task costs its strings, its index entry and the record: its strings
      // (a message from the site may be long) and ~256 bytes more. The run's own fields
      // are counted by their encoding, twice.
      hot.bytes = 2 * txn.ops().back().value.size();
      for (const HubTask& t : hot.run.tasks) {
        hot.bytes += 256 + t.id.size() + t.state.size() + t.message.size();
      }
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
    if (hub_->faults_.apply_without_cas) txn.set_unchecked();  // planted bug (common/faults.h)
    // Group commit: on disk at the next HubCore::Flush, which the ACK waits for.
    if (hub_->group_commit()) txn.set_sync_deferred();
    Status s = hub_->CommitTxn(txn);
    if (s.code() == Code::kAborted) {
      // Another hub process wrote the site or a run since: counted as a conflict (CommitTxn)
      // and tried again by ApplyDurably.
      spdlog::info("hub.apply_conflict site={} first_seq={} error=\"{}\"", site_, first_seq,
                   s.message());
      return s;
    }
    if (!s.ok()) {
      ++hub_->counters_.store_errors;
      spdlog::error("hub.apply_failed site={} first_seq={} error=\"{}\"", site_, first_seq,
                    s.ToString());
      return s;
    }
    hub_->sites_[site_] = std::move(copy);
    if (txn.sync_deferred()) ++hub_->unsynced_batches_;
    hub_->counters_.events_applied += entries.size();
    hub_->run_counts_ = std::move(counts);
    hub_->counters_.retention_quota_bytes += over_quota;
    for (auto& [id, hot] : runs) {
      hot.existed = true;
      hot.state_before = hot.run.state;
      hot.changed.clear();
      hub_->run_cache_.Put(std::move(hot));
    }
    return Status::Ok();
  }

 public:
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
    OUTPOST_RETURN_IF_ERROR(hub_->CommitTxn(txn));
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
  uint64_t head() const override {
    hub_->FreshenDownHead(site_);  // several hubs: the store numbers commands
    return hub_->sites_.at(site_).down_head;
  }
  uint64_t acked() const override { return hub_->sites_.at(site_).down_acked; }
  Result<std::vector<LogRecord>> Read(uint64_t after, size_t max_count,
                                      size_t max_bytes) const override {
    // Never past the head this session declares: with several hubs the store may already
    // hold commands another process appended that this one has not counted yet.
    const SiteRecord& s = hub_->sites_.at(site_);
    const uint64_t from = std::max(after, s.down_acked);
    if (s.down_head <= from) return std::vector<LogRecord>{};
    const size_t room = static_cast<size_t>(std::min<uint64_t>(max_count, s.down_head - from));
    return hub_->store_->ReadDown(site_, s.down_epoch, from, room, max_bytes);
  }
  Status Acknowledge(uint64_t seq) override {
    for (int attempt = 0;; ++attempt) {
      SiteRecord copy = hub_->sites_.at(site_);
      if (seq <= copy.down_acked) return Status::Ok();
      copy.down_acked = seq;
      HubStore::Txn txn;
      txn.PutSite(copy);
      txn.TrimDown(site_, copy.down_epoch, seq);
      Status s = hub_->CommitTxn(txn);
      if (s.ok()) {
        hub_->sites_[site_] = std::move(copy);
        return s;
      }
      // Another hub process enqueued a command since: acknowledged over what is stored.
      if (s.code() != Code::kAborted || attempt == 3) return s;
      auto fresh = hub_->store_->GetSite(site_);
      if (!fresh.ok()) return fresh.status();
      if (!*fresh || (*fresh)->down_epoch != copy.down_epoch) return s;
      hub_->KeepStored(std::move(**fresh));
    }
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
