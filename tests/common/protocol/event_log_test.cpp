// EventLog tests on an in-memory rocksdb::Env, plus one reopen on disk.
#include "common/protocol/event_log.h"

#include <gtest/gtest.h>
#include <rocksdb/env.h>

#include <filesystem>

namespace outpost {
namespace {

class EventLogTest : public ::testing::Test {
 protected:
  EventLogTest() : env_(rocksdb::NewMemEnv(rocksdb::Env::Default())) {}
  std::unique_ptr<EventLog> Open(uint64_t incarnation = 7) {
    EventLog::Options o;
    o.env = env_.get();
    o.new_incarnation = incarnation;
    auto log = EventLog::Open("/mem/db", o);
    EXPECT_TRUE(log.ok()) << log.status().ToString();
    return log.ok() ? std::move(log).value() : nullptr;
  }
  std::unique_ptr<rocksdb::Env> env_;
};

TEST_F(EventLogTest, AppendAssignsGaplessSequenceAndReadsBack) {
  auto log = Open();
  EXPECT_EQ(log->head(), 0u);
  ASSERT_EQ(*log->Append({"a", "b"}, {{"k", "v1"}}), 2u);
  ASSERT_EQ(*log->Append({"c"}, {{"k", "v2"}, {"j", "x"}}), 3u);
  auto recs = log->ReadAfter(0, 10, 1 << 20);
  ASSERT_TRUE(recs.ok());
  ASSERT_EQ(recs->size(), 3u);
  EXPECT_EQ((*recs)[0].seq, 1u);
  EXPECT_EQ((*recs)[2].payload, "c");
  EXPECT_EQ(**log->GetState("k"), "v2");
  auto after2 = log->ReadAfter(2, 10, 1 << 20);
  ASSERT_EQ(after2->size(), 1u);
  EXPECT_EQ((*after2)[0].seq, 3u);
}

TEST_F(EventLogTest, StateOnlyChangeKeepsHeadAndDeletes) {
  auto log = Open();
  ASSERT_TRUE(log->Append({"a"}, {{"k", "v"}}).ok());
  ASSERT_EQ(*log->Append({}, {{"k", std::nullopt}}), 1u);
  EXPECT_FALSE(log->GetState("k")->has_value());
}

TEST_F(EventLogTest, ReadRespectsCountAndByteBounds) {
  auto log = Open();
  ASSERT_TRUE(log->Append({std::string(100, 'x'), std::string(100, 'y'), "z"}, {}).ok());
  EXPECT_EQ(log->ReadAfter(0, 2, 1 << 20)->size(), 2u);
  EXPECT_EQ(log->ReadAfter(0, 10, 150)->size(), 1u);
  EXPECT_EQ(log->ReadAfter(0, 10, 10)->size(), 1u);  // always at least one
  EXPECT_EQ(log->ReadAfter(3, 10, 1 << 20)->size(), 0u);
}

TEST_F(EventLogTest, AckTrimsAndSurvivesReopen) {
  {
    auto log = Open(99);
    ASSERT_TRUE(log->Append({"1", "2", "3", "4"}, {{"s", "x"}}).ok());
    ASSERT_TRUE(log->AckAndTrim(2).ok());
    ASSERT_TRUE(log->AckAndTrim(1).ok());  // stale ack: no-op
    EXPECT_EQ(log->acked(), 2u);
    EXPECT_EQ(log->AckAndTrim(9).code(), Code::kInvalidArgument);
  }
  auto log = Open(12345);  // incarnation is kept from creation
  EXPECT_EQ(log->incarnation(), 99u);
  EXPECT_EQ(log->head(), 4u);
  EXPECT_EQ(log->acked(), 2u);
  auto recs = log->ReadAfter(0, 10, 1 << 20);
  ASSERT_EQ(recs->size(), 2u);
  EXPECT_EQ((*recs)[0].seq, 3u);
  EXPECT_EQ(**log->GetState("s"), "x");
  ASSERT_EQ(*log->Append({"5"}, {}), 5u);
}

TEST_F(EventLogTest, ScanStateByPrefixInKeyOrder) {
  auto log = Open();
  ASSERT_TRUE(log->Append({}, {{"run/b", "2"}, {"run/a", "1"}, {"task/x", "3"}}).ok());
  std::vector<std::string> seen;
  ASSERT_TRUE(log->ScanState("run/", [&](std::string_view k, std::string_view) {
    seen.emplace_back(k);
  }).ok());
  EXPECT_EQ(seen, std::vector<std::string>({"run/a", "run/b"}));
}

TEST(EventLogDiskTest, SyncedAppendsSurviveReopenOnDisk) {
  auto dir = std::filesystem::temp_directory_path() /
             ("outpost_log_test_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  {
    auto log = EventLog::Open(dir.string(), EventLog::Options());
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    for (int i = 0; i < 100; ++i) ASSERT_TRUE((*log)->Append({std::to_string(i)}, {}).ok());
  }
  auto log = EventLog::Open(dir.string(), EventLog::Options());
  ASSERT_TRUE(log.ok());
  EXPECT_EQ((*log)->head(), 100u);
  EXPECT_EQ((*log)->ReadAfter(99, 10, 1 << 20)->at(0).payload, "99");
  log = Status::Internal("close");
  std::filesystem::remove_all(dir);
}

TEST(EncodingTest, BigEndianKeysSortNumerically) {
  EXPECT_LT(EncodeU64(255), EncodeU64(256));
  EXPECT_LT(EncodeU64(1), EncodeU64(1ULL << 40));
  EXPECT_EQ(DecodeU64(EncodeU64(0x0102030405060708ULL)), 0x0102030405060708ULL);
  EXPECT_EQ(EncodeU64(1), std::string("\0\0\0\0\0\0\0\x01", 8));
}

}  // namespace
}  // namespace outpost

