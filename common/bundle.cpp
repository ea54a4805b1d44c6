#include "common/bundle.h"

#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>

#include "common/trust.h"

namespace outpost {

namespace {

std::string U32be(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>((v >> (24 - 8 * i)) & 0xff);
  return s;
}

uint32_t ReadU32be(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

bool KeyBytes(const std::string& z85, uint8_t out[32]) {
  return z85.size() == 40 && zmq_z85_decode(out, z85.c_str()) != nullptr;
}

std::string HeaderHash(const std::string& header_bytes) { return Blake2bHex(header_bytes, 32); }

}  // namespace

std::string EncodeBundleHead(const BundleHeader& h) {
  std::string body = Encode(h);
  return std::string(kBundleMagic) + U32be(static_cast<uint32_t>(body.size())) + body;
}

Result<std::string> SealBundleRecord(BundleRecord r, const std::string& header_bytes,
                                     const CurveKeys& from, const std::string& to_public_z85) {
  if (sodium_init() < 0) return Status::Internal("libsodium did not initialise");
  BundleHeader h;
  DecodeLimits limits;
  limits.max_bytes = kMaxBundleHeaderBytes;
  OUTPOST_RETURN_IF_ERROR(Decode(header_bytes, &h, limits));
  r.id = h.id;
  r.volume = h.volume;
  r.count = h.records;
  r.header_hash = HeaderHash(header_bytes);
  uint8_t pk[32], sk[32];
  if (!KeyBytes(to_public_z85, pk)) return Status::InvalidArgument("the receiver's key is not Z85");
  if (!KeyBytes(from.secret_z85, sk)) return Status::InvalidArgument("the sender's key is not Z85");
  const std::string plain = Encode(r);
  std::string out = U32be(static_cast<uint32_t>(crypto_box_NONCEBYTES + crypto_box_MACBYTES + plain.size()));
  out.resize(4 + crypto_box_NONCEBYTES + crypto_box_MACBYTES + plain.size());
  auto* nonce = reinterpret_cast<unsigned char*>(out.data() + 4);
  randombytes_buf(nonce, crypto_box_NONCEBYTES);
  int rc = crypto_box_easy(nonce + crypto_box_NONCEBYTES,
                           reinterpret_cast<const unsigned char*>(plain.data()), plain.size(), nonce,
                           pk, sk);
  sodium_memzero(sk, sizeof sk);
  if (rc != 0) return Status::Internal("crypto_box_easy failed");
  if (out.size() - 4 > kMaxBundleRecordBytes) return Status::InvalidArgument("bundle record too large");
  return out;
}

Status BundleReader::ReadExact(char* buf, size_t n, bool* eof) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read_(buf + got, n - got);
    if (r < 0) return Status::IoError(std::string("reading the bundle: ") + strerror(errno));
    if (r == 0) {
      if (got == 0 && eof) {
        *eof = true;
        return Status::Ok();
      }
      return Status::Corruption(where_ + "ends in the middle of a record at byte " +
                                std::to_string(offset_ + got) + " (cut short?)");
    }
    got += static_cast<size_t>(r);
  }
  offset_ += n;
  if (eof) *eof = false;
  return Status::Ok();
}

Status BundleReader::ReadHead() {
  std::string magic(kBundleMagic.size(), '\0');
  bool eof = false;
  Status s = ReadExact(magic.data(), magic.size(), &eof);
  if (!s.ok() || eof || magic != kBundleMagic) {
    return Status::InvalidArgument("not an Outpost bundle (no \"OUTPOST-BUNDLE 1\" at its start)");
  }
  char len[4];
  OUTPOST_RETURN_IF_ERROR(ReadExact(len, 4, nullptr));
  const uint32_t n = ReadU32be(len);
  if (n == 0 || n > kMaxBundleHeaderBytes) {
    return Status::Corruption("the bundle header claims " + std::to_string(n) + " bytes");
  }
  header_bytes_.assign(n, '\0');
  OUTPOST_RETURN_IF_ERROR(ReadExact(header_bytes_.data(), n, nullptr));
  DecodeLimits limits;
  limits.max_bytes = kMaxBundleHeaderBytes;
  limits.max_depth = 4;
  Status d = Decode(header_bytes_, &header_, limits);
  if (!d.ok()) return Status::Corruption("the bundle header does not decode: " + d.message());
  if (header_.kind != "down" && header_.kind != "up") {
    return Status::Corruption("the bundle header's kind is '" + header_.kind + "', not down or up");
  }
  where_ = "volume " + std::to_string(header_.volume) + " of bundle " + header_.id + " ";
  if (header_.volume == 0 || header_.volume > header_.volumes) {
    return Status::Corruption("the bundle header says volume " + std::to_string(header_.volume) +
                              " of " + std::to_string(header_.volumes));
  }
  return Status::Ok();
}

Result<bool> BundleReader::NextBoxed(std::string* boxed) {
  char len[4];
  bool eof = false;
  OUTPOST_RETURN_IF_ERROR(ReadExact(len, 4, &eof));
  if (eof) {
    if (next_index_ != header_.records) {
      return Status::Corruption(where_ + "ends after " + std::to_string(next_index_) + " of its " +
                                std::to_string(header_.records) + " records (cut short?)");
    }
    return false;
  }
  if (next_index_ >= header_.records) {
    return Status::Corruption(where_ + "has more than the " + std::to_string(header_.records) +
                              " records its header names");
  }
  const uint32_t n = ReadU32be(len);
  if (n < crypto_box_NONCEBYTES + crypto_box_MACBYTES || n > kMaxBundleRecordBytes) {
    return Status::Corruption("record " + std::to_string(next_index_ + 1) + " of volume " +
                              std::to_string(header_.volume) + " claims " + std::to_string(n) +
                              " bytes");
  }
  boxed->assign(n, '\0');
  OUTPOST_RETURN_IF_ERROR(ReadExact(boxed->data(), n, nullptr));
  ++next_index_;
  return true;
}

