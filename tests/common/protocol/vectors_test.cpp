// The protocol's test vectors (docs/protocol-vectors.json) against the code, both ways:
// each named value encodes to exactly the documented bytes, and the documented bytes decode
// to exactly the documented fields; each documented bad frame is refused with its error.
// The same file drives the Python client in tests/integration/foreign_client.py, so the
// document, this implementation and a second one cannot drift apart.
//
// To regenerate the file after a deliberate protocol change:
//   OUTPOST_WRITE_VECTORS=1 build/tests/outpost_agent_unit_tests --gtest_filter='ProtocolVectors*'
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/protocol/command.h"
#include "common/protocol/event.h"
#include "common/protocol/wire.h"

#ifndef OUTPOST_SOURCE_DIR
#define OUTPOST_SOURCE_DIR "."
#endif

namespace outpost {
namespace {

using json = nlohmann::ordered_json;

std::string Hex(std::string_view s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(d[c >> 4]);
    out.push_back(d[c & 15]);
  }
  return out;
}

std::string Unhex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
  }
  return out;
}

// Any msgpack value as JSON: bin becomes a hex string (the vectors' convention).
json ToJson(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL: return nullptr;
    case msgpack::type::BOOLEAN: return o.via.boolean;
    case msgpack::type::POSITIVE_INTEGER: return o.via.u64;
    case msgpack::type::NEGATIVE_INTEGER: return o.via.i64;
    case msgpack::type::STR: return std::string(o.via.str.ptr, o.via.str.size);
    case msgpack::type::BIN: return Hex(std::string_view(o.via.bin.ptr, o.via.bin.size));
    case msgpack::type::ARRAY: {
      json a = json::array();
      for (uint32_t i = 0; i < o.via.array.size; ++i) a.push_back(ToJson(o.via.array.ptr[i]));
      return a;
    }
    case msgpack::type::MAP: {
      json m = json::object();
      for (uint32_t i = 0; i < o.via.map.size; ++i) {
        const auto& kv = o.via.map.ptr[i];
        m[std::string(kv.key.via.str.ptr, kv.key.via.str.size)] = ToJson(kv.val);
      }
      return m;
    }
    default: return "unsupported";
  }
}

json Fields(const std::string& bytes) {
  msgpack::object_handle h;
  EXPECT_TRUE(UnpackBounded(bytes, DecodeLimits{}, &h).ok());
  return ToJson(h.get());
}

Message Frame(MsgType t) {
  Message m;
  m.t = static_cast<uint8_t>(t);
  return m;
}

// The named values the document shows. Changing one is changing the protocol.
std::vector<std::pair<std::string, Message>> FrameVectors() {
  std::vector<std::pair<std::string, Message>> v;
  Message hello = Frame(MsgType::kHello);
  hello.site = "gw-17";
  hello.incarnation = 0x1234567890abcdefULL;
  hello.up_head = 42;
  hello.down_applied = 7;
  v.push_back({"hello", hello});
  Message welcome = Frame(MsgType::kWelcome);
  welcome.up_acked = 40;
  welcome.down_head = 9;
  v.push_back({"welcome", welcome});
  Message batch = Frame(MsgType::kBatch);
  batch.first_seq = 41;
  batch.up_head = 42;
  batch.entries = {std::string("\x81\xa4type\x01", 7), std::string("\x00\xff", 2)};
  v.push_back({"batch", batch});
  // After a hub was restored from a backup (docs/protocol.md): the epochs, and a batch
  // that says the entries before it are gone.
  Message hello_epoch = hello;
  hello_epoch.hub_epoch = 1790000000000;
  hello_epoch.down_digest = 0x8877665544332211ULL;
  v.push_back({"hello_after_restore", hello_epoch});
  Message welcome_epoch = welcome;
  welcome_epoch.hub_epoch = 1800000000000;
  v.push_back({"welcome_after_restore", welcome_epoch});
  Message trimmed = batch;
  trimmed.trimmed = true;
  v.push_back({"batch_after_trimmed", trimmed});
  Message ack = Frame(MsgType::kAck);
  ack.seq = 42;
  ack.credit = 8;
  v.push_back({"ack", ack});
  v.push_back({"ping", Frame(MsgType::kPing)});
  v.push_back({"pong", Frame(MsgType::kPong)});
  Message err = Frame(MsgType::kError);
  err.message = "site 'gw-17' has been revoked";
  v.push_back({"error", err});
  Message get = Frame(MsgType::kArtifactGet);
  get.digest = std::string(64, 'a');
  get.seq = 3;
  v.push_back({"artifact_get", get});
  Message chunk = Frame(MsgType::kArtifactChunk);
  chunk.digest = std::string(64, 'a');
  chunk.seq = 3;
  chunk.size = 3145731;
  chunk.data = std::string("\x00\x01\x02", 3);
  v.push_back({"artifact_chunk", chunk});
  return v;
}

