#include "hub/hub_store.h"

#include <rocksdb/iterator.h>

namespace outpost {

namespace {

const std::vector<std::string> kCfNames = {"sites", "up", "down", "runs", "defs", "meta"};
constexpr char kAuditPrefix[] = "audit/";

}  // namespace

const char* SiteStateName(SiteState s) {
  switch (s) {
    case SiteState::kPending: return "pending";
    case SiteState::kEnrolled: return "enrolled";
    case SiteState::kRevoked: return "revoked";
  }
  return "unknown";
}

std::string StreamKey(const std::string& site, uint64_t stream, uint64_t seq) {
  std::string k = site;
  k.push_back('\0');
  k += EncodeU64(stream);
  k += EncodeU64(seq);
  return k;
}

void HubStore::Txn::PutSite(const SiteRecord& s) { ops_.push_back({Cf::kSites, s.name, Encode(s), {}}); }
void HubStore::Txn::DeleteSite(const std::string& name) {
  ops_.push_back({Cf::kSites, name, std::nullopt, {}});
}
void HubStore::Txn::PutUp(const std::string& site, uint64_t inc, uint64_t seq, const std::string& v) {
  ops_.push_back({Cf::kUp, StreamKey(site, inc, seq), v, {}});
}
void HubStore::Txn::PutDown(const std::string& site, uint64_t epoch, uint64_t seq,
                            const std::string& v) {
  ops_.push_back({Cf::kDown, StreamKey(site, epoch, seq), v, {}});
}
void HubStore::Txn::TrimDown(const std::string& site, uint64_t epoch, uint64_t through) {
  ops_.push_back({Cf::kDown, StreamKey(site, epoch, 0), std::nullopt,
                  StreamKey(site, epoch, through + 1)});
}
void HubStore::Txn::PutRun(const HubRun& r) { ops_.push_back({Cf::kRuns, "run/" + r.id, Encode(r), {}}); }
void HubStore::Txn::PutOutput(const std::string& run, const std::string& task,
                              const std::string& out) {
  ops_.push_back({Cf::kRuns, "out/" + run + "/" + task, out, {}});
}
void HubStore::Txn::PutDef(const WorkflowRecord& d) { ops_.push_back({Cf::kDefs, d.name, Encode(d), {}}); }
void HubStore::Txn::DeleteDef(const std::string& name) {
  ops_.push_back({Cf::kDefs, name, std::nullopt, {}});
}
void HubStore::Txn::PutRequest(const RequestRecord& r) {
  ops_.push_back({Cf::kMeta, "req/" + r.id, Encode(r), {}});
}
void HubStore::Txn::Audit(uint64_t seq, const std::string& json) {
  ops_.push_back({Cf::kMeta, kAuditPrefix + EncodeU64(seq), json, {}});
}

Result<std::unique_ptr<HubStore>> HubStore::Open(const std::string& path, const Options& options) {
  std::unique_ptr<HubStore> s(new HubStore());
  RocksOptions ro;
  ro.env = options.env;
  ro.write_buffer_bytes = options.write_buffer_bytes;
  ro.block_cache_bytes = options.block_cache_bytes;
  OUTPOST_ASSIGN_OR_RETURN(s->rocks_, OpenRocks(path, kCfNames, ro));
  s->sync_ = options.sync;
  // The newest audit key gives the audit sequence.
  std::unique_ptr<rocksdb::Iterator> it(
      s->rocks_.db->NewIterator(rocksdb::ReadOptions(), s->Handle(Txn::Cf::kMeta)));
  it->SeekForPrev(std::string(kAuditPrefix) + std::string(8, '\xff'));
  if (it->Valid() && it->key().starts_with(kAuditPrefix) &&
      it->key().size() == sizeof(kAuditPrefix) - 1 + 8) {
    s->audit_head_ = DecodeU64(it->key().ToStringView().substr(sizeof(kAuditPrefix) - 1));
  }
  OUTPOST_RETURN_IF_ERROR(FromRocks(it->status(), "read hub audit log"));
  return s;
}

rocksdb::ColumnFamilyHandle* HubStore::Handle(Txn::Cf cf) const {
  return rocks_.cfs[1 + static_cast<size_t>(cf)];
}

Status HubStore::Commit(const Txn& txn) {
  if (txn.ops_.empty()) return Status::Ok();
  rocksdb::WriteBatch batch;
  for (const auto& op : txn.ops_) {
    rocksdb::Status s;
    if (!op.end.empty()) {
      s = batch.DeleteRange(Handle(op.cf), op.key, op.end);
    } else if (op.value) {
      s = batch.Put(Handle(op.cf), op.key, *op.value);
    } else {
      s = batch.Delete(Handle(op.cf), op.key);
    }
    OUTPOST_RETURN_IF_ERROR(FromRocks(s, "build hub write batch"));
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  OUTPOST_RETURN_IF_ERROR(FromRocks(rocks_.db->Write(wo, &batch), "hub store write"));
  for (const auto& op : txn.ops_) {
    if (op.cf == Txn::Cf::kMeta && op.key.starts_with(kAuditPrefix) && op.value) {
      uint64_t seq = DecodeU64(std::string_view(op.key).substr(sizeof(kAuditPrefix) - 1));
      if (seq > audit_head_) audit_head_ = seq;
    }
  }
  return Status::Ok();
}

namespace {

template <typename T>
Status LoadAll(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, const char* what,
               std::vector<T>* out) {
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cf));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    T v;
    OUTPOST_RETURN_IF_ERROR(Decode(it->value().ToStringView(), &v)
                                .WithContext(std::string(what) + " " + it->key().ToString()));
    out->push_back(std::move(v));
  }
  return FromRocks(it->status(), std::string("read ") + what);
}

}  // namespace

