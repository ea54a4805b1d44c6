// The store-independent part of HubStore: names and the transaction's logical operations.
#include "hub/hub_store.h"

namespace outpost {

const char* SiteStateName(SiteState s) {
  switch (s) {
    case SiteState::kPending: return "pending";
    case SiteState::kEnrolled: return "enrolled";
    case SiteState::kRevoked: return "revoked";
  }
  return "unknown";
}

void HubTxn::PutSite(const SiteRecord& s) { ops_.push_back({Kind::kPutSite, s.name, {}, 0, 0, Encode(s)}); }
void HubTxn::DeleteSite(const std::string& name) {
  ops_.push_back({Kind::kDeleteSite, name, {}, 0, 0, {}});
}
void HubTxn::PutUp(const std::string& site, uint64_t inc, uint64_t seq, const std::string& v) {
  ops_.push_back({Kind::kPutUp, site, {}, inc, seq, v});
}
void HubTxn::PutDown(const std::string& site, uint64_t epoch, uint64_t seq, const std::string& v) {
  ops_.push_back({Kind::kPutDown, site, {}, epoch, seq, v});
}
void HubTxn::TrimDown(const std::string& site, uint64_t epoch, uint64_t through) {
  ops_.push_back({Kind::kTrimDown, site, {}, epoch, through, {}});
}
void HubTxn::PutRun(const HubRun& r) { ops_.push_back({Kind::kPutRun, r.id, {}, 0, 0, Encode(r)}); }
void HubTxn::PutOutput(const std::string& run, const std::string& task, const std::string& out) {
  ops_.push_back({Kind::kPutOutput, run, task, 0, 0, out});
}
void HubTxn::DeleteRun(const std::string& run) {
  ops_.push_back({Kind::kDeleteRun, run, {}, 0, 0, {}});
}
void HubTxn::PurgeSiteStreams(const std::string& site) {
  ops_.push_back({Kind::kPurgeSiteStreams, site, {}, 0, 0, {}});
}
void HubTxn::PutDef(const WorkflowRecord& d) { ops_.push_back({Kind::kPutDef, d.name, {}, 0, 0, Encode(d)}); }
void HubTxn::DeleteDef(const std::string& name) {
  ops_.push_back({Kind::kDeleteDef, name, {}, 0, 0, {}});
}
void HubTxn::PutRequest(const RequestRecord& r) {
  ops_.push_back({Kind::kPutRequest, r.id, {}, 0, 0, Encode(r)});
}
void HubTxn::Audit(uint64_t seq, const std::string& json) {
  ops_.push_back({Kind::kAudit, {}, {}, 0, seq, json});
}
void HubTxn::PutSetting(const std::string& key, const std::string& value) {
  ops_.push_back({Kind::kPutSetting, key, {}, 0, 0, value});
}

}  // namespace outpost

namespace outpost {

void HubTxn::PutChunk(const std::string& digest, const std::string& bytes) {
  ops_.push_back({Kind::kPutChunk, digest, {}, 0, 0, bytes});
}

void HubTxn::PutArtifact(const ArtifactRecord& a) {
  ops_.push_back({Kind::kPutArtifact, a.digest, {}, 0, 0, Encode(a)});
}

Status HubStore::ScanSiteRunsNewestFirst(const std::string& site,
                                         const std::function<bool(const HubRun&)>& fn) const {
  std::vector<HubRun> runs;
  OUTPOST_RETURN_IF_ERROR(ScanRuns([&](const HubRun& r) {
    if (r.site == site) runs.push_back(r);
    return true;
  }));
  for (auto it = runs.rbegin(); it != runs.rend(); ++it) {
    if (!fn(*it)) break;
  }
  return Status::Ok();
}

}  // namespace outpost
