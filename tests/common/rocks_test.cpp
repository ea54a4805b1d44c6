// OpenRocks against a damaged MANIFEST, in one read of it or on the disk: whatever byte
// is flipped, the database either refuses to open and changes nothing, or opens with
// every synced write. (RocksDB reads a damaged MANIFEST record as the torn end of the
// file; the 10,000-seed storm sweep lost a whole site log that way, seeds 2411 and
// 2734: one flipped read hid three column families and the open created them empty.)
#include "common/rocks.h"

#include <gtest/gtest.h>
#include <rocksdb/env.h>

#include <rocksdb/file_system.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace outpost {
namespace {

// Flips one byte (xor 0x20, as the simulator's disks do) at `offset` of the `nth` read
// of a MANIFEST file opened for sequential reading.
class FlipManifest final : public rocksdb::EnvWrapper {
 public:
  explicit FlipManifest(rocksdb::Env* base) : EnvWrapper(base) {}
  const char* Name() const override { return "FlipManifest"; }
  void Arm(int nth, uint64_t offset) {
    nth_ = nth;
    offset_ = offset;
    opened_ = 0;
  }
  rocksdb::Status NewSequentialFile(const std::string& f, std::unique_ptr<rocksdb::SequentialFile>* r,
                                    const rocksdb::EnvOptions& o) override {
    rocksdb::Status s = target()->NewSequentialFile(f, r, o);
    if (!s.ok() || f.find("MANIFEST-") == std::string::npos) return s;
    if (++opened_ == nth_) r->reset(new Flipper(std::move(*r), offset_));
    return s;
  }

 private:
  class Flipper final : public rocksdb::SequentialFile {
   public:
    Flipper(std::unique_ptr<rocksdb::SequentialFile> f, uint64_t at) : f_(std::move(f)), at_(at) {}
    rocksdb::Status Read(size_t n, rocksdb::Slice* result, char* scratch) override {
      rocksdb::Status s = f_->Read(n, result, scratch);
      if (s.ok() && at_ >= pos_ && at_ < pos_ + result->size()) {
        if (result->data() != scratch) {
          std::copy(result->data(), result->data() + result->size(), scratch);
          *result = rocksdb::Slice(scratch, result->size());
        }
        scratch[at_ - pos_] ^= 0x20;
      }
      pos_ += result->size();
      return s;
    }
    rocksdb::Status Skip(uint64_t n) override {
      pos_ += n;
      return f_->Skip(n);
    }

   private:
    std::unique_ptr<rocksdb::SequentialFile> f_;
    uint64_t at_;
    uint64_t pos_ = 0;
  };
  int nth_ = 0;
  uint64_t offset_ = 0;
  int opened_ = 0;
};

// A disk image of a database as a kill -9 or power cut leaves it (every file synced,
// the database never closed), copied file by file so each trial starts from it.
using Image = std::map<std::string, std::string>;

Image TakeImage(rocksdb::Env* env, const std::string& dir) {
  Image img;
  std::vector<std::string> children;
  EXPECT_TRUE(env->GetChildren(dir, &children).ok());
  for (const auto& c : children) {
    if (c == "." || c == ".." || c == "LOCK") continue;
    std::string content;
    EXPECT_TRUE(rocksdb::ReadFileToString(env, dir + "/" + c, &content).ok()) << c;
    img[c] = std::move(content);
  }
  return img;
}

void PutImage(rocksdb::Env* env, const std::string& dir, const Image& img) {
  std::vector<std::string> children;
  if (env->GetChildren(dir, &children).ok()) {
    for (const auto& c : children) {
      if (c != "." && c != "..") env->DeleteFile(dir + "/" + c).PermitUncheckedError();
    }
  }
  env->CreateDirIfMissing(dir).PermitUncheckedError();
  for (const auto& [name, content] : img) {
    ASSERT_TRUE(rocksdb::WriteStringToFile(env, content, dir + "/" + name, true).ok()) << name;
  }
}

const std::vector<std::string> kNames = {"log", "state", "meta"};

// Every synced write the image holds: `rounds` keys in each column family.
void CheckAll(RocksHandles& h, int rounds, const std::string& when) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    for (int r = 0; r < rounds; ++r) {
      std::string v;
      rocksdb::Status s = h.db->Get(rocksdb::ReadOptions(), h.cfs[i + 1], "k" + std::to_string(r), &v);
      ASSERT_TRUE(s.ok()) << when << ": column family " << kNames[i] << " lost write " << r << ": "
                          << s.ToString();
      ASSERT_EQ(v, kNames[i] + "-" + std::to_string(r)) << when;
    }
  }
}