std::vector<std::pair<std::string, Event>> EventVectors() {
  Event created;
  created.time = 1800000000000;
  created.type = static_cast<uint8_t>(EventType::kRunCreated);
  created.run = "gw-17-01J8ZQ4Y0000000000000000";
  created.workflow = "deploy";
  created.message = "3f2a";  // the definition's hash
  created.params = {{"version", "7"}};
  created.tasks = {"fetch", "install"};
  created.request = "req-1";
  Event finished;
  finished.time = 1800000001000;
  finished.type = static_cast<uint8_t>(EventType::kAttemptFinished);
  finished.run = created.run;
  finished.task = "fetch";
  finished.attempt = 1;
  finished.state = "succeeded";
  finished.exit_code = 0;
  finished.output = "fetched 3 files\n";
  return {{"event.run_created", created}, {"event.attempt_finished", finished}};
}

std::vector<std::pair<std::string, Command>> CommandVectors() {
  Command start;
  start.type = static_cast<uint8_t>(CommandType::kStartRun);
  start.time = 1800000000000;
  start.request = "req-1";
  start.run = "gw-17-01J8ZQ4Y0000000000000000";
  start.workflow = "deploy";
  start.source = "name: deploy\ntasks:\n  - id: fetch\n    run: [\"true\"]\n";
  start.hash = "3f2a";
  start.params = {{"version", "7"}};
  start.author = "admin";
  Command cancel;
  cancel.type = static_cast<uint8_t>(CommandType::kCancelRun);
  cancel.time = 1800000002000;
  cancel.run = start.run;
  cancel.reason = "cancelled by admin";
  cancel.author = "admin";
  return {{"command.run_start", start}, {"command.run_cancel", cancel}};
}

// Frames every receiver refuses, with the error it gives (a substring).
std::vector<std::tuple<std::string, std::string, std::string>> BadFrames() {
  return {
      {"not msgpack", "c1", "not valid msgpack"},
      {"truncated", "82a17601a174", "truncated msgpack"},
      {"not a map", "920102", "must be a msgpack map"},
      {"no type", "81a17601", "needs 'v' and 't'"},
      {"version 2", "82a17602a17405", "protocol version 2"},
      {"unknown type", "82a17601a17463", "unknown message type 99"},
      {"type as string", "82a17601a174a568656c6c6f", "field 't' must be an unsigned integer"},
      {"head past 2^48", Hex(EncodeMessage([] {
         Message m = Frame(MsgType::kHello);
         m.up_head = ~uint64_t{0};
         return m;
       }())),
       "field 'up_head' is 18446744073709551615, above the limit"},
      {"entries not bin", "84a17601a17403a966697273745f73657101a7656e7472696573920102",
       "field 'entries' must be an array of bin"},
      {"batch from 0", "83a17601a17403a966697273745f73657100", "BATCH with first_seq 0"},
      {"trimmed not a bool", "83a17601a17403a77472696d6d656401", "field 'trimmed' must be a bool"},
  };
}