Status HubStore::LoadSites(std::vector<SiteRecord>* out) const {
  return LoadAll(rocks_.db.get(), Handle(Txn::Cf::kSites), "site record", out);
}

Status HubStore::LoadDefs(std::vector<WorkflowRecord>* out) const {
  return LoadAll(rocks_.db.get(), Handle(Txn::Cf::kDefs), "workflow record", out);
}

Result<std::optional<HubRun>> HubStore::GetRun(const std::string& id) const {
  std::string v;
  auto s = rocks_.db->Get(rocksdb::ReadOptions(), Handle(Txn::Cf::kRuns), "run/" + id, &v);
  if (s.IsNotFound()) return std::optional<HubRun>();
  OUTPOST_RETURN_IF_ERROR(FromRocks(s, "read run " + id));
  HubRun r;
  OUTPOST_RETURN_IF_ERROR(Decode(v, &r).WithContext("run record " + id));
  return std::optional<HubRun>(std::move(r));
}

Status HubStore::ScanRuns(const std::function<bool(const HubRun&)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(
      rocks_.db->NewIterator(rocksdb::ReadOptions(), Handle(Txn::Cf::kRuns)));
  for (it->Seek("run/"); it->Valid() && it->key().starts_with("run/"); it->Next()) {
    HubRun r;
    OUTPOST_RETURN_IF_ERROR(
        Decode(it->value().ToStringView(), &r).WithContext("run record " + it->key().ToString()));
    if (!fn(r)) break;
  }
  return FromRocks(it->status(), "scan runs");
}

Result<std::optional<std::string>> HubStore::GetOutput(const std::string& run,
                                                       const std::string& task) const {
  std::string v;
  auto s = rocks_.db->Get(rocksdb::ReadOptions(), Handle(Txn::Cf::kRuns),
                          "out/" + run + "/" + task, &v);
  if (s.IsNotFound()) return std::optional<std::string>();
  OUTPOST_RETURN_IF_ERROR(FromRocks(s, "read output"));
  return std::optional<std::string>(std::move(v));
}

Result<std::optional<RequestRecord>> HubStore::GetRequest(const std::string& id) const {
  std::string v;
  auto s = rocks_.db->Get(rocksdb::ReadOptions(), Handle(Txn::Cf::kMeta), "req/" + id, &v);
  if (s.IsNotFound()) return std::optional<RequestRecord>();
  OUTPOST_RETURN_IF_ERROR(FromRocks(s, "read request"));
  RequestRecord r;
  OUTPOST_RETURN_IF_ERROR(Decode(v, &r).WithContext("request " + id));
  return std::optional<RequestRecord>(std::move(r));
}

namespace {

Result<std::vector<LogRecord>> ReadStream(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                          const std::string& site, uint64_t stream,
                                          uint64_t after, size_t max_count, size_t max_bytes) {
  std::vector<LogRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cf));
  const std::string prefix = StreamKey(site, stream, 0).substr(0, site.size() + 1 + 8);
  size_t bytes = 0;
  uint64_t expect = after + 1;
  for (it->Seek(StreamKey(site, stream, after + 1));
       it->Valid() && it->key().starts_with(prefix) && out.size() < max_count; it->Next()) {
    const uint64_t seq = DecodeU64(it->key().ToStringView().substr(prefix.size()));
    if (seq != expect) {
      return Status::Corruption("stream of site " + site + " has a gap: expected " +
                                std::to_string(expect) + ", found " + std::to_string(seq));
    }
    if (!out.empty() && bytes + it->value().size() > max_bytes) break;
    bytes += it->value().size();
    out.push_back({seq, it->value().ToString()});
    ++expect;
  }
  OUTPOST_RETURN_IF_ERROR(FromRocks(it->status(), "read stream of site " + site));
  return out;
}

}  // namespace

Result<std::vector<LogRecord>> HubStore::ReadDown(const std::string& site, uint64_t epoch,
                                                  uint64_t after, size_t max_count,
                                                  size_t max_bytes) const {
  return ReadStream(rocks_.db.get(), Handle(Txn::Cf::kDown), site, epoch, after, max_count,
                    max_bytes);
}

Result<std::vector<LogRecord>> HubStore::ReadUp(const std::string& site, uint64_t incarnation,
                                                uint64_t after, size_t max_count) const {
  return ReadStream(rocks_.db.get(), Handle(Txn::Cf::kUp), site, incarnation, after, max_count,
                    SIZE_MAX);
}

Status HubStore::ReadAudit(size_t limit, std::vector<std::string>* out) const {
  std::unique_ptr<rocksdb::Iterator> it(
      rocks_.db->NewIterator(rocksdb::ReadOptions(), Handle(Txn::Cf::kMeta)));
  std::vector<std::string> rev;
  for (it->SeekForPrev(std::string(kAuditPrefix) + std::string(8, '\xff'));
       it->Valid() && it->key().starts_with(kAuditPrefix) && rev.size() < limit; it->Prev()) {
    rev.push_back(it->value().ToString());
  }
  out->assign(rev.rbegin(), rev.rend());
  return FromRocks(it->status(), "read hub audit log");
}

uint64_t HubStore::ApproximateSize() const {
  uint64_t total = 0, v = 0;
  for (auto* h : rocks_.cfs) {
    if (rocks_.db->GetIntProperty(h, "rocksdb.total-sst-files-size", &v)) total += v;
  }
  return total;
}

}  // namespace outpost
