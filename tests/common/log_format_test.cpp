// --log-format json: each log line becomes one JSON object with the line's own fields.
#include "common/log_format.h"

#include <gtest/gtest.h>

namespace outpost {
namespace {

using json = nlohmann::json;

TEST(LogFormatTest, EventAndFieldsBecomeKeys) {
  EXPECT_EQ(LogLineJson("hub.site_online site=plant-7 incarnation=00ab events_behind=3"),
            (json{{"event", "hub.site_online"}, {"site", "plant-7"}, {"incarnation", "00ab"},
                  {"events_behind", "3"}}));
  EXPECT_EQ(LogLineJson("agent.commit_failed error=\"IO error: No space left\" retry_in_ms=1000"),
            (json{{"event", "agent.commit_failed"}, {"error", "IO error: No space left"},
                  {"retry_in_ms", "1000"}}));
  EXPECT_EQ(LogLineJson("x.y msg=\"a \\\"quoted\\\" word\""),
            (json{{"event", "x.y"}, {"msg", "a \"quoted\" word"}}));
}

TEST(LogFormatTest, WhatIsNotKeyValueIsKeptAsText) {
  EXPECT_EQ(LogLineJson("hub.store_write_failed: reopening the store"),
            (json{{"text", "hub.store_write_failed: reopening the store"}}));
  EXPECT_EQ(LogLineJson("hub.x a=1 then some words b=2"),
            (json{{"event", "hub.x"}, {"a", "1"}, {"text", "then some words b=2"}}));
  // A repeated key, or one named like the reserved ones, does not overwrite.
  EXPECT_EQ(LogLineJson("a.b k=1 k=2 event=z"),
            (json{{"event", "a.b"}, {"k", "1"}, {"text", "k=2 event=z"}}));
  EXPECT_EQ(LogLineJson(""), json::object());
  EXPECT_EQ(LogLineJson("a.b k=\"unterminated"), (json{{"event", "a.b"}, {"k", "unterminated"}}));
  EXPECT_FALSE(SetLogFormat("xml").ok());
  EXPECT_TRUE(SetLogFormat("text").ok());
}

}  // namespace
}  // namespace outpost
