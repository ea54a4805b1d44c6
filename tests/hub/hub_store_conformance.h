// The hub store conformance suite: what every HubStore implementation must do, whatever
// engine is under it. An implementation's test file provides a HubStoreFactory and
// instantiates the suite:
//
//   INSTANTIATE_TEST_SUITE_P(Rocks, HubStoreConformance,
//                            ::testing::Values(&MakeRocksFactory));
//
// The factory opens a fresh, empty store and can reopen it (as after a restart), so the
// suite checks durability across reopen as well as the contract of each call.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "hub/hub_store.h"

namespace outpost::testing {

class HubStoreFactory {
 public:
  virtual ~HubStoreFactory() = default;
  // A new empty store (the factory keeps whatever it needs to reopen it).
  virtual Result<std::unique_ptr<HubStore>> Create() = 0;
  // Closes nothing itself: the caller has dropped the previous store; opens it again.
  virtual Result<std::unique_ptr<HubStore>> Reopen() = 0;
  // Short name for messages.
  virtual std::string name() const = 0;
  // Whether the store compares revisions (HubTxn::PutSite): one shared by several hubs.
  virtual bool checks_revisions() const { return true; }
};

using HubStoreFactoryMaker = std::unique_ptr<HubStoreFactory> (*)();

class HubStoreConformance : public ::testing::TestWithParam<HubStoreFactoryMaker> {
 protected:
  void SetUp() override {
    factory_ = GetParam()();
    auto s = factory_->Create();
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }
  void Reopen() {
    store_.reset();
    auto s = factory_->Reopen();
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }
  void Commit(const HubTxn& t) {
    Status s = store_->Commit(t);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  std::unique_ptr<HubStoreFactory> factory_;
  std::unique_ptr<HubStore> store_;
};

}  // namespace outpost::testing