// Builds a database at /img: `rounds` synced writes to each column family, a flush of
// one column family after each round when `flushes`; returns its image.
Image Build(rocksdb::Env* env, int rounds, bool flushes) {
  RocksOptions o;
  o.env = env;
  auto h = OpenRocks("/img", kNames, o);
  EXPECT_TRUE(h.ok()) << h.status().ToString();
  if (!h.ok()) return {};
  rocksdb::WriteOptions wo;
  wo.sync = true;
  for (int r = 0; r < rounds; ++r) {
    for (size_t i = 0; i < kNames.size(); ++i) {
      EXPECT_TRUE(h->db->Put(wo, h->cfs[i + 1], "k" + std::to_string(r),
                             kNames[i] + "-" + std::to_string(r)).ok());
    }
    if (flushes) {
      EXPECT_TRUE(h->db->Flush(rocksdb::FlushOptions(), h->cfs[1 + r % kNames.size()]).ok());
    }
  }
  Image img = TakeImage(env, "/img");
  return img;
}

std::string ManifestOf(const Image& img) {
  for (const auto& [name, content] : img) {
    if (name.rfind("MANIFEST-", 0) == 0) return name;
  }
  return "";
}

// Flips each byte of the image's MANIFEST in turn: in one read of it (`persistent`
// false: reads 1 to 3 of the open) or on the disk. The open must refuse or find every
// synced write; then, with the disk as it was (the read error passed, or the damaged
// MANIFEST put right from a backup), an open finds every write: a refused open changed
// nothing.
void FlipEveryManifestByte(int rounds, bool flushes, bool persistent) {
  std::unique_ptr<rocksdb::Env> mem(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  FlipManifest env(mem.get());
  RocksOptions o;
  o.env = &env;
  const Image img = Build(mem.get(), rounds, flushes);
  const std::string manifest = ManifestOf(img);
  ASSERT_FALSE(manifest.empty());
  const size_t manifest_size = img.at(manifest).size();
  int refused = 0, opened = 0;
  for (int nth = 1; nth <= (persistent ? 1 : 3); ++nth) {
    for (uint64_t at = 0; at < manifest_size; ++at) {
      const std::string when = (persistent ? "" : "read " + std::to_string(nth) + " of ") + manifest +
                               " flipped at byte " + std::to_string(at) + " of " +
                               std::to_string(manifest_size) + (persistent ? " on the disk" : "");
      Image damaged = img;
      if (persistent) {
        damaged[manifest][at] = static_cast<char>(damaged[manifest][at] ^ 0x20);
      } else {
        env.Arm(nth, at);
      }
      PutImage(mem.get(), "/db", damaged);
      bool refused_this = false;
      {
        auto h = OpenRocks("/db", kNames, o);
        if (h.ok()) {
          ++opened;
          CheckAll(*h, rounds, when);
        } else {
          ++refused;
          refused_this = true;
        }
      }
      env.Arm(0, 0);
      // A refused open left the files as they were; put the MANIFEST right.
      if (persistent && refused_this) {
        ASSERT_TRUE(rocksdb::WriteStringToFile(mem.get(), img.at(manifest), "/db/" + manifest, true).ok());
      }
      if (!persistent || refused_this) {
        auto again = OpenRocks("/db", kNames, o);
        ASSERT_TRUE(again.ok()) << when << ", then: " << again.status().ToString();
        CheckAll(*again, rounds, when + ", then reopened");
      }
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
  if (!persistent) {
    EXPECT_GT(opened, 0);  // a flip in a third read is never seen
  }
  EXPECT_GT(refused, 0);
}

// The database as first created: its MANIFEST holds one record per column family
// created, and the WAL every write (storm seeds 2411 and 2734).
TEST(OpenRocksTest, ADamagedManifestReadOfANewDatabaseNeverLosesSyncedWrites) {
  FlipEveryManifestByte(4, false, false);
}

TEST(OpenRocksTest, ADamagedManifestOfANewDatabaseNeverLosesSyncedWrites) {
  FlipEveryManifestByte(4, false, true);
}

// A database whose MANIFEST also records flushes (new tables, WALs made obsolete).
TEST(OpenRocksTest, ADamagedManifestReadAfterFlushesNeverLosesSyncedWrites) {
  FlipEveryManifestByte(6, true, false);
}

TEST(OpenRocksTest, ADamagedManifestAfterFlushesNeverLosesSyncedWrites) {
  FlipEveryManifestByte(6, true, true);
}

// A power cut in the middle of a MANIFEST write leaves a record cut short at its end:
// the database opens with every write (that edit never took effect).
TEST(OpenRocksTest, AManifestWhoseLastWriteWasCutOpensWithEveryWrite) {
  std::unique_ptr<rocksdb::Env> mem(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  RocksOptions o;
  o.env = mem.get();
  const Image img = Build(mem.get(), 6, true);
  const std::string manifest = ManifestOf(img);
  ASSERT_FALSE(manifest.empty());
  const std::string& m = img.at(manifest);
  const size_t first_record = 7 + (static_cast<unsigned char>(m[4]) | static_cast<unsigned char>(m[5]) << 8);
  for (size_t k = 1; k < first_record; ++k) {
    Image torn = img;
    torn[manifest] += m.substr(0, k);  // the first k bytes of a record being written
    PutImage(mem.get(), "/db", torn);
    auto h = OpenRocks("/db", kNames, o);
    ASSERT_TRUE(h.ok()) << manifest << " with " << k << " bytes of a cut write: " << h.status().ToString();
    CheckAll(*h, 6, "a cut write of " + std::to_string(k) + " bytes");
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// A database created by an open that was cut short (a power cut between two of its
// column families) has no acknowledged write yet: the next open completes it.
TEST(OpenRocksTest, AnInterruptedCreationIsCompletedByTheNextOpen) {
  std::unique_ptr<rocksdb::Env> mem(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  RocksOptions o;
  o.env = mem.get();
  {
    auto h = OpenRocks("/db", {"log"}, o);  // as far as the cut creation got
    ASSERT_TRUE(h.ok()) << h.status().ToString();
  }
  std::vector<std::string> children;
  ASSERT_TRUE(mem->GetChildren("/db", &children).ok());
  for (const auto& c : children) {
    if (c.rfind(kRocksCreatedFile, 0) == 0) {
      ASSERT_TRUE(mem->DeleteFile("/db/" + c).ok());
    }
  }
  auto h = OpenRocks("/db", kNames, o);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  ASSERT_EQ(h->cfs.size(), kNames.size() + 1);
}

// A column family missing from a completed database is damage, named in the error; the
// database is left as it was.
TEST(OpenRocksTest, AColumnFamilyMissingFromACompletedDatabaseIsRefused) {
  std::unique_ptr<rocksdb::Env> mem(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  RocksOptions o;
  o.env = mem.get();
  {
    auto h = OpenRocks("/db", kNames, o);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    ASSERT_TRUE(h->db->DropColumnFamily(h->cfs[2]).ok());
  }
  auto h = OpenRocks("/db", kNames, o);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), Code::kCorruption) << h.status().ToString();
  EXPECT_NE(h.status().message().find("state"), std::string::npos) << h.status().ToString();
  // A database that gains a column family in a new release still opens.
  auto more = OpenRocks("/db2", {"log"}, o);
  ASSERT_TRUE(more.ok());
  more->Close();
  auto grown = OpenRocks("/db2", {"log", "extra"}, o);
  ASSERT_TRUE(grown.ok()) << grown.status().ToString();
}

}  // namespace
}  // namespace outpost
