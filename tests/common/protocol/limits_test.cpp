// The limits table in docs/protocol.md ("Limits") against common/protocol/limits.h: every
// row names a constant and its value; a limit changed in one place and not the other fails.
#include "common/protocol/limits.h"

#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>

#ifndef OUTPOST_SOURCE_DIR
#define OUTPOST_SOURCE_DIR "."
#endif

namespace outpost {
namespace {

TEST(ProtocolLimits, TheDocumentedTableIsTheCodesTable) {
  const std::map<std::string, uint64_t> code = {
      {"kMaxFrameBytes", kMaxFrameBytes},
      {"kMaxOperatorFrameBytes", kMaxOperatorFrameBytes},
      {"kMaxBatchEntries", kMaxBatchEntries},
      {"kMaxBatchBytes", kMaxBatchBytes},
      {"kMaxWireString", kMaxWireString},
      {"kMaxWireArray", kMaxWireArray},
      {"kMaxWireMap", kMaxWireMap},
      {"kMaxWireDepth", kMaxWireDepth},
      {"kMaxSeq", kMaxSeq},
      {"kMaxControlLine", kMaxControlLine},
  };
  std::ifstream in(std::string(OUTPOST_SOURCE_DIR) + "/docs/protocol.md");
  std::stringstream ss;
  ss << in.rdbuf();
  // Rows look like: | `kMaxBatchEntries` | 4096 | ... |
  std::regex row(R"(\|\s*`(kMax\w+)`\s*\|\s*([0-9]+)\s*\|)");
  std::map<std::string, uint64_t> doc;
  const std::string text = ss.str();
  for (std::sregex_iterator it(text.begin(), text.end(), row), end; it != end; ++it) {
    doc[(*it)[1]] = std::stoull((*it)[2]);
  }
  EXPECT_EQ(doc, code) << "docs/protocol.md's Limits table and common/protocol/limits.h differ";
}

}  // namespace
}  // namespace outpost
