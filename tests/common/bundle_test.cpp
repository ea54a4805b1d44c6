// Bundles (common/bundle.h): a volume opens only for its receiver, only from its sender,
// only whole and in place; and a fuzzer's worth of damage is refused, never crashes.
#include "common/bundle.h"

#include <gtest/gtest.h>

#include "common/keys.h"
#include "common/random.h"

namespace outpost {
namespace {

struct Parties {
  CurveKeys hub = *GenerateCurveKeys();
  CurveKeys site = *GenerateCurveKeys();
  CurveKeys other = *GenerateCurveKeys();
};

BundleHeader Header(const Parties& p, uint32_t records, uint32_t volume = 1, uint32_t volumes = 1,
                    const std::string& id = "B1") {
  BundleHeader h;
  h.kind = "down";
  h.site = "ship";
  h.from_key = p.hub.public_z85;
  h.to_key = p.site.public_z85;
  h.id = id;
  h.volume = volume;
  h.volumes = volumes;
  h.records = records;
  return h;
}

BundleRecord Streams(uint64_t first, std::vector<std::string> entries) {
  BundleRecord r;
  r.kind = BundleRecord::kStreams;
  r.first_seq = first;
  r.entries = std::move(entries);
  r.watermark = 7;
  return r;
}

std::string Volume(const Parties& p, const BundleHeader& h, std::vector<BundleRecord> recs) {
  std::string out = EncodeBundleHead(h);
  const std::string hb = Encode(h);
  for (uint32_t i = 0; i < recs.size(); ++i) {
    recs[i].index = i;
    out += *SealBundleRecord(recs[i], hb, p.hub, p.site.public_z85);
  }
  return out;
}

// Every record of `bytes`, opened as `who`; the first error stops it.
Status ReadAllRecords(std::string_view bytes, const CurveKeys& who, std::vector<BundleRecord>* out) {
  BundleReader r(ReadFromString(bytes));
  OUTPOST_RETURN_IF_ERROR(r.ReadHead());
  for (;;) {
    BundleRecord rec;
    OUTPOST_ASSIGN_OR_RETURN(bool more, r.Next(who, &rec));
    if (!more) return Status::Ok();
    out->push_back(std::move(rec));
  }
}

TEST(BundleTest, AVolumeOpensForItsReceiverInOrder) {
  Parties p;
  std::string v = Volume(p, Header(p, 2), {Streams(1, {"a", "b"}), Streams(3, {"c"})});
  std::vector<BundleRecord> got;
  ASSERT_TRUE(ReadAllRecords(v, p.site, &got).ok());
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].entries, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(got[1].first_seq, 3u);
  EXPECT_EQ(got[1].watermark, 7u);
  // Nobody else can open it: not another site, not the hub itself.
  got.clear();
  EXPECT_EQ(ReadAllRecords(v, p.other, &got).code(), Code::kPermissionDenied);
  EXPECT_TRUE(got.empty());
}

TEST(BundleTest, ACutVolumeIsFoundBeforeAnythingIsOpened) {
  Parties p;
  std::string v = Volume(p, Header(p, 2), {Streams(1, {"a"}), Streams(2, {"b"})});
  for (size_t cut : {v.size() - 1, v.size() - 40, v.size() / 2}) {
    BundleReader r(ReadFromString(std::string_view(v).substr(0, cut)));
    ASSERT_TRUE(r.ReadHead().ok());
    Status s = r.CheckFraming();
    EXPECT_FALSE(s.ok()) << cut;
    EXPECT_NE(s.message().find("cut short"), std::string::npos) << s.message();
  }
  // Cut exactly between records: the count in the header still tells.
  const size_t head = EncodeBundleHead(Header(p, 2)).size();
  const std::string first = Volume(p, Header(p, 1), {Streams(1, {"a"})}).substr(head);  // any length
  BundleReader r(ReadFromString(std::string_view(v).substr(0, head + first.size())));
  ASSERT_TRUE(r.ReadHead().ok());
  EXPECT_NE(r.CheckFraming().message().find("1 of its 2 records"), std::string::npos);
}

TEST(BundleTest, ARecordMovedToAnotherVolumeOrBundleOrAnEditedHeaderIsRefused) {
  Parties p;
  std::string v1 = Volume(p, Header(p, 1, 1, 2), {Streams(1, {"a"})});
  std::string v2 = Volume(p, Header(p, 1, 2, 2), {Streams(2, {"b"})});
  std::string other = Volume(p, Header(p, 1, 1, 2, "B2"), {Streams(1, {"x"})});
  const size_t head = EncodeBundleHead(Header(p, 1, 1, 2)).size();
  std::vector<BundleRecord> got;
  // Volume 2's record behind volume 1's header.
  EXPECT_EQ(ReadAllRecords(v1.substr(0, head) + v2.substr(head), p.site, &got).code(), Code::kCorruption);
  // Another bundle's record.
  EXPECT_EQ(ReadAllRecords(v1.substr(0, head) + other.substr(head), p.site, &got).code(), Code::kCorruption);
  // The header says the hub's watermark is higher than it was.
  BundleHeader edited = Header(p, 1, 1, 2);
  edited.watermark = 99;
  std::string forged = EncodeBundleHead(edited) + v1.substr(head);
  EXPECT_EQ(ReadAllRecords(forged, p.site, &got).code(), Code::kCorruption);
  // A header naming another sender: the record does not open.
  BundleHeader swapped = Header(p, 1, 1, 2);
  swapped.from_key = p.other.public_z85;
  EXPECT_EQ(ReadAllRecords(EncodeBundleHead(swapped) + v1.substr(head), p.site, &got).code(),
            Code::kPermissionDenied);
}

TEST(BundleTest, FuzzedVolumesAreRefusedNeverCrashAndNeverYieldAlteredRecords) {
  Parties p;
  BundleRecord chunk;
  chunk.kind = BundleRecord::kChunk;
  chunk.digest = std::string(64, 'a');
  chunk.size = 10;
  chunk.offset = 0;
  chunk.data = "0123456789";
  const std::string v =
      Volume(p, Header(p, 3), {Streams(1, {"alpha", "beta"}), chunk, Streams(3, {"gamma"})});
  std::vector<BundleRecord> clean;
  ASSERT_TRUE(ReadAllRecords(v, p.site, &clean).ok());
  const uint64_t seed = 20261130;
  Rng rng(seed);
  for (int i = 0; i < 3000; ++i) {
    std::string m = v;
    const int edits = 1 + static_cast<int>(rng.Uniform(4));
    for (int e = 0; e < edits; ++e) {
      if (m.empty()) break;
      const size_t at = std::min<size_t>(rng.Uniform(m.size()), m.size() - 1);
      switch (rng.Uniform(3)) {
        case 0: m[at] ^= static_cast<char>(1 + rng.Uniform(255)); break;
        case 1: m.resize(at); break;
        default: m.insert(at, std::string(1 + rng.Uniform(8), static_cast<char>(rng.Uniform(256))));
      }
    }
    std::vector<BundleRecord> got;
    Status s = ReadAllRecords(m, p.site, &got);
    // Whatever opened is exactly what was sealed, in its place.
    ASSERT_LE(got.size(), clean.size()) << "seed " << seed << " case " << i;
    for (size_t k = 0; k < got.size(); ++k) {
      EXPECT_EQ(got[k].entries, clean[k].entries) << "seed " << seed << " case " << i;
      EXPECT_EQ(got[k].data, clean[k].data) << "seed " << seed << " case " << i;
    }
    // Any change at all is refused somewhere (framing, header hash, MAC, position).
    if (m != v) {
      EXPECT_FALSE(s.ok()) << "seed " << seed << " case " << i;
    }
  }
}

TEST(BundleTest, Blake2bStreamIsTheContentDigest) {
  Blake2bStream h;
  h.Update("hello ");
  h.Update("world");
  Blake2bStream whole;
  whole.Update("hello world");
  const std::string d = h.HexDigest();
  EXPECT_EQ(d, whole.HexDigest());
  EXPECT_TRUE(IsArtifactDigest(d));
  EXPECT_FALSE(IsArtifactDigest(d.substr(1)));
  EXPECT_FALSE(IsArtifactDigest(std::string(64, 'G')));
}

}  // namespace
}  // namespace outpost
