// A simulated site for HubCore tests: a real SyncSession in the site role over in-memory
// streams (tests/common/mem_streams.h).
#pragma once

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/protocol/command.h"
#include "common/protocol/event.h"
#include "common/protocol/sync_session.h"
#include "tests/common/mem_streams.h"

namespace outpost {

using testing::MemIncoming;
using testing::MemOutgoing;

struct FakeSite {
  FakeSite(const std::string& n, uint64_t inc, const Clock& clock)
      : name(n),
        session(SyncSession::Role::kSite, clock, SyncOptions{}, &up, &down, n, inc) {}
  std::string name;
  std::string peer = "peer-" + name;
  MemOutgoing up;
  MemIncoming down;
  SyncSession session;

  std::vector<Command> Commands() const {
    std::vector<Command> out;
    for (const auto& e : down.applied_entries()) {
      Command c;
      EXPECT_TRUE(DecodeCommand(e, &c).ok());
      out.push_back(c);
    }
    return out;
  }
  void Emit(Event e) { up.Append(Encode(e)); }
};

}  // namespace outpost
