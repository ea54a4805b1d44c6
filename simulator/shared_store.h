// One HubStore shared by several simulated hub processes (docs/simulator.md, "Several
// hubs"): each HubCore gets a SharedStoreView over the same RocksHubStore (opened with
// check_revisions, so writes are compared and set as PostgreSQL does), and each view
// hears of the others' commits as a hub process hears PostgreSQL's notifications.
//
// Thread-safety: the simulator's one thread.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "hub/hub_store.h"

namespace outpost::sim {

class SharedStoreView final : public HubStore {
 public:
  // `peers` holds every view over `base`, this one included (filled by the caller).
  SharedStoreView(HubStore* base, std::vector<SharedStoreView*>* peers)
      : base_(base), peers_(peers) {}

  Status Commit(const Txn& txn) override {
    OUTPOST_RETURN_IF_ERROR(base_->Commit(txn));
    std::set<std::string> notes;
    for (const auto& op : txn.ops()) {
      using K = HubTxn::Kind;
      if (op.kind == K::kPutSite || op.kind == K::kDeleteSite) notes.insert("site/" + op.key);
      if (op.kind == K::kPutDef || op.kind == K::kDeleteDef) notes.insert("defs");
      if (op.kind == K::kPutSetting && op.key == "policy") notes.insert("policy");
      if (op.kind == K::kPutArtifact) notes.insert("artifacts");
    }
    for (SharedStoreView* p : *peers_) {
      if (p != this) p->heard_.insert(p->heard_.end(), notes.begin(), notes.end());
    }
    return Status::Ok();
  }
  bool write_failed() const override { return base_->write_failed(); }
  bool shared() const override { return true; }
  Status TakeChanges(std::vector<std::string>* out) override {
    out->insert(out->end(), heard_.begin(), heard_.end());
    heard_.clear();
    return Status::Ok();
  }
  Result<std::optional<SiteRecord>> GetSite(const std::string& name) const override {
    return base_->GetSite(name);
  }
  Status LoadSites(std::vector<SiteRecord>* out) const override { return base_->LoadSites(out); }
  Status LoadDefs(std::vector<WorkflowRecord>* out) const override { return base_->LoadDefs(out); }
  Result<std::optional<HubRun>> GetRun(const std::string& id) const override {
    return base_->GetRun(id);
  }
  Status ScanRuns(const std::function<bool(const HubRun&)>& fn) const override {
    return base_->ScanRuns(fn);
  }
  Status ScanRunsNewestFirst(const std::string& after,
                             const std::function<bool(const HubRun&)>& fn) const override {
    return base_->ScanRunsNewestFirst(after, fn);
  }
  Status ScanSiteRunsNewestFirst(const std::string& site, const std::string& after,
                                 const std::function<bool(const HubRun&)>& fn) const override {
    return base_->ScanSiteRunsNewestFirst(site, after, fn);
  }
  Result<std::optional<std::string>> GetOutput(const std::string& run,
                                               const std::string& task) const override {
    return base_->GetOutput(run, task);
  }
  Result<std::optional<RequestRecord>> GetRequest(const std::string& id) const override {
    return base_->GetRequest(id);
  }
  Result<std::optional<std::string>> GetSetting(const std::string& key) const override {
    return base_->GetSetting(key);
  }
  Status ScanSettings(const std::string& prefix,
                      const std::function<void(const std::string&, const std::string&)>& fn)
      const override {
    return base_->ScanSettings(prefix, fn);
  }
  Result<std::optional<std::string>> GetChunk(const std::string& digest) const override {
    return base_->GetChunk(digest);
  }
  Status LoadArtifacts(std::vector<ArtifactRecord>* out) const override {
    return base_->LoadArtifacts(out);
  }
  Result<std::vector<LogRecord>> ReadDown(const std::string& site, uint64_t epoch, uint64_t after,
                                          size_t max_count, size_t max_bytes) const override {
    return base_->ReadDown(site, epoch, after, max_count, max_bytes);
  }
  Result<std::vector<LogRecord>> ReadUp(const std::string& site, uint64_t incarnation,
                                        uint64_t after, size_t max_count) const override {
    return base_->ReadUp(site, incarnation, after, max_count);
  }
  Status ReadAudit(size_t limit, std::vector<std::string>* out) const override {
    return base_->ReadAudit(limit, out);
  }
  uint64_t audit_head() const override { return base_->audit_head(); }
  uint64_t ApproximateSize() const override { return base_->ApproximateSize(); }

 private:
  HubStore* base_;
  std::vector<SharedStoreView*>* peers_;
  std::vector<std::string> heard_;
};

}  // namespace outpost::sim
