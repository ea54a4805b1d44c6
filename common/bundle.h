// Bundles: the two sync streams carried on removable media (docs/protocol.md, "Bundles").
//
// A bundle moves what a SyncSession would have moved over the link, for a site that has
// none: downstream (hub -> site) the site's commands after what the hub knows it applied,
// the hub's watermark of the site's events, and the chunks of artifacts the site lacks;
// upstream (site -> hub) the site's events after what the site knows the hub has, and the
// site's watermark of the hub's commands. The receiver applies them through the same
// idempotent, watermarked path as a BATCH, so a bundle imported twice, late or out of
// order changes nothing wrongly.
//
// One bundle is one or more volumes (files). Each volume is self-contained:
//   "OUTPOST-BUNDLE 1\n"
//   u32be n, header (msgpack BundleHeader, n bytes; plaintext, for `bundle show`)
//   records: u32be n, nonce (24 bytes) + crypto_box_easy(msgpack BundleRecord)
// Records are boxed from the sender's CURVE secret key to the receiver's public key (the
// keys the link already uses), so a lost volume reveals nothing and a forged or swapped
// one opens for nobody. Each record names its bundle, volume, index and the volume's
// record count, and carries the BLAKE2b hash of the header bytes: a record moved between
// volumes, a header edited, or a volume cut short is refused before anything is applied.
//
// Thread-safety: stateless functions and plain values.
#pragma once

#include <sodium.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/codec.h"
#include "common/keys.h"
#include "common/status.h"

namespace outpost {

inline constexpr std::string_view kBundleMagic = "OUTPOST-BUNDLE 1\n";
inline constexpr size_t kMaxBundleHeaderBytes = 256 << 10;
inline constexpr size_t kMaxBundleRecordBytes = 6 << 20;
// A streams record holds at most this many bytes of entries (a volume holds several).
inline constexpr size_t kBundleStreamBytes = 2 << 20;
// Artifacts are stored, moved and verified in chunks of this size (the last may be short).
inline constexpr size_t kArtifactChunkBytes = 1 << 20;
// The largest artifact: 1024 chunks (1 GiB). A size past it is refused wherever it is read.
inline constexpr uint64_t kMaxArtifactBytes = uint64_t{1024} * kArtifactChunkBytes;

struct BundleArtifact {
  std::string digest;  // BLAKE2b-256 hex of the whole file
  uint64_t size = 0;
  uint32_t chunks = 0;  // chunks of it in this volume
  MSGPACK_DEFINE_MAP(digest, size, chunks);
};

struct BundleHeader {
  std::string kind;      // "down" (hub -> site) or "up" (site -> hub)
  std::string site;      // the site's name
  std::string from_key;  // the sender's CURVE public key (Z85)
  std::string to_key;    // the receiver's
  std::string id;        // one id for every volume of a bundle
  TimeMs created = 0;
  uint32_t volume = 1;   // 1-based
  uint32_t volumes = 1;
  uint32_t records = 0;  // records in this volume
  uint64_t incarnation = 0;  // the site's database the streams belong to (0: not known yet)
  uint64_t first = 0;        // stream entries in this volume: first..last (0..0: none)
  uint64_t last = 0;
  uint64_t watermark = 0;    // down: hub's applied of the site's events; up: site's of commands
  std::vector<BundleArtifact> artifacts;
  MSGPACK_DEFINE_MAP(kind, site, from_key, to_key, id, created, volume, volumes, records,
                     incarnation, first, last, watermark, artifacts);
};

struct BundleRecord {
  enum Kind : uint8_t { kStreams = 1, kChunk = 2 };
  std::string id;
  std::string header_hash;
  uint32_t volume = 0;
  uint32_t index = 0;  // 0-based within the volume
  uint32_t count = 0;  // records in the volume
  uint8_t kind = 0;
  // kStreams: entries first_seq.. of the stream, and the sender's watermark of the other.
  uint64_t incarnation = 0;
  uint64_t first_seq = 0;
  std::vector<std::string> entries;
  uint64_t watermark = 0;
  // kChunk: bytes [offset, offset + data.size()) of artifact `digest` (`size` bytes).
  std::string digest;
  uint64_t size = 0;
  uint64_t offset = 0;
  std::string data;
  MSGPACK_DEFINE_MAP(id, header_hash, volume, index, count, kind, incarnation, first_seq, entries,
                     watermark, digest, size, offset, data);
};

// The volume's first bytes: magic and framed header.
std::string EncodeBundleHead(const BundleHeader& h);
// One framed, boxed record from `from` to `to_public_z85`. Sets id, volume, count and the
// header hash from `header_bytes` (the msgpack header as framed).
Result<std::string> SealBundleRecord(BundleRecord r, const std::string& header_bytes,
                                     const CurveKeys& from, const std::string& to_public_z85);

// Opens one record (`boxed`: nonce and box, without the length) found at position `index`
// of the volume whose header is `h` (as `header_bytes`), with the receiver's keys `my`.
Result<BundleRecord> OpenBundleRecord(std::string_view boxed, const BundleHeader& h,
                                      const std::string& header_bytes, const CurveKeys& my,
                                      uint32_t index);
// Decodes a volume's head (magic and header) from the start of `bytes`; `used` gets its
// length.
Status DecodeBundleHead(std::string_view bytes, BundleHeader* h, std::string* header_bytes,
                        size_t* used);

// Reads one volume from a byte source. Never throws; every error names what and where.
class BundleReader {
 public:
  // `read(buf, n)` fills up to n bytes and returns how many (0 at the end), or -1.
  using ReadFn = std::function<ssize_t(char*, size_t)>;
  explicit BundleReader(ReadFn read) : read_(std::move(read)) {}
  // Magic and header.
  Status ReadHead();
  const BundleHeader& header() const { return header_; }
  const std::string& header_bytes() const { return header_bytes_; }
  // The next record, opened with `my` keys and checked against the header and position;
  // false at a clean end of the volume.
  Result<bool> Next(const CurveKeys& my, BundleRecord* out);
  // Bytes consumed so far (for error positions).
  uint64_t offset() const { return offset_; }
  // Checks the volume's framing to its end without opening records: the record lengths
  // and count agree with the header (a volume cut short is found before anything is
  // applied). The reader is used up afterwards.
  Status CheckFraming();
  // The next record's bytes without opening it (false at the end).
  Result<bool> NextBoxed(std::string* boxed);

 private:
  Status ReadExact(char* buf, size_t n, bool* eof);
  ReadFn read_;
  BundleHeader header_;
  std::string header_bytes_;
  uint64_t offset_ = 0;
  uint32_t next_index_ = 0;
  std::string where_ = "the volume ";  // "volume V of bundle ID " once the header is read
};

// A reader over bytes in memory (valid while `bytes` lives).
BundleReader::ReadFn ReadFromString(std::string_view bytes);
// A reader over a file descriptor (from its current offset).
BundleReader::ReadFn ReadFromFd(int fd);

// Streaming BLAKE2b-256 (the artifact digest).
class Blake2bStream {
 public:
  Blake2bStream();
  void Update(std::string_view bytes);
  std::string HexDigest();  // once

 private:
  crypto_generichash_state state_;
};

bool IsArtifactDigest(std::string_view s);

}  // namespace outpost
