#include "site-agent/site_bundles.h"

#include <cstdio>

#include "common/text.h"

namespace outpost {

namespace {

std::string IncHex(uint64_t v) {
  char b[20];
  snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
  return b;
}

}  // namespace

Status CheckDownHeader(const BundleHeader& h, const std::string& my_public,
                       const std::string& hub_key) {
  if (h.kind != "down") {
    return Status::InvalidArgument("this is a return bundle from a site: import it at the hub");
  }
  if (h.to_key != my_public) {
    return Status::PermissionDenied("this bundle is for site '" + SafeText(h.site, 64) + "' (key " +
                                    SafeText(h.to_key, 40) + "), not this one (" + my_public + ")");
  }
  if (hub_key.empty()) {
    return Status::FailedPrecondition(
        "this agent has no --hub-key: it cannot tell a bundle from its hub from a forgery");
  }
  if (h.from_key != hub_key) {
    return Status::PermissionDenied("this bundle was sealed by hub key " + SafeText(h.from_key, 40) +
                                    ", not the hub this site trusts (" + hub_key + ")");
  }
  return Status::Ok();
}

SiteImport ImportDownVolume(BundleReader& reader, const CurveKeys& my, const SiteBundleHooks& hooks) {
  SiteImport out;
  size_t done = 0;
  for (;;) {
    BundleRecord rec;
    auto more = reader.Next(my, &rec);
    if (!more.ok()) {
      out.problem = more.status().message();
      return out;
    }
    if (!*more) return out;
    if (rec.kind == BundleRecord::kChunk) {
      ++out.chunks;
      if (hooks.put_chunk) {
        auto r = hooks.put_chunk(rec);
        if (!r.ok()) {
          out.problem = "artifact " + rec.digest + ": " + r.status().message();
          return out;
        }
        if (*r) out.completed.emplace_back(rec.digest, rec.size);
      }
    } else {
      out.received += rec.entries.size();
      if (rec.incarnation != 0 && rec.incarnation != hooks.incarnation) {
        out.problem = "the commands were made for incarnation " + IncHex(rec.incarnation) +
                      " of this site; this database is " + IncHex(hooks.incarnation) +
                      " (a new one): carry a return bundle to the hub first, then export again";
        return out;
      }
      const uint64_t seq = rec.first_seq;
      const uint64_t applied = hooks.down_applied();
      size_t k = 0;
      while (k < rec.entries.size() && seq + k <= applied) ++k;
      out.duplicates += k;
      if (k < rec.entries.size() && seq + k > applied + 1) {
        out.gap = {applied + 1, seq + k - 1};
        return out;
      }
      if (k < rec.entries.size()) {
        std::vector<std::string> rest(rec.entries.begin() + static_cast<long>(k), rec.entries.end());
        if (Status s = hooks.apply_commands(seq + k, rest); !s.ok()) {
          out.problem = "the commands could not be stored: " + s.ToString() + " (import again later)";
          return out;
        }
        out.applied += rest.size();
      }
      // The hub's watermark of the site's events: what an ACK says.
      if (rec.incarnation == hooks.incarnation || rec.incarnation == 0) {
        if (rec.watermark > hooks.log_head()) {
          out.problem = "the hub says it has events through " + std::to_string(rec.watermark) +
                        " but this site's log ends at " + std::to_string(hooks.log_head());
          return out;
        }
        if (rec.watermark > hooks.log_acked()) {
          if (Status s = hooks.ack_events(rec.watermark); !s.ok()) {
            out.problem = "acknowledging events failed: " + s.ToString();
            return out;
          }
        }
      }
    }
    if (hooks.after_record) hooks.after_record(++done);
  }
}

Result<std::string> ExportUpVolume(const EventLog& log, uint64_t down_applied, const CurveKeys& my,
                                   const std::string& hub_key, const std::string& site,
                                   const std::string& id, TimeMs now, BundleHeader* header) {
  BundleHeader& h = *header;
  h = BundleHeader();
  h.kind = "up";
  h.site = site;
  h.from_key = my.public_z85;
  h.to_key = hub_key;
  h.id = id;
  h.created = now;
  h.incarnation = log.incarnation();
  h.watermark = down_applied;
  std::vector<BundleRecord> records;
  uint64_t after = log.acked();
  do {
    OUTPOST_ASSIGN_OR_RETURN(auto batch, log.ReadAfter(after, 4096, kBundleStreamBytes));
    BundleRecord r;
    r.kind = BundleRecord::kStreams;
    r.incarnation = h.incarnation;
    r.watermark = down_applied;
    r.first_seq = batch.empty() ? log.head() + 1 : batch.front().seq;
    for (auto& rec : batch) r.entries.push_back(std::move(rec.payload));
    if (batch.empty()) {
      records.push_back(std::move(r));
      break;
    }
    after = batch.back().seq;
    if (h.first == 0) h.first = r.first_seq;
    h.last = after;
    records.push_back(std::move(r));
  } while (after < log.head());
  h.records = static_cast<uint32_t>(records.size());
  std::string out = EncodeBundleHead(h);
  const std::string header_bytes = Encode(h);
  for (uint32_t i = 0; i < records.size(); ++i) {
    records[i].index = i;
    OUTPOST_ASSIGN_OR_RETURN(std::string sealed,
                             SealBundleRecord(std::move(records[i]), header_bytes, my, hub_key));
    out += sealed;
  }
  return out;
}

}  // namespace outpost
