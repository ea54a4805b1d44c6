// HubCore's artifacts (files stored by content, served to sites in chunks) and bundles
// (a site's two streams carried on media). docs/protocol.md, "Artifacts" and "Bundles".
//
// Artifacts: an operator pushes a file chunk by chunk (artifact.chunk, each stored once
// under its own digest), then commits the whole (artifact.commit: the hub checks every
// chunk is there and that they hash to the file's digest). A site asks for the chunks of
// the artifacts its placed workflows name (ARTIFACT_GET), one at a time from where it
// stopped; the hub serves only those.
//
// Bundles: bundle.export plans the volumes for a site (its commands after what it
// acknowledged, the hub's watermark of its events, the chunks of the artifacts it lacks)
// and keeps the plan in memory; bundle.record seals one record of it at a time so no
// reply is large. bundle.import opens a site's return volume and applies it through the
// same upstream path as a BATCH (duplicates skipped, gaps refused) and the same
// acknowledgement as an ACK.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/bundle.h"
#include "common/json_fields.h"
#include "common/trust.h"
#include "common/ulid.h"
#include "common/workflow/workflow.h"
#include "hub/hub_core.h"
#include "hub/run_view.h"
#include "hub/site_streams.h"

namespace outpost {

using json = nlohmann::json;

namespace {

constexpr size_t kMaxExportPlans = 16;

uint64_t ChunksFor(uint64_t size) { return (size + kArtifactChunkBytes - 1) / kArtifactChunkBytes; }

}  // namespace

struct HubCore::ExportPlan {
  struct Item {
    BundleRecord record;       // streams records complete; chunk records without data
    std::string chunk_digest;  // kChunk: the stored chunk to fill `data` from
  };
  struct Volume {
    std::string head;          // EncodeBundleHead
    std::string header_bytes;  // the msgpack header inside it
    std::vector<Item> items;
  };
  std::string site;
  std::string site_key;
  TimeMs created = 0;
  std::vector<Volume> volumes;
};

const std::map<std::string, std::string>& HubCore::ArtifactsOf(const WorkflowRecord& d) const {
  auto it = def_artifacts_.find(d.hash);
  if (it != def_artifacts_.end()) return it->second;
  auto def = ParseWorkflow(d.source, d.name);
  std::map<std::string, std::string> arts;
  if (def.ok()) arts = def->artifacts;
  return def_artifacts_[d.hash] = std::move(arts);
}

std::map<std::string, std::string> HubCore::NeededArtifacts(const SiteRecord& site) const {
  std::map<std::string, std::string> need;
  for (const auto& [name, d] : defs_) {
    if (!SelectorMatches(d.target, site.labels)) continue;
    for (const auto& [art, digest] : ArtifactsOf(d)) need.emplace(digest, art);
  }
  return need;
}

json HubCore::SiteArtifactsJson(const SiteRecord& s) const {
  json rows = json::array();
  auto tr = transfers_.find(s.name);
  for (const auto& [digest, name] : NeededArtifacts(s)) {
    json row = {{"digest", digest}, {"name", name}};
    auto a = artifacts_.find(digest);
    row["size"] = a == artifacts_.end() ? 0 : a->second.size;
    if (s.artifacts.count(digest)) {
      row["state"] = "cached";
    } else if (a == artifacts_.end()) {
      row["state"] = "not_at_hub";
    } else if (tr != transfers_.end() && tr->second.count(digest)) {
      const Transfer& t = tr->second.at(digest);
      row["state"] = "transferring";
      row["chunks_served"] = t.chunks_served;
      row["chunks"] = t.chunks;
      row["last_chunk"] = TimeJson(t.last);
    } else {
      row["state"] = "missing";
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

json HubCore::OpArtifactHas(const OperatorRequest& r) {
  json missing = json::array();
  for (const auto& c : r.chunks) {
    if (!IsArtifactDigest(c)) return Error("'" + SafeText(c, 80) + "' is not a chunk digest");
    auto got = store_->GetChunk(c);
    if (!got.ok()) return Error(got.status());
    if (!*got) missing.push_back(c);
  }
  return {{"ok", true}, {"missing", missing}};
}

json HubCore::OpArtifactChunk(const OperatorRequest& r) {
  auto data = FromBase64(r.data);
  if (!data) return Error("'data' is not base64");
  if (data->size() > kArtifactChunkBytes) {
    return Error("a chunk holds at most " + std::to_string(kArtifactChunkBytes) + " bytes");
  }
  const std::string digest = ContentDigest(*data);
  auto got = store_->GetChunk(digest);
  if (!got.ok()) return Error(got.status());
  if (*got) return {{"ok", true}, {"digest", digest}, {"stored", false}};
  HubStore::Txn txn;
  txn.PutChunk(digest, *data);
  if (Status s = CommitTxn(txn); !s.ok()) {
    CountStoreFailure(s);
    return Error(s);
  }
  return {{"ok", true}, {"digest", digest}, {"stored", true}};
}

json HubCore::OpArtifactCommit(const std::string& who, const OperatorRequest& r) {
  if (!IsArtifactDigest(r.digest)) return Error("'digest' must be 64 lowercase hex digits");
  if (r.size == 0 || r.size > kMaxArtifactBytes) {
    return Error("an artifact is 1 byte to 1 GiB, not " + std::to_string(r.size) + " bytes");
  }
  if (r.chunks.size() != ChunksFor(r.size)) {
    return Error("an artifact of " + std::to_string(r.size) + " bytes has " +
                 std::to_string(ChunksFor(r.size)) + " chunks, not " +
                 std::to_string(r.chunks.size()));
  }
  // Every chunk is here, each has the size its place says, and together they are the file.
  Blake2bStream whole;
  for (size_t i = 0; i < r.chunks.size(); ++i) {
    auto got = store_->GetChunk(r.chunks[i]);
    if (!got.ok()) return Error(got.status());
    if (!*got) return Error("chunk " + std::to_string(i) + " (" + SafeText(r.chunks[i], 80) +
                            ") is not at the hub: send it first", "conflict");
    const uint64_t want = i + 1 < r.chunks.size() ? kArtifactChunkBytes
                                                  : r.size - i * uint64_t{kArtifactChunkBytes};
    if ((*got)->size() != want) {
      return Error("chunk " + std::to_string(i) + " has " + std::to_string((*got)->size()) +
                   " bytes, not " + std::to_string(want));
    }
    whole.Update(**got);
  }
  if (whole.HexDigest() != r.digest) {
    return Error("the chunks do not hash to " + r.digest + ": the file changed while it was sent?");
  }
  ArtifactRecord a;
  a.digest = r.digest;
  a.name = r.name;
  a.size = r.size;
  a.chunks = r.chunks;
  a.pushed = clock_.Now();
  a.author = who;
  const bool existed = artifacts_.count(a.digest) > 0;
  if (existed) {
    a.pushed = artifacts_[a.digest].pushed;
    if (a.name.empty()) a.name = artifacts_[a.digest].name;
  }
  HubStore::Txn txn;
  txn.PutArtifact(a);
  Audit(&txn, {{"event", "artifact.pushed"},
               {"digest", a.digest},
               {"name", a.name},
               {"size", a.size},
               {"by", who}});
  if (Status s = CommitTxn(txn); !s.ok()) {
    CountStoreFailure(s);
    return Error(s);
  }
  spdlog::info("hub.artifact_pushed digest={} name={} size={} by={}", a.digest, a.name, a.size, who);
  artifacts_[a.digest] = a;
  return {{"ok", true},
          {"artifact",
           {{"digest", a.digest}, {"name", a.name}, {"size", a.size}, {"chunks", a.chunks.size()}}},
          {"existed", existed}};
}

json HubCore::OpArtifactList() const {
  json list = json::array();
  for (const auto& [digest, a] : artifacts_) {
    json sites = json::object();
    for (const auto& [name, s] : sites_) {
      if (s.site_state() != SiteState::kEnrolled) continue;
      for (const auto& row : SiteArtifactsJson(s)) {
        if (row["digest"] == digest) sites[name] = row["state"];
      }
    }
    list.push_back({{"digest", digest},
                    {"name", a.name},
                    {"size", a.size},
                    {"chunks", a.chunks.size()},
                    {"pushed", TimeJson(a.pushed)},
                    {"author", a.author},
                    {"sites", sites}});
  }
  return {{"ok", true}, {"artifacts", list}};
}

void HubCore::ServeArtifact(const std::string& site_name, const std::string& peer,
                            const Message& m, HubOutput* out) {
  Message reply;
  reply.t = static_cast<uint8_t>(MsgType::kArtifactChunk);
  reply.digest = m.digest;
  reply.seq = m.seq;
  const SiteRecord& site = sites_.at(site_name);
  auto a = artifacts_.find(m.digest);
  // Only what the site's placed workflows name: an enrolled key is not a read-anything key.
  if (a == artifacts_.end() || !NeededArtifacts(site).count(m.digest)) {
    ++counters_.artifact_requests_refused;
    reply.message = a == artifacts_.end() ? "the hub has no artifact " + m.digest
                                          : "no workflow placed on this site names artifact " +
                                                m.digest;
    spdlog::warn("hub.artifact_refused site={} digest={} reason=\"{}\"", site_name,
                 SafeText(m.digest, 64), reply.message);
    out->send.push_back({peer, reply});
    return;
  }
  reply.size = a->second.size;
  if (m.seq >= a->second.chunks.size()) {
    reply.message = "artifact " + m.digest + " has " + std::to_string(a->second.chunks.size()) +
                    " chunks";
    out->send.push_back({peer, reply});
    return;
  }
  auto chunk = store_->GetChunk(a->second.chunks[m.seq]);
  if (!chunk.ok() || !*chunk) {
    ++counters_.store_errors;
    reply.message = "the hub could not read chunk " + std::to_string(m.seq) + "; retry later";
    out->send.push_back({peer, reply});
    return;
  }
  reply.data = std::move(**chunk);
  ++counters_.artifact_chunks_served;
  Transfer& t = transfers_[site_name][m.digest];
  t.chunks = a->second.chunks.size();
  t.chunks_served = std::max<uint64_t>(t.chunks_served, m.seq + 1);
  t.last = clock_.Now();
  out->send.push_back({peer, reply});
}

// After a declared restore, a site reconciles with the hub over the network only: a
// bundle carries no hub epoch, and a return bundle may be older than what the site has
// applied since, so neither direction can tell what the backup lacks (docs/protocol.md).
bool HubCore::Unreconciled(const SiteRecord& site) const {
  return hub_epoch_ > 0 && site.epoch_confirmed < hub_epoch_;
}

std::string HubCore::UnreconciledWhy(const SiteRecord& site) const {
  return "this hub was restored from a backup and site '" + site.name +
         "' has not reconciled with it yet; bundles resume once it has connected over the "
         "network once (docs/operations.md, \"Restoring the hub from a backup\")";
}

json HubCore::OpBundleExport(const std::string& who, const OperatorRequest& r) {
  SiteRecord* site = FindSite(r.site);
  if (!site) return Error("no site named '" + r.site + "'", "not_found");
  if (site->site_state() != SiteState::kEnrolled) {
    return Error("site '" + r.site + "' is not enrolled", "conflict");
  }
  if (options_.keys.secret_z85.empty()) {
    return Error("this hub has no keypair loaded to seal bundles with", "internal");
  }
  if (Unreconciled(*site)) return Error(UnreconciledWhy(*site), "conflict");
  auto plan = std::make_shared<ExportPlan>();
  plan->site = site->name;
  plan->site_key = site->key;
  plan->created = clock_.Now();
  const std::string id = MakeUlid(plan->created, rng_);
  // What goes in, in order: the chunks of artifacts the site lacks, then the commands (so
  // a courier who carries the volumes in order delivers files before the runs using them).
  std::vector<ExportPlan::Item> items;
  std::vector<size_t> sizes;
  for (const auto& [digest, name] : NeededArtifacts(*site)) {
    if (site->artifacts.count(digest)) continue;
    auto a = artifacts_.find(digest);
    if (a == artifacts_.end()) continue;
    for (size_t i = 0; i < a->second.chunks.size(); ++i) {
      ExportPlan::Item it;
      it.record.kind = BundleRecord::kChunk;
      it.record.digest = digest;
      it.record.size = a->second.size;
      it.record.offset = i * uint64_t{kArtifactChunkBytes};
      it.chunk_digest = a->second.chunks[i];
      items.push_back(std::move(it));
      sizes.push_back(std::min<uint64_t>(kArtifactChunkBytes, a->second.size - i * uint64_t{kArtifactChunkBytes}));
    }
  }
  auto commands = store_->ReadDown(site->name, site->down_epoch, site->down_acked, SIZE_MAX, SIZE_MAX);
  if (!commands.ok()) return Error(commands.status());
  size_t i = 0;
  do {
    ExportPlan::Item it;
    it.record.kind = BundleRecord::kStreams;
    it.record.incarnation = site->incarnation;
    it.record.watermark = site->up_applied;
    it.record.first_seq = i < commands->size() ? (*commands)[i].seq : site->down_head + 1;
    size_t bytes = 0;
    while (i < commands->size() && (it.record.entries.empty() ||
                                    bytes + (*commands)[i].payload.size() <= kBundleStreamBytes)) {
      bytes += (*commands)[i].payload.size();
      it.record.entries.push_back((*commands)[i].payload);
      ++i;
    }
    items.push_back(std::move(it));
    sizes.push_back(bytes);
  } while (i < commands->size());
  // Volumes of at most `size` bytes (0: one volume); a record never spans two.
  const uint64_t limit = r.size;
  std::vector<std::vector<size_t>> volumes(1);
  uint64_t used = 0;
  for (size_t k = 0; k < items.size(); ++k) {
    const uint64_t cost = sizes[k] + 512;
    if (limit > 0 && used > 0 && used + cost > limit) {
      volumes.emplace_back();
      used = 0;
    }
    volumes.back().push_back(k);
    used += cost;
  }
  json vols = json::array();
  for (size_t v = 0; v < volumes.size(); ++v) {
    BundleHeader h;
    h.kind = "down";
    h.site = site->name;
    h.from_key = options_.keys.public_z85;
    h.to_key = site->key;
    h.id = id;
    h.created = plan->created;
    h.volume = static_cast<uint32_t>(v + 1);
    h.volumes = static_cast<uint32_t>(volumes.size());
    h.records = static_cast<uint32_t>(volumes[v].size());
    h.incarnation = site->incarnation;
    h.watermark = site->up_applied;
    ExportPlan::Volume vol;
    std::map<std::string, BundleArtifact> arts;
    for (size_t k : volumes[v]) {
      const BundleRecord& rec = items[k].record;
      if (rec.kind == BundleRecord::kStreams && !rec.entries.empty()) {
        if (h.first == 0) h.first = rec.first_seq;
        h.last = rec.first_seq + rec.entries.size() - 1;
      } else if (rec.kind == BundleRecord::kChunk) {
        BundleArtifact& ba = arts[rec.digest];
        ba.digest = rec.digest;
        ba.size = rec.size;
        ++ba.chunks;
      }
      vol.items.push_back(items[k]);
    }
    for (auto& [d, ba] : arts) h.artifacts.push_back(ba);
    vol.head = EncodeBundleHead(h);
    vol.header_bytes = Encode(h);
    uint64_t bytes = vol.head.size();
    for (size_t k : volumes[v]) bytes += sizes[k] + 128;
    vols.push_back({{"volume", h.volume},
                    {"records", h.records},
                    {"bytes", bytes},
                    {"head", ToBase64(vol.head)},
                    {"commands", {{"first", h.first}, {"last", h.last}}},
                    {"artifacts", arts.size()}});
    plan->volumes.push_back(std::move(vol));
  }
  if (exports_.size() >= kMaxExportPlans) {
    auto oldest = std::min_element(exports_.begin(), exports_.end(), [](auto& a, auto& b) {
      return a.second->created < b.second->created;
    });
    exports_.erase(oldest);
  }
  exports_[id] = plan;
  ++counters_.bundles_exported;
  HubStore::Txn txn;
  SiteRecord copy = *site;
  copy.bundle_out = id;
  txn.PutSite(copy);
  Audit(&txn, {{"event", "bundle.exported"},
               {"site", site->name},
               {"bundle", id},
               {"volumes", volumes.size()},
               {"commands", commands->size()},
               {"by", who}});
  if (Status s = CommitTxn(txn); !s.ok()) {
    CountStoreFailure(s);
    return Error(s);
  }
  *site = std::move(copy);
  spdlog::info("hub.bundle_exported site={} bundle={} volumes={} commands={} by={}", site->name, id,
               volumes.size(), commands->size(), who);
  return {{"ok", true},
          {"bundle",
           {{"id", id},
            {"site", site->name},
            {"commands", commands->size()},
            {"events_acknowledged_through", site->up_applied},
            {"volumes", vols}}}};
}

json HubCore::OpBundleRecord(const OperatorRequest& r) {
  auto it = exports_.find(r.id);
  if (it == exports_.end()) {
    return Error("no bundle export '" + r.id + "' in progress (the hub restarted, or it is old): "
                 "export again", "not_found");
  }
  const ExportPlan& plan = *it->second;
  if (r.volume == 0 || r.volume > plan.volumes.size()) {
    return Error("bundle " + r.id + " has " + std::to_string(plan.volumes.size()) + " volumes");
  }
  const ExportPlan::Volume& vol = plan.volumes[r.volume - 1];
  if (r.index >= vol.items.size()) {
    return Error("volume " + std::to_string(r.volume) + " has " + std::to_string(vol.items.size()) +
                 " records");
  }
  BundleRecord rec = vol.items[r.index].record;
  rec.index = r.index;
  if (rec.kind == BundleRecord::kChunk) {
    auto chunk = store_->GetChunk(vol.items[r.index].chunk_digest);
    if (!chunk.ok()) return Error(chunk.status());
    if (!*chunk) return Error("a chunk of artifact " + rec.digest + " is missing at the hub", "internal");
    rec.data = std::move(**chunk);
  }
  auto sealed = SealBundleRecord(std::move(rec), vol.header_bytes, options_.keys, plan.site_key);
  if (!sealed.ok()) return Error(sealed.status());
  return {{"ok", true}, {"record", ToBase64(*sealed)}};
}

bool HubCore::AdoptIncarnation(SiteRecord& site, uint64_t incarnation, std::string* why) {
  if (std::find(site.retired.begin(), site.retired.end(), incarnation) != site.retired.end()) {
    ++counters_.stale_incarnations;
    *why = "it comes from an incarnation of site '" + site.name +
           "' that a newer one replaced (an old copy of its database)";
    return false;
  }
  if (site.incarnation == incarnation) return true;
  Status s;
  if (site.incarnation == 0) {
    SiteRecord copy = site;
    copy.incarnation = incarnation;
    HubStore::Txn txn;
    txn.PutSite(copy);
    s = CommitTxn(txn);
    if (s.ok()) site = std::move(copy);
  } else {
    Drop(site.name, "new incarnation");
    s = NewIncarnation(site, incarnation);
  }
  if (!s.ok()) {
    ++counters_.store_errors;
    *why = "the hub could not record the site's incarnation: " + s.ToString();
    return false;
  }
  return true;
}

json HubCore::OpBundleImport(const std::string& who, const OperatorRequest& r, HubOutput* out) {
  auto refuse = [this](const std::string& why, const char* code = "invalid") {
    ++counters_.bundle_records_refused;
    spdlog::warn("hub.bundle_refused error=\"{}\"", SafeText(why));
    return Error(why, code);
  };
  auto head = FromBase64(r.head);
  if (!head) return refuse("'head' is not base64");
  BundleHeader h;
  std::string header_bytes;
  size_t used = 0;
  if (Status s = DecodeBundleHead(*head, &h, &header_bytes, &used); !s.ok()) return refuse(s.message());
  if (h.kind != "up") {
    return refuse("this is a bundle for a site (down), not one from a site: import it on site '" +
                  SafeText(h.site, 64) + "'");
  }
  if (h.to_key != options_.keys.public_z85) {
    return refuse("this bundle was sealed for another hub (key " + SafeText(h.to_key, 40) + ")",
                  "invalid");
  }
  auto by = by_key_.find(h.from_key);
  SiteRecord* site = by == by_key_.end() ? nullptr : FindSite(by->second);
  if (!site || site->site_state() != SiteState::kEnrolled) {
    return refuse("this bundle comes from a key no enrolled site has (" + SafeText(h.from_key, 40) +
                      "); the name in it says '" + SafeText(h.site, 64) + "'",
                  "invalid");
  }
  // Every record opens, in its place, before anything is applied.
  std::vector<BundleRecord> records;
  for (size_t k = 0; k < r.records.size(); ++k) {
    auto framed = FromBase64(r.records[k]);
    if (!framed || framed->size() < 4) return refuse("record " + std::to_string(r.index + k + 1) + " is not base64 of a framed record");
    auto rec = OpenBundleRecord(std::string_view(*framed).substr(4), h, header_bytes, options_.keys,
                                static_cast<uint32_t>(r.index + k));
    if (!rec.ok()) return refuse(rec.status().message());
    records.push_back(std::move(rec).value());
  }
  const std::string name = site->name;
  json result = {{"site", name}, {"bundle", h.id}, {"volume", h.volume}};
  uint64_t received = 0, applied = 0, duplicates = 0;
  json gap = nullptr;
  size_t records_done = 0;
  for (const auto& rec : records) {
    if (options_.after_import_record && records_done > 0) options_.after_import_record(records_done);
    ++records_done;
    if (rec.kind != BundleRecord::kStreams) continue;
    std::string why;
    if (!AdoptIncarnation(sites_.at(name), rec.incarnation, &why)) return refuse("refused: " + why, "conflict");
    if (Unreconciled(sites_.at(name))) return refuse(UnreconciledWhy(sites_.at(name)), "conflict");
    Upstream up(this, name);
    uint64_t seq = rec.first_seq;
    received += rec.entries.size();
    size_t k = 0;
    // The planted bug (common/faults.h): a volume's events applied again from its start.
    while (!faults_.bundle_replay && k < rec.entries.size() && seq + k <= up.applied()) ++k;
    duplicates += k;
    counters_.duplicates_dropped += k;
    if (k < rec.entries.size() && seq + k > up.applied() + 1) {
      ++counters_.gaps_refused;
      gap = {{"missing_from", up.applied() + 1}, {"missing_to", seq + k - 1}};
      break;
    }
    while (k < rec.entries.size()) {
      const size_t n = std::min<size_t>(512, rec.entries.size() - k);
      std::vector<std::string> batch(rec.entries.begin() + k, rec.entries.begin() + k + n);
      if (Status s = up.ApplyDurably(seq + k, batch); !s.ok()) {
        return Error("the hub could not store the events: " + s.ToString() +
                         " (what was applied stays; import the volume again)",
                     "internal");
      }
      applied += n;
      k += n;
    }
    SiteRecord& s = sites_.at(name);
    // The site's watermark of its commands: the same acknowledgement an ACK carries.
    if (rec.watermark > s.down_head) {
      return refuse("the site says it applied commands through " + std::to_string(rec.watermark) +
                    " but the hub made only " + std::to_string(s.down_head) +
                    " (a bundle from another hub's history?)", "conflict");
    }
    if (rec.watermark > s.down_acked) {
      Downstream down(this, name);
      if (Status st = down.Acknowledge(rec.watermark); !st.ok()) {
        ++counters_.store_errors;
        return Error(st);
      }
    }
  }
  if (options_.after_import_record) options_.after_import_record(records_done);
  {
    SiteRecord copy = sites_.at(name);
    copy.up_head = std::max(copy.up_head, h.last);
    copy.bundle_in = h.id;
    copy.last_seen = std::max(copy.last_seen, h.created);
    HubStore::Txn txn;
    txn.PutSite(copy);
    Audit(&txn, {{"event", "bundle.imported"},
                 {"site", name},
                 {"bundle", h.id},
                 {"volume", h.volume},
                 {"events_applied", applied},
                 {"duplicates", duplicates},
                 {"gap", gap},
                 {"by", who}});
    if (Status s = CommitTxn(txn); !s.ok()) {
      CountStoreFailure(s);
      return Error(s);
    }
    sites_[name] = std::move(copy);
  }
  ++counters_.bundle_volumes_imported;
  const SiteRecord& s = sites_.at(name);
  spdlog::info("hub.bundle_imported site={} bundle={} volume={} applied={} duplicates={} gap={}",
               name, h.id, h.volume, applied, duplicates, gap.is_null() ? "none" : gap.dump());
  // Runs finished or commands acknowledged may let the site's placements move on.
  PokeSites({name}, out);
  result["events"] = {{"received", received},
                      {"applied", applied},
                      {"duplicates", duplicates},
                      {"hub_has_through", s.up_applied}};
  result["gap"] = gap;
  result["commands_acknowledged_through"] = s.down_acked;
  result["commands_pending"] = s.down_head - s.down_acked;
  return {{"ok", true}, {"import", result}};
}

}  // namespace outpost
