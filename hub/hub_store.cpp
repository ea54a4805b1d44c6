// The store-independent part of HubStore: names and the transaction's logical operations.
#include "hub/hub_store.h"

#include <algorithm>
#include <string_view>

namespace outpost {

const char* SiteStateName(SiteState s) {
  switch (s) {
    case SiteState::kPending: return "pending";
    case SiteState::kEnrolled: return "enrolled";
    case SiteState::kRevoked: return "revoked";
  }
  return "unknown";
}

void HubTxn::PutSite(SiteRecord& s) {
  const uint64_t expect = s.rev++;
  ops_.push_back({Kind::kPutSite, s.name, {}, 0, 0, Encode(s), expect, s.rev});
}
void HubTxn::PutSite(const SiteRecord& s) {
  ops_.push_back({Kind::kPutSite, s.name, {}, 0, 0, Encode(s), kAnyRev, s.rev});
}
void HubTxn::DeleteSite(const std::string& name) {
  ops_.push_back({Kind::kDeleteSite, name, {}, 0, 0, {}});
}
void HubTxn::PutUp(const std::string& site, uint64_t inc, uint64_t seq, const std::string& v) {
  ops_.push_back({Kind::kPutUp, site, {}, inc, seq, v});
}
void HubTxn::PutUpBorrowed(const std::string& site, uint64_t inc, uint64_t seq,
                           std::string_view v) {
  Op op{Kind::kPutUp, site, {}, inc, seq, {}};
  op.borrowed = v.data() ? v : std::string_view("", 0);
  ops_.push_back(std::move(op));
}
void HubTxn::PutDown(const std::string& site, uint64_t epoch, uint64_t seq, const std::string& v) {
  ops_.push_back({Kind::kPutDown, site, {}, epoch, seq, v});
}
void HubTxn::AppendDown(const std::string& site, uint64_t epoch, const std::string& v) {
  ops_.push_back({Kind::kAppendDown, site, {}, epoch, 0, v});
}
void HubTxn::TrimDown(const std::string& site, uint64_t epoch, uint64_t through) {
  ops_.push_back({Kind::kTrimDown, site, {}, epoch, through, {}});
}
// key2 carries the run's site and state ('\0' between), which PgHubStore keeps in columns
// of their own, so a store need not decode the record to index it.
void HubTxn::PutRun(HubRun& r) {
  const uint64_t expect = r.rev++;
  ops_.push_back({Kind::kPutRun, r.id, r.site + '\0' + r.state, 0, 0, Encode(r), expect, r.rev});
}
void HubTxn::PutRunRows(HubRun& r, const std::vector<uint32_t>& rows) {
  const uint64_t expect = r.rev++;
  std::vector<HubTask> tasks;
  tasks.swap(r.tasks);  // the run's own fields only, without copying it
  Op op{Kind::kPutRun, r.id, r.site + '\0' + r.state, 0, 0, Encode(r), expect, r.rev};
  tasks.swap(r.tasks);
  op.split = true;
  op.ntasks = static_cast<uint32_t>(r.tasks.size());
  for (uint32_t c : rows) {
    const size_t from = size_t{c} * kTaskChunk;
    if (from >= r.tasks.size()) continue;
    const size_t to = std::min(r.tasks.size(), from + kTaskChunk);
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_array(static_cast<uint32_t>(to - from));
    for (size_t i = from; i < to; ++i) pk.pack(r.tasks[i]);
    op.rows.emplace_back(c, std::string(buf.data(), buf.size()));
  }
  ops_.push_back(std::move(op));
}
void HubTxn::PutRun(const HubRun& r) {
  ops_.push_back({Kind::kPutRun, r.id, r.site + '\0' + r.state, 0, 0, Encode(r), kAnyRev, r.rev});
}
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
  ops_.push_back({Kind::kPutRequest, r.id, {}, 0, 0, Encode(r), 0});
}
void HubTxn::Audit(uint64_t seq, const std::string& json) {
  ops_.push_back({Kind::kAudit, {}, {}, 0, seq, json});
}
void HubTxn::TrimUp(const std::string& site, uint64_t incarnation, uint64_t through) {
  ops_.push_back({Kind::kTrimUp, site, {}, incarnation, std::min(through, kWholeStream), {}});
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

Result<std::optional<SiteRecord>> HubStore::GetSite(const std::string& name) const {
  std::vector<SiteRecord> all;
  OUTPOST_RETURN_IF_ERROR(LoadSites(&all));
  for (auto& s : all) {
    if (s.name == name) return std::optional<SiteRecord>(std::move(s));
  }
  return std::optional<SiteRecord>();
}

Status HubStore::ScanSiteRunsNewestFirst(const std::string& site, const std::string& after,
                                         const std::function<bool(const HubRun&)>& fn) const {
  std::vector<HubRun> runs;
  OUTPOST_RETURN_IF_ERROR(ScanRuns([&](const HubRun& r) {
    if (r.site == site && (after.empty() || r.id < after)) runs.push_back(r);
    return true;
  }));
  for (auto it = runs.rbegin(); it != runs.rend(); ++it) {
    if (!fn(*it)) break;
  }
  return Status::Ok();
}

std::string RunTimeKey(const std::string& id) {
  constexpr size_t kUlid = 26;
  std::string k;
  if (id.size() > kUlid && id[id.size() - kUlid - 1] == '-') k = id.substr(id.size() - kUlid);
  k.resize(kUlid, '0');
  k.push_back('\0');
  k += id;
  return k;
}

Status HubStore::ScanRunsNewestFirst(const std::string& after,
                                     const std::function<bool(const HubRun&)>& fn) const {
  std::map<std::string, HubRun> runs;
  const std::string bound = after.empty() ? std::string() : RunTimeKey(after);
  OUTPOST_RETURN_IF_ERROR(ScanRuns([&](const HubRun& r) {
    std::string k = RunTimeKey(r.id);
    if (bound.empty() || k < bound) runs.emplace(std::move(k), r);
    return true;
  }));
  for (auto it = runs.rbegin(); it != runs.rend(); ++it) {
    if (!fn(it->second)) break;
  }
  return Status::Ok();
}

}  // namespace outpost

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
namespace adaptor {

const msgpack::object& convert<outpost::HubTask>::operator()(const msgpack::object& o,
                                                               outpost::HubTask& v) const {
  auto field = [&v](size_t i, const msgpack::object& val) {
    switch (i) {
      case 0: val.convert(v.id); break;
      case 1: val.convert(v.state); break;
      case 2: val.convert(v.attempts); break;
      case 3: val.convert(v.exit_code); break;
      case 4: val.convert(v.signal); break;
      case 5: val.convert(v.started); break;
      case 6: val.convert(v.finished); break;
      case 7: val.convert(v.message); break;
      default: break;  // a newer hub's field
    }
  };
  if (o.type == msgpack::type::ARRAY) {
    for (uint32_t i = 0; i < o.via.array.size; ++i) field(i, o.via.array.ptr[i]);
    return o;
  }
  static constexpr std::string_view kKeys[] = {"id",     "state",   "attempts", "exit_code",
                                               "signal", "started", "finished", "message"};
  outpost::ForEachMapField(o, kKeys, field);
  return o;
}

}  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS)
}  // namespace msgpack
