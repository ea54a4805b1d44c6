// The limits table in docs/protocol.md ("Limits") against common/protocol/limits.h: every
// row names a constant and its value; a limit changed in one place and not the other fails.
#include "common/protocol/limits.h"

#include <fstream>
#include <map>
#include <cctype>
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
  // Rows look like: | `kMaxBatchEntries` | 4096 | ... |  (read by hand: std::regex trips
  // a false -Wmaybe-uninitialized in GCC 12's sanitizer builds)
  std::map<std::string, uint64_t> doc;
  std::string line;
  while (std::getline(ss, line)) {
    const size_t open = line.find("| `kMax");
    if (open != 0) continue;
    const size_t close = line.find('`', open + 3);
    const size_t bar = line.find('|', close);
    if (close == std::string::npos || bar == std::string::npos) continue;
    const std::string name = line.substr(open + 3, close - open - 3);
    size_t i = bar + 1;
    while (i < line.size() && line[i] == ' ') ++i;
    size_t j = i;
    while (j < line.size() && std::isdigit(static_cast<unsigned char>(line[j]))) ++j;
    if (j > i) doc[name] = std::stoull(line.substr(i, j - i));
  }
  EXPECT_EQ(doc, code) << "docs/protocol.md's Limits table and common/protocol/limits.h differ";
}

}  // namespace
}  // namespace outpost