Status BundleReader::CheckFraming() {
  std::string boxed;
  for (;;) {
    OUTPOST_ASSIGN_OR_RETURN(bool more, NextBoxed(&boxed));
    if (!more) return Status::Ok();
  }
}

Result<bool> BundleReader::Next(const CurveKeys& my, BundleRecord* out) {
  std::string boxed;
  const uint32_t index = next_index_;
  OUTPOST_ASSIGN_OR_RETURN(bool more, NextBoxed(&boxed));
  if (!more) return false;
  OUTPOST_ASSIGN_OR_RETURN(*out, OpenBundleRecord(boxed, header_, header_bytes_, my, index));
  return true;
}

Result<BundleRecord> OpenBundleRecord(std::string_view boxed, const BundleHeader& h,
                                      const std::string& header_bytes, const CurveKeys& my,
                                      uint32_t index) {
  if (sodium_init() < 0) return Status::Internal("libsodium did not initialise");
  const std::string where = "record " + std::to_string(index + 1) + " of volume " +
                            std::to_string(h.volume) + " of bundle " + h.id;
  const size_t n = boxed.size();
  if (n < crypto_box_NONCEBYTES + crypto_box_MACBYTES || n > kMaxBundleRecordBytes) {
    return Status::Corruption(where + " has " + std::to_string(n) + " bytes");
  }
  uint8_t pk[32], sk[32];
  if (!KeyBytes(h.from_key, pk)) {
    return Status::Corruption("the bundle header's sender key is not a Z85 key");
  }
  if (!KeyBytes(my.secret_z85, sk)) return Status::InvalidArgument("our secret key is not Z85");
  const auto* nonce = reinterpret_cast<const unsigned char*>(boxed.data());
  std::string plain(n - crypto_box_NONCEBYTES - crypto_box_MACBYTES, '\0');
  int rc = crypto_box_open_easy(reinterpret_cast<unsigned char*>(plain.data()),
                                nonce + crypto_box_NONCEBYTES, n - crypto_box_NONCEBYTES, nonce, pk,
                                sk);
  sodium_memzero(sk, sizeof sk);
  if (rc != 0) {
    return Status::PermissionDenied(
        where + " does not open: it was damaged on the way, or it was not sealed by the key "
        "the header names for this receiver");
  }
  DecodeLimits limits;
  limits.max_bytes = kMaxBundleRecordBytes;
  limits.max_str = kMaxBundleRecordBytes;
  limits.max_bin = kMaxBundleRecordBytes;
  limits.max_array = 1 << 20;
  limits.max_depth = 4;
  BundleRecord r;
  Status d = Decode(plain, &r, limits);
  if (!d.ok()) return Status::Corruption(where + " does not decode: " + d.message());
  // Authentic, but is it this volume's record at this place?
  if (r.id != h.id || r.volume != h.volume || r.count != h.records || r.index != index ||
      r.header_hash != HeaderHash(header_bytes)) {
    return Status::Corruption(where + " belongs to another bundle, volume or position, or the "
                              "header was edited");
  }
  if (r.kind != BundleRecord::kStreams && r.kind != BundleRecord::kChunk) {
    return Status::Corruption(where + " has unknown kind " + std::to_string(r.kind));
  }
  if (r.kind == BundleRecord::kChunk &&
      (!IsArtifactDigest(r.digest) || r.data.size() > kArtifactChunkBytes ||
       r.offset % kArtifactChunkBytes != 0 || r.size > kMaxArtifactBytes ||
       r.offset + r.data.size() > r.size)) {
    return Status::Corruption(where + " is an artifact chunk that does not fit its artifact");
  }
  return r;
}

Status DecodeBundleHead(std::string_view bytes, BundleHeader* h, std::string* header_bytes,
                        size_t* used) {
  BundleReader reader(ReadFromString(bytes));
  OUTPOST_RETURN_IF_ERROR(reader.ReadHead());
  *h = reader.header();
  *header_bytes = reader.header_bytes();
  *used = reader.offset();
  return Status::Ok();
}

BundleReader::ReadFn ReadFromString(std::string_view bytes) {
  auto pos = std::make_shared<size_t>(0);
  return [bytes, pos](char* buf, size_t n) -> ssize_t {
    size_t take = std::min(n, bytes.size() - *pos);
    memcpy(buf, bytes.data() + *pos, take);
    *pos += take;
    return static_cast<ssize_t>(take);
  };
}

BundleReader::ReadFn ReadFromFd(int fd) {
  return [fd](char* buf, size_t n) -> ssize_t {
    for (;;) {
      ssize_t r = read(fd, buf, n);
      if (r < 0 && errno == EINTR) continue;
      return r;
    }
  };
}

Blake2bStream::Blake2bStream() {
  if (sodium_init() < 0) abort();
  crypto_generichash_init(&state_, nullptr, 0, 32);
}

void Blake2bStream::Update(std::string_view bytes) {
  crypto_generichash_update(&state_, reinterpret_cast<const unsigned char*>(bytes.data()),
                            bytes.size());
}

std::string Blake2bStream::HexDigest() {
  unsigned char out[32];
  crypto_generichash_final(&state_, out, sizeof out);
  static const char* kHex = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : out) {
    hex += kHex[c >> 4];
    hex += kHex[c & 15];
  }
  return hex;
}

bool IsArtifactDigest(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace outpost
