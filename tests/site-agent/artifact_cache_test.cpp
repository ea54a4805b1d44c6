// ArtifactCache: chunks in any order, resumed after a restart, verified before use,
// evicted least recently used first and never while needed.
#include "site-agent/artifact_cache.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/bundle.h"
#include "common/random.h"
#include "common/trust.h"

namespace outpost {
namespace {

namespace fs = std::filesystem;

class ArtifactCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("outpost_artifacts_" + std::to_string(getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static std::string Bytes(size_t n, uint64_t seed) {
    Rng rng(seed);
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng.Uniform(256));
    return s;
  }
  static std::string Chunk(const std::string& file, uint64_t i) {
    return file.substr(i * kArtifactChunkBytes, kArtifactChunkBytes);
  }
  std::unique_ptr<ArtifactCache> Open(uint64_t budget = 0) {
    auto c = ArtifactCache::Open(dir_.string(), budget);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return std::move(c).value();
  }

  fs::path dir_;
};

TEST_F(ArtifactCacheTest, ChunksInAnyOrderAcrossARestartMakeTheVerifiedFile) {
  const std::string file = Bytes(3 * kArtifactChunkBytes + 12345, 1);
  const std::string digest = ContentDigest(file);
  {
    auto cache = Open();
    EXPECT_FALSE(cache->Use(digest).ok());
    ASSERT_FALSE(*cache->PutChunk(digest, file.size(), 3, Chunk(file, 3)));
    ASSERT_FALSE(*cache->PutChunk(digest, file.size(), 1, Chunk(file, 1)));
    EXPECT_EQ(cache->Missing(digest, file.size(), 10), (std::vector<uint64_t>{0, 2}));
    EXPECT_EQ(cache->Partial(digest)->have, 2u);
  }
  auto cache = Open();  // the agent restarted: what was durable is still there
  EXPECT_EQ(cache->Missing(digest, file.size(), 10), (std::vector<uint64_t>{0, 2}));
  ASSERT_FALSE(*cache->PutChunk(digest, file.size(), 1, Chunk(file, 1)));  // a duplicate
  ASSERT_FALSE(*cache->PutChunk(digest, file.size(), 0, Chunk(file, 0)));
  ASSERT_TRUE(*cache->PutChunk(digest, file.size(), 2, Chunk(file, 2)));
  auto path = cache->Use(digest);
  ASSERT_TRUE(path.ok());
  std::ifstream in(*path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), file);
  struct stat st;
  ASSERT_EQ(stat(path->c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u) << "tasks read it, nobody writes it";
  EXPECT_TRUE(cache->Missing(digest, file.size(), 10).empty());
  EXPECT_TRUE(cache->Partials().empty());
}

TEST_F(ArtifactCacheTest, ChunksThatDoNotHashToTheDigestAreThrownAway) {
  const std::string file = Bytes(2 * kArtifactChunkBytes, 2);
  const std::string digest = ContentDigest(file);
  auto cache = Open();
  std::string wrong = Chunk(file, 1);
  wrong[5] ^= 1;
  ASSERT_FALSE(*cache->PutChunk(digest, file.size(), 0, Chunk(file, 0)));
  auto r = cache->PutChunk(digest, file.size(), 1, wrong);
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  EXPECT_FALSE(cache->Has(digest));
  EXPECT_EQ(cache->Missing(digest, file.size(), 10), (std::vector<uint64_t>{0, 1})) << "from zero";
  // Wrong sizes and places are refused outright.
  EXPECT_FALSE(cache->PutChunk(digest, file.size(), 2, "x").ok());
  EXPECT_FALSE(cache->PutChunk(digest, file.size(), 0, "short").ok());
  EXPECT_FALSE(cache->PutChunk("not-a-digest", file.size(), 0, Chunk(file, 0)).ok());
}

TEST_F(ArtifactCacheTest, TheBudgetEvictsLeastRecentlyUsedButNeverWhatIsNeeded) {
  auto cache = Open(/*budget=*/2 * 1000);
  std::vector<std::string> digests;
  for (int i = 0; i < 4; ++i) {
    const std::string f = Bytes(1000, 10 + i);
    digests.push_back(ContentDigest(f));
    ASSERT_TRUE(*cache->PutChunk(digests.back(), f.size(), 0, f));
    // Distinct last-use times, oldest first.
    const std::string p = dir_.string() + "/" + digests.back();
    timespec t[2] = {{1'700'000'000 + i, 0}, {1'700'000'000 + i, 0}};
    utimensat(AT_FDCWD, p.c_str(), t, 0);
  }
  // digests[0] is the oldest but needed: digests[1] and [2] go.
  auto removed = cache->Evict({digests[0]});
  EXPECT_EQ(removed, (std::vector<std::string>{digests[1], digests[2]}));
  EXPECT_TRUE(cache->Has(digests[0]));
  EXPECT_TRUE(cache->Has(digests[3]));
  EXPECT_LE(cache->bytes(), 2000u);
}

}  // namespace
}  // namespace outpost