#include "tests/common/fault_fs.h"

namespace outpost {
namespace {

TEST(EventLogFaultTest, FullDiskFailsCleanlyAndTheSameBatchLandsOnceAfterwards) {
  std::unique_ptr<rocksdb::Env> mem(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  auto fs = std::make_shared<testing::FaultFs>(mem->GetFileSystem());
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  EventLog::Options o;
  o.env = env.get();
  auto log = EventLog::Open("/mem/full", o);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  ASSERT_TRUE((*log)->Append({"e1"}, {{"k", "1"}}).ok());

  fs->SetNoSpace(true);
  auto r = (*log)->Append({"e2", "e3"}, {{"k", "2"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted) << r.status().ToString();
  EXPECT_EQ((*log)->head(), 1u);
  EXPECT_FALSE((*log)->Append({"e2", "e3"}, {{"k", "2"}}).ok());  // still full

  fs->SetNoSpace(false);
  auto again = (*log)->Append({"e2", "e3"}, {{"k", "2"}});
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, 3u);
  auto recs = (*log)->ReadAfter(0, 10, 1 << 20);
  ASSERT_TRUE(recs.ok());
  ASSERT_EQ(recs->size(), 3u);
  EXPECT_EQ((*recs)[1].payload, "e2");
  EXPECT_EQ((*recs)[2].payload, "e3");
  EXPECT_EQ(**(*log)->GetState("k"), "2");
}

// The disk fills right after a write that filled two column families' memtables (the
// event log then switches them itself: RocksOptions::manual_memtable_switch, and their
// flush may meet the full disk). The next write is refused, the log closes on the full
// disk, reopens, and has every event once. (The abort that manual switching avoids is
// shown by the hub's group commit test; this one did not reach it with RocksDB
// switching on its own.)
TEST(EventLogFaultTest, AFullDiskAfterWritesThatFillMemtablesClosesAndReopensCleanly) {
  std::unique_ptr<rocksdb::Env> mem(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  auto fs = std::make_shared<testing::FaultFs>(mem->GetFileSystem());
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  EventLog::Options o;
  o.env = env.get();
  o.write_buffer_bytes = 32 << 10;
  const std::string big(40 << 10, 'x');  // one write fills the log's and the state's memtables
  {
    auto log = EventLog::Open("/mem/due", o);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    ASSERT_TRUE((*log)->Append({big}, {{"k", big}}).ok());
    fs->SetNoSpace(true);
    EXPECT_FALSE((*log)->Append({"e2"}, {{"k", "2"}}).ok());
  }  // closes with the disk full
  fs->SetNoSpace(false);
  auto log = EventLog::Open("/mem/due", o);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  ASSERT_TRUE((*log)->Append({"e2"}, {{"k", "2"}}).ok());
  auto recs = (*log)->ReadAfter(0, 10, 1 << 30);
  ASSERT_TRUE(recs.ok());
  ASSERT_EQ(recs->size(), 2u);
  EXPECT_EQ((*recs)[0].payload, big);
  EXPECT_EQ((*recs)[1].payload, "e2");
  EXPECT_EQ(**(*log)->GetState("k"), "2");
}

}  // namespace
}  // namespace outpost

namespace outpost {
namespace {

TEST(EventLogFaultTest, BatchThatLandedDespiteAnErrorIsNotAppendedTwice) {
  std::unique_ptr<rocksdb::Env> mem(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  auto fs = std::make_shared<testing::FaultFs>(mem->GetFileSystem());
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  EventLog::Options o;
  o.env = env.get();
  auto log = EventLog::Open("/mem/sync", o);
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE((*log)->Append({"e1"}, {}).ok());
  fs->SetFailSync(true);
  ASSERT_FALSE((*log)->Append({"e2"}, {}).ok());  // written, but reported as failed
  fs->SetFailSync(false);
  // The caller retries its batch, now grown by one more event.
  auto r = (*log)->Append({"e2", "e3"}, {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto recs = (*log)->ReadAfter(0, 10, 1 << 20);
  ASSERT_TRUE(recs.ok());
  std::vector<std::string> payloads;
  for (const auto& rec : *recs) payloads.push_back(rec.payload);
  // Whether or not e2 reached the disk the first time, it is in the log exactly once.
  EXPECT_EQ(payloads, std::vector<std::string>({"e1", "e2", "e3"}));
  EXPECT_EQ(*r, 3u);
}

}  // namespace
}  // namespace outpost

namespace outpost {
namespace {

// The same batch failing more than once: what landed on each failed try is skipped on
// every later one (storm seed 5362 found a scheduled tick logged twice: a batch landed
// despite a failed fsync, the retry of its state writes failed again, and the third try
// appended the batch's events a second time).
TEST(EventLogFaultTest, ABatchThatFailsAgainAfterLandingIsStillLoggedOnce) {
  std::unique_ptr<rocksdb::Env> mem(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  auto fs = std::make_shared<testing::FaultFs>(mem->GetFileSystem());
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  EventLog::Options o;
  o.env = env.get();
  auto log = EventLog::Open("/mem/twice", o);
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE((*log)->Append({"e1"}, {}).ok());
  fs->SetFailWalSync(true);
  // Each try is the caller's whole pending batch, grown by what happened meanwhile.
  ASSERT_FALSE((*log)->Append({"e2"}, {{"k", "a"}}).ok());
  ASSERT_FALSE((*log)->Append({"e2"}, {{"k", "a"}}).ok());  // nothing new: state writes only
  ASSERT_FALSE((*log)->Append({"e2", "e3"}, {{"k", "b"}}).ok());
  fs->SetFailWalSync(false);
  auto r = (*log)->Append({"e2", "e3", "e4"}, {{"k", "c"}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto recs = (*log)->ReadAfter(0, 10, 1 << 20);
  ASSERT_TRUE(recs.ok());
  std::vector<std::string> payloads;
  for (const auto& rec : *recs) payloads.push_back(rec.payload);
  EXPECT_EQ(payloads, std::vector<std::string>({"e1", "e2", "e3", "e4"}));
  EXPECT_EQ(*r, 4u);
  EXPECT_EQ(**(*log)->GetState("k"), "c");
}

}  // namespace
}  // namespace outpost
