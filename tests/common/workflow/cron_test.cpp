// Cron expressions and time zones: next fire times checked against hand-computed ones,
// including both DST transitions in Europe/Berlin.
#include "common/workflow/cron.h"

#include <gtest/gtest.h>

namespace outpost {
namespace {

TimeMs T(const char* iso) {
  auto t = ParseIsoTime(iso);
  EXPECT_TRUE(t.ok()) << iso << ": " << t.status().ToString();
  return t.ok() ? *t : 0;
}

std::vector<std::string> Next(const std::string& cron, const std::string& zone, const char* from,
                              int n) {
  auto spec = ParseCron(cron);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  auto tz = TimeZone::Load(zone);
  EXPECT_TRUE(tz.ok()) << tz.status().ToString();
  std::vector<std::string> out;
  TimeMs t = T(from);
  for (int i = 0; i < n && spec.ok() && tz.ok(); ++i) {
    t = NextFire(*spec, *tz, t);
    out.push_back(FormatLocal(t, *tz));
  }
  return out;
}

TEST(CronTest, FieldsRangesStepsListsAndNames) {
  EXPECT_EQ(Next("*/15 9-10 * * mon-fri", "UTC", "2026-11-27T10:40:00Z", 4),
            (std::vector<std::string>{"2026-11-27T10:45:00+00:00", "2026-11-30T09:00:00+00:00",
                                      "2026-11-30T09:15:00+00:00", "2026-11-30T09:30:00+00:00"}));
  EXPECT_EQ(Next("0 0 1,15 feb *", "UTC", "2026-01-20T00:00:00Z", 3),
            (std::vector<std::string>{"2026-02-01T00:00:00+00:00", "2026-02-15T00:00:00+00:00",
                                      "2027-02-01T00:00:00+00:00"}));
  // Both day fields given: either matches (cron's rule). 2026-12-01 is a Tuesday.
  EXPECT_EQ(Next("0 12 1 * sun", "UTC", "2026-11-28T00:00:00Z", 3),
            (std::vector<std::string>{"2026-11-29T12:00:00+00:00", "2026-12-01T12:00:00+00:00",
                                      "2026-12-06T12:00:00+00:00"}));
  EXPECT_EQ(Next("@monthly", "UTC", "2026-11-24T10:00:00Z", 1),
            std::vector<std::string>{"2026-12-01T00:00:00+00:00"});
  EXPECT_EQ(Next("0 0 * * 7", "UTC", "2026-11-24T10:00:00Z", 1),
            std::vector<std::string>{"2026-11-29T00:00:00+00:00"});  // 7 is Sunday
  EXPECT_EQ(Next("0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", 1),
            std::vector<std::string>{"2028-02-29T00:00:00+00:00"});
  // 2100 is not a leap year: eight years to the next 29 February.
  EXPECT_EQ(Next("0 0 29 2 *", "UTC", "2097-03-01T00:00:00Z", 1),
            std::vector<std::string>{"2104-02-29T00:00:00+00:00"});
}

TEST(CronTest, TimeZonesAndDaylightSavingTime) {
  EXPECT_EQ(Next("30 2 * * *", "Europe/Berlin", "2026-11-24T12:00:00Z", 1),
            std::vector<std::string>{"2026-11-25T02:30:00+01:00"});
  // 2026-03-29: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist that day: it fires
  // right after the jump, once.
  EXPECT_EQ(Next("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 3),
            (std::vector<std::string>{"2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00",
                                      "2026-03-31T02:30:00+02:00"}));
  // Every 15 minutes across the jump: one tick at 03:00 for the whole skipped hour, no burst.
  EXPECT_EQ(Next("*/15 * * * *", "Europe/Berlin", "2026-03-29T00:40:00Z", 4),
            (std::vector<std::string>{"2026-03-29T01:45:00+01:00", "2026-03-29T03:00:00+02:00",
                                      "2026-03-29T03:15:00+02:00", "2026-03-29T03:30:00+02:00"}));
  // Asked from just before the jump, the skipped 02:30 still fires right after it.
  EXPECT_EQ(Next("30 2 * * *", "Europe/Berlin", "2026-03-29T00:59:30Z", 1),
            (std::vector<std::string>{"2026-03-29T03:00:00+02:00"}));
  // A time outside the skipped hour is not disturbed by it.
  EXPECT_EQ(Next("30 4 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 1),
            (std::vector<std::string>{"2026-03-29T04:30:00+02:00"}));
  // 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice and fires once.
  EXPECT_EQ(Next("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
            (std::vector<std::string>{"2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"}));
  EXPECT_EQ(Next("0 9 * * *", "America/New_York", "2026-11-24T00:00:00Z", 1),
            std::vector<std::string>{"2026-11-24T09:00:00-05:00"});
}

TEST(CronTest, BadExpressionsAndZonesAreNamed) {
  auto e = ParseCron("61 * * * *");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("minute '61' is not 0-59"), std::string::npos);
  EXPECT_FALSE(ParseCron("* * * *").ok());
  EXPECT_FALSE(ParseCron("*/0 * * * *").ok());
  EXPECT_FALSE(ParseCron("5-1 * * * *").ok());
  EXPECT_FALSE(ParseCron("0 0 * foo *").ok());
  EXPECT_FALSE(TimeZone::Load("Mars/Olympus").ok());
  EXPECT_FALSE(TimeZone::Load("../../etc/passwd").ok());
  EXPECT_FALSE(ParseIsoTime("yesterday").ok());
  EXPECT_EQ(T("2026-11-24T10:00:00+01:00"), T("2026-11-24T09:00:00Z"));
}

}  // namespace
}  // namespace outpost
