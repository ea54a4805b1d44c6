// The typed JSON reader and the text helpers: wrong types are errors naming the field,
// nothing throws, and text from outside is made safe.
#include "common/json_fields.h"

#include <gtest/gtest.h>

namespace outpost {
namespace {

using json = nlohmann::json;

TEST(JsonFields, ReadsTypedFieldsAndNamesTheWrongOnes) {
  json j = {{"s", "x"}, {"i", 5}, {"b", true}, {"m", {{"k", "v"}}}, {"l", {"a", "b"}},
            {"bad_m", {{"k", 1}}}, {"neg", -3}, {"big", ~uint64_t{0}}, {"f", 1.5}};
  JsonFields f(j);
  std::string s;
  int64_t i = 0;
  bool b = false;
  std::map<std::string, std::string> m;
  std::vector<std::string> l;
  EXPECT_TRUE(f.Str("s", &s).ok());
  EXPECT_EQ(s, "x");
  EXPECT_TRUE(f.Int("i", &i, 0, 10).ok());
  EXPECT_EQ(i, 5);
  EXPECT_TRUE(f.Bool("b", &b).ok());
  EXPECT_TRUE(f.StrMap("m", &m).ok());
  EXPECT_TRUE(f.StrList("l", &l).ok());
  EXPECT_EQ(l.size(), 2u);
  EXPECT_NE(f.Str("i", &s).message().find("'i' must be a string, not an integer"),
            std::string::npos);
  EXPECT_NE(f.Int("s", &i, 0, 10).message().find("'s' must be an integer"), std::string::npos);
  EXPECT_NE(f.Int("neg", &i, 0, 10).message().find("from 0 to 10"), std::string::npos);
  EXPECT_FALSE(f.Int("big", &i, 0, INT64_MAX).ok());
  EXPECT_FALSE(f.Int("f", &i, 0, 10).ok());
  EXPECT_NE(f.Bool("s", &b).message().find("true or false"), std::string::npos);
  EXPECT_NE(f.StrMap("bad_m", &m).message().find("'bad_m.k'"), std::string::npos);
  EXPECT_TRUE(f.Str("absent", &s).ok());  // optional: the default stays
  EXPECT_NE(f.Str("absent", &s, kRequired).message().find("'absent' is required"),
            std::string::npos);
}

TEST(JsonFields, NotAnObjectReadsAsAbsent) {
  json j = json::array({1});
  JsonFields f(j);
  std::string s;
  EXPECT_FALSE(f.is_object());
  EXPECT_FALSE(f.Has("x"));
  EXPECT_FALSE(f.Str("x", &s, kRequired).ok());
}

TEST(Text, InvalidUtf8AndControlsAreMadeSafe) {
  EXPECT_TRUE(ValidUtf8("h\xc3\xa9llo"));
  EXPECT_FALSE(ValidUtf8("\xff"));
  EXPECT_FALSE(ValidUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(ValidUtf8("\xed\xa0\x80"));      // a surrogate
  EXPECT_FALSE(ValidUtf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_EQ(SafeText("a\xff\x1b[31mb\tc"), "a??[31mb\tc");
  EXPECT_EQ(SafeText(std::string(600, 'x'), 10), std::string(10, 'x') + "...");
  EXPECT_EQ(SafeText("h\xc3\xa9"), "h\xc3\xa9");
  json j = {{"m", std::string("\xff bad")}};
  EXPECT_NO_THROW(SafeDump(j));
}

}  // namespace
}  // namespace outpost
