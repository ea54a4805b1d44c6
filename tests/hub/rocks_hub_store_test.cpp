// RocksHubStore against the hub store conformance suite, on an in-memory Env and on disk,
// plus what is particular to RocksDB (a record that no longer decodes names its key).
#include "hub/rocks_hub_store.h"

#include <filesystem>

#include <gtest/gtest.h>
#include <rocksdb/env.h>

#include "tests/hub/hub_store_conformance.h"

namespace outpost::testing {
namespace {

class RocksMemFactory : public HubStoreFactory {
 public:
  Result<std::unique_ptr<HubStore>> Create() override { return Reopen(); }
  Result<std::unique_ptr<HubStore>> Reopen() override {
    RocksHubStore::Options o;
    o.env = env_.get();
    o.check_revisions = true;  // as the simulator's hubs sharing one store
    OUTPOST_ASSIGN_OR_RETURN(auto s, RocksHubStore::Open("/hub", o));
    return std::unique_ptr<HubStore>(std::move(s));
  }
  std::string name() const override { return "rocksdb-memenv"; }

 private:
  std::unique_ptr<rocksdb::Env> env_{rocksdb::NewMemEnv(rocksdb::Env::Default())};
};

class RocksDiskFactory : public HubStoreFactory {
 public:
  RocksDiskFactory() {
    dir_ = (std::filesystem::temp_directory_path() /
            ("outpost-hubstore-" + std::to_string(::getpid()) + "-" + std::to_string(next_++)))
               .string();
    std::filesystem::remove_all(dir_);
  }
  ~RocksDiskFactory() override { std::filesystem::remove_all(dir_); }
  Result<std::unique_ptr<HubStore>> Create() override { return Reopen(); }
  Result<std::unique_ptr<HubStore>> Reopen() override {
    OUTPOST_ASSIGN_OR_RETURN(auto s, RocksHubStore::Open(dir_, RocksHubStore::Options{}));
    return std::unique_ptr<HubStore>(std::move(s));
  }
  std::string name() const override { return "rocksdb-disk"; }
  bool checks_revisions() const override { return false; }

 private:
  static inline int next_ = 0;
  std::string dir_;
};

std::unique_ptr<HubStoreFactory> MakeMem() { return std::make_unique<RocksMemFactory>(); }
std::unique_ptr<HubStoreFactory> MakeDisk() { return std::make_unique<RocksDiskFactory>(); }

INSTANTIATE_TEST_SUITE_P(Rocks, HubStoreConformance, ::testing::Values(&MakeMem, &MakeDisk),
                         [](const auto& info) { return info.index == 0 ? "MemEnv" : "Disk"; });

TEST(RocksHubStore, AnUndecodableRunRecordIsCorruptionNamingIt) {
  std::unique_ptr<rocksdb::Env> env(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  RocksHubStore::Options o;
  o.env = env.get();
  auto store = RocksHubStore::Open("/hub", o);
  ASSERT_TRUE(store.ok());
  rocksdb::WriteOptions wo;
  // Column family 4 is "runs" (after the default one and sites, up, down).
  ASSERT_TRUE((*store)->rocks().db->Put(wo, (*store)->rocks().cfs[4], "run/x", "\xc1").ok());
  auto got = (*store)->GetRun("x");
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("run record x"), std::string::npos)
      << got.status().ToString();
}

}  // namespace
}  // namespace outpost::testing