json Generate() {
  json doc = {{"version", kProtocolVersion},
              {"about",
               "Outpost protocol test vectors: hex of one msgpack value each and the fields it "
               "holds (bin values as hex). docs/protocol.md explains them."},
              {"frames", json::array()},
              {"events", json::array()},
              {"commands", json::array()},
              {"refused", json::array()}};
  for (const auto& [name, m] : FrameVectors()) {
    const std::string bytes = EncodeMessage(m);
    doc["frames"].push_back({{"name", name}, {"hex", Hex(bytes)}, {"fields", Fields(bytes)}});
  }
  for (const auto& [name, e] : EventVectors()) {
    const std::string bytes = Encode(e);
    doc["events"].push_back({{"name", name}, {"hex", Hex(bytes)}, {"fields", Fields(bytes)}});
  }
  for (const auto& [name, c] : CommandVectors()) {
    const std::string bytes = EncodeCommand(c);
    doc["commands"].push_back({{"name", name}, {"hex", Hex(bytes)}, {"fields", Fields(bytes)}});
  }
  for (const auto& [name, hex, error] : BadFrames()) {
    doc["refused"].push_back({{"name", name}, {"hex", hex}, {"error", error}});
  }
  return doc;
}

const std::string kPath = std::string(OUTPOST_SOURCE_DIR) + "/docs/protocol-vectors.json";

json Load() {
  if (getenv("OUTPOST_WRITE_VECTORS")) {
    std::ofstream(kPath) << Generate().dump(1) << "\n";
  }
  std::ifstream in(kPath);
  std::stringstream ss;
  ss << in.rdbuf();
  json doc = json::parse(ss.str(), nullptr, false);
  EXPECT_FALSE(doc.is_discarded()) << kPath;
  return doc;
}

TEST(ProtocolVectors, TheDocumentMatchesTheCodeBothWays) {
  const json doc = Load();
  const json want = Generate();
  ASSERT_EQ(doc["frames"].size(), want["frames"].size());
  for (size_t i = 0; i < doc["frames"].size(); ++i) {
    const json& v = doc["frames"][i];
    SCOPED_TRACE(v["name"].get<std::string>());
    // Meaning -> bytes: the named message encodes to the documented hex.
    EXPECT_EQ(v["hex"], want["frames"][i]["hex"]);
    // Bytes -> meaning: the documented hex decodes to the documented fields, and back.
    const std::string bytes = Unhex(v["hex"]);
    Message m;
    ASSERT_TRUE(DecodeMessage(bytes, &m).ok());
    EXPECT_EQ(Fields(EncodeMessage(m)), v["fields"]);
    EXPECT_EQ(EncodeMessage(m), bytes);
  }
  for (const char* kind : {"events", "commands"}) {
    ASSERT_EQ(doc[kind].size(), want[kind].size());
    for (size_t i = 0; i < doc[kind].size(); ++i) {
      const json& v = doc[kind][i];
      SCOPED_TRACE(v["name"].get<std::string>());
      EXPECT_EQ(v["hex"], want[kind][i]["hex"]);
      const std::string bytes = Unhex(v["hex"]);
      EXPECT_EQ(Fields(bytes), v["fields"]);
      if (std::string(kind) == "events") {
        Event e;
        ASSERT_TRUE(Decode(bytes, &e).ok());
        EXPECT_EQ(Encode(e), bytes);
      } else {
        Command c;
        ASSERT_TRUE(DecodeCommand(bytes, &c).ok());
        EXPECT_EQ(EncodeCommand(c), bytes);
      }
    }
  }
}

TEST(ProtocolVectors, RefusedFramesGiveTheDocumentedErrors) {
  const json doc = Load();
  ASSERT_EQ(doc["refused"].size(), BadFrames().size());
  for (const auto& v : doc["refused"]) {
    SCOPED_TRACE(v["name"].get<std::string>());
    Message m;
    Status s = DecodeMessage(Unhex(v["hex"]), &m);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find(v["error"].get<std::string>()), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace outpost
