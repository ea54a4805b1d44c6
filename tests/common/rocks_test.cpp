// OpenRocks against damaged reads of the MANIFEST: whatever byte of it a read returns
// flipped, the database either refuses to open or opens with every synced write, and a
// clean open afterwards finds them all. (The 10,000-seed storm sweep lost a whole site
// log at a reopen that followed one flipped MANIFEST read, seeds 2411 and 2734; this
// test does not reproduce it, so that loss needs more than one flipped byte: see
// docs/simulator.md.)
#include "common/rocks.h"

#include <gtest/gtest.h>
#include <rocksdb/env.h>

#include <memory>
#include <string>

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

TEST(OpenRocksTest, ADamagedManifestReadNeverOpensWithoutTheSyncedWrites) {
  std::unique_ptr<rocksdb::Env> mem(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  FlipManifest env(mem.get());
  RocksOptions o;
  o.env = &env;
  const std::vector<std::string> names = {"log", "state", "meta"};
  {
    auto h = OpenRocks("/db", names, o);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    rocksdb::WriteOptions wo;
    wo.sync = true;
    for (size_t i = 0; i < names.size(); ++i) {
      ASSERT_TRUE(h->db->Put(wo, h->cfs[i + 1], "k", "v-" + names[i]).ok());
    }
  }
  uint64_t manifest_size = 0;
  std::vector<std::string> children;
  ASSERT_TRUE(mem->GetChildren("/db", &children).ok());
  std::string manifest;
  for (const auto& c : children) {
    if (c.rfind("MANIFEST-", 0) == 0) manifest = "/db/" + c;
  }
  ASSERT_TRUE(mem->GetFileSize(manifest, &manifest_size).ok());
  ASSERT_GT(manifest_size, 0u);
  int refused = 0, opened = 0;
  auto check_all = [&](RocksHandles& h, const std::string& when) {
    for (size_t i = 0; i < names.size(); ++i) {
      std::string v;
      ASSERT_TRUE(h.db->Get(rocksdb::ReadOptions(), h.cfs[i + 1], "k", &v).ok())
          << when << ": column family " << names[i] << " lost its write";
      ASSERT_EQ(v, "v-" + names[i]) << when;
    }
  };
  for (int nth = 1; nth <= 3; ++nth) {
    for (uint64_t at = 0; at < manifest_size; ++at) {
      const std::string when = "read " + std::to_string(nth) + " of the MANIFEST flipped at byte " +
                               std::to_string(at);
      env.Arm(nth, at);
      {
        auto h = OpenRocks("/db", names, o);
        if (h.ok()) {
          ++opened;
          check_all(*h, when);
        } else {
          ++refused;
        }
      }
      // Whatever that open did, a clean one finds every write.
      env.Arm(0, 0);
      auto again = OpenRocks("/db", names, o);
      ASSERT_TRUE(again.ok()) << when << ", then: " << again.status().ToString();
      check_all(*again, when + ", then reopened");
      if (HasFatalFailure()) return;
    }
  }
  EXPECT_GT(opened, 0);
  EXPECT_GT(refused, 0);
}

}  // namespace
}  // namespace outpost
