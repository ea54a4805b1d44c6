// Schedules against references that do not share their reasoning with the code:
//  - zone offsets against the C library's own reading of the same zone files
//    (localtime_r with TZ set), at random instants up to 2100 — past the last listed
//    transition, where the TZif footer rules — and around every transition found;
//  - NextFire against a brute-force walk that steps through every UTC minute, converts it
//    to local time and fires where the expression matches, applying the documented rules
//    (a skipped local time fires at the first instant after the jump, once; a repeated one
//    fires the first time), over thousands of random (expression, zone, start) cases,
//    half of them started near a transition. The seed is printed on failure.
#include <stdlib.h>
#include <time.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <gtest/gtest.h>

#include "common/random.h"
#include "common/workflow/cron.h"

namespace outpost {
namespace {

const std::vector<std::string> kZones = {
    "Europe/Berlin",    "America/New_York", "Australia/Lord_Howe", "America/Sao_Paulo",
    "Asia/Kolkata",     "Pacific/Chatham",  "America/St_Johns",    "Europe/London",
    "Australia/Sydney", "Pacific/Auckland", "Antarctica/Troll",    "America/Santiago",
    "Asia/Tehran",      "Europe/Dublin",    "UTC"};

// The C library's offset for `zone` at UTC second t.
int64_t LibcOffset(const std::string& zone, int64_t t) {
  setenv("TZ", zone.c_str(), 1);
  tzset();
  time_t tt = static_cast<time_t>(t);
  tm f{};
  localtime_r(&tt, &f);
  return f.tm_gmtoff;
}

TEST(ScheduleReference, ZoneOffsetsAgreeWithTheCLibraryBeforeAndAfter2037) {
  const uint64_t seed = 20261130;
  Rng rng(seed);
  for (const auto& zone : kZones) {
    auto tz = TimeZone::Load(zone);
    ASSERT_TRUE(tz.ok()) << tz.status().ToString();
    int64_t prev_t = 631152000;  // 1990
    int64_t prev = tz->OffsetAt(prev_t);
    // Every day to 2100, and at each change the exact second on both sides.
    for (int64_t t = prev_t; t < 4102444800; t += 86400) {
      const int64_t off = tz->OffsetAt(t);
      if (off != prev) {
        int64_t lo = prev_t, hi = t;
        while (hi - lo > 1) {
          const int64_t mid = lo + (hi - lo) / 2;
          (tz->OffsetAt(mid) == prev ? lo : hi) = mid;
        }
        ASSERT_EQ(tz->OffsetAt(lo), LibcOffset(zone, lo)) << zone << " t=" << lo;
        ASSERT_EQ(tz->OffsetAt(hi), LibcOffset(zone, hi)) << zone << " t=" << hi;
      }
      prev = off;
      prev_t = t;
    }
    for (int i = 0; i < 300; ++i) {
      const int64_t t = 631152000 + static_cast<int64_t>(rng.Uniform(3471292800));
      ASSERT_EQ(tz->OffsetAt(t), LibcOffset(zone, t)) << zone << " t=" << t << " seed=" << seed;
    }
  }
  unsetenv("TZ");
  tzset();
}

// --- the brute-force reference -------------------------------------------------------

bool RefMatches(const CronSpec& c, int64_t local) {
  time_t lt = static_cast<time_t>(local);
  tm f{};
  gmtime_r(&lt, &f);
  if (!c.minute[f.tm_min] || !c.hour[f.tm_hour] || !c.month[f.tm_mon + 1]) return false;
  const bool dom = c.dom[f.tm_mday], dow = c.dow[f.tm_wday];
  // cronie: if either day field starts with '*', both must match; otherwise either.
  return (c.dom_any || c.dow_any) ? dom && dow : dom || dow;
}

// The first fire strictly after `after_s` within `horizon_s`, walking every UTC minute
// from a few hours before (to know which local minutes were already seen); 0 if none.
int64_t RefNextFire(const CronSpec& c, const TimeZone& tz, int64_t after_s, int64_t horizon_s) {
  int64_t u = (after_s / 60) * 60 - 4 * 3600;
  int64_t max_seen = INT64_MIN;
  int64_t prev_local = (u - 60) + tz.OffsetAt(u - 60);
  for (; u <= after_s + horizon_s; u += 60) {
    const int64_t local = u + tz.OffsetAt(u);
    bool fire = false;
    if (local - prev_local > 60) {  // the clock jumped forward: were matching minutes skipped?
      for (int64_t m = prev_local + 60; m < local; m += 60) fire = fire || RefMatches(c, m);
    }
    fire = fire || (RefMatches(c, local) && local > max_seen);
    max_seen = std::max(max_seen, local);
    prev_local = local;
    if (fire && u > after_s) return u;
  }
  return 0;
}

std::string RandomField(Rng* rng, int lo, int hi, bool mostly_star) {
  const uint64_t k = rng->Uniform(mostly_star ? 9 : 6);
  const int span = hi - lo;
  const int a = lo + static_cast<int>(rng->Uniform(span));
  const int b = a + static_cast<int>(rng->Uniform(hi - a));
  const int step = 2 + static_cast<int>(rng->Uniform(std::max(1, span / 3)));
  switch (k) {
    case 0: return std::to_string(a);
    case 1: return std::to_string(a) + "-" + std::to_string(b);
    case 2: return "*/" + std::to_string(step);
    case 3: return std::to_string(a) + "," + std::to_string(b);
    case 4: return std::to_string(a) + "-" + std::to_string(b) + "/" + std::to_string(step);
    default: return "*";
  }
}

// A start near a DST change of `tz` (within a day and a half), or 0 if it has none soon.
int64_t NearTransition(const TimeZone& tz, int64_t from, Rng* rng) {
  const int64_t first = tz.OffsetAt(from);
  for (int64_t t = from; t < from + 400 * 86400; t += 3600) {
    if (tz.OffsetAt(t) != first) {
      return t - 36 * 3600 + static_cast<int64_t>(rng->Uniform(72 * 3600));
    }
  }
  return 0;
}

TEST(ScheduleReference, NextFireAgreesWithAMinuteByMinuteWalk) {
  const uint64_t seed = 20261131;
  Rng rng(seed);
  std::vector<TimeZone> zones;
  for (const auto& z : kZones) zones.push_back(*TimeZone::Load(z));
  constexpr int64_t kHorizon = 2 * 86400;
  int cases = 0, fired = 0;
  for (int i = 0; cases < 10000 && i < 40000; ++i) {
    const std::string expr = RandomField(&rng, 0, 59, false) + " " +
                             RandomField(&rng, 0, 23, false) + " " +
                             RandomField(&rng, 1, 31, true) + " " +
                             RandomField(&rng, 1, 12, true) + " " + RandomField(&rng, 0, 6, true);
    auto spec = ParseCron(expr);
    if (!spec.ok()) continue;  // never fires: refused, tested elsewhere
    const TimeZone& tz = zones[rng.Uniform(zones.size() - 1)];
    // 2020-2070: before and after 2037, where the zone files' listed transitions end.
    int64_t start = 1577836800 + static_cast<int64_t>(rng.Uniform(50ull * 365 * 86400));
    if (rng.Uniform(1) == 0) {
      if (int64_t near = NearTransition(tz, start, &rng); near != 0) start = near;
    }
    start += static_cast<int64_t>(rng.Uniform(59));  // not always on a minute
    ++cases;
    int64_t after = start;
    for (int k = 0; k < 3; ++k) {  // three successive fires
      const int64_t want = RefNextFire(*spec, tz, after, kHorizon);
      const TimeMs got = NextFire(*spec, tz, after * 1000);
      if (want != 0) {
        ASSERT_EQ(got, want * 1000)
            << "'" << expr << "' in " << tz.name() << " after " << FormatLocal(after * 1000, tz)
            << " (t=" << after << "): reference " << FormatLocal(want * 1000, tz) << ", got "
            << (got ? FormatLocal(got, tz) : "never") << "; seed=" << seed << " case=" << i;
        ++fired;
        after = want;
      } else {
        ASSERT_TRUE(got == 0 || got / 1000 > after + kHorizon)
            << "'" << expr << "' in " << tz.name() << " after t=" << after
            << ": the reference found nothing within 2 days, got " << FormatLocal(got, tz)
            << "; seed=" << seed << " case=" << i;
        break;
      }
    }
  }
  EXPECT_EQ(cases, 10000);
  EXPECT_GT(fired, 8000);  // the cases mostly exercise firing, not only "nothing soon"
}

// --- the cases the rules were written for ---------------------------------------------

TimeMs At(const char* iso) { return *ParseIsoTime(iso); }

std::string Next(const char* cron, const char* zone, const char* after) {
  auto tz = TimeZone::Load(zone);
  EXPECT_TRUE(tz.ok());
  auto spec = ParseCron(cron);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  return FormatLocal(NextFire(*spec, *tz, At(after)), *tz);
}

TEST(ScheduleRules, ANonMatchingDayCrossedByASpringForwardDoesNotShiftTheNextTick) {
  EXPECT_EQ(Next("0 0 * * 1", "Europe/Berlin", "2026-03-28T23:30:00Z"),
            "2026-03-30T00:00:00+02:00");
  EXPECT_EQ(Next("*/15 0 * * 1", "Europe/Berlin", "2026-03-28T23:30:00Z"),
            "2026-03-30T00:00:00+02:00");
}

TEST(ScheduleRules, EveryExpressionFiresOnceInARepeatedHour) {
  // Europe/Berlin 2026-10-25: 03:00 CEST becomes 02:00 CET.
  EXPECT_EQ(Next("59 2 * * *", "Europe/Berlin", "2026-10-25T00:00:00Z"),
            "2026-10-25T02:59:00+02:00");
  EXPECT_EQ(Next("59 2 * * *", "Europe/Berlin", "2026-10-25T00:59:00Z"),
            "2026-10-26T02:59:00+01:00");
  EXPECT_EQ(Next("*/15 * * * *", "Europe/Berlin", "2026-10-25T00:50:00Z"),
            "2026-10-25T03:00:00+01:00");  // 02:00-02:45 CET were already seen as CEST
}

TEST(ScheduleRules, SkippedTimesFireOnceRightAfterTheJump) {
  EXPECT_EQ(Next("30 2 * * *", "Europe/Berlin", "2026-03-29T00:00:00Z"),
            "2026-03-29T03:00:00+02:00");
  EXPECT_EQ(Next("*/15 * * * *", "Europe/Berlin", "2026-03-29T00:50:00Z"),
            "2026-03-29T03:00:00+02:00");
  EXPECT_EQ(Next("*/15 * * * *", "Europe/Berlin", "2026-03-29T01:00:00Z"),
            "2026-03-29T03:15:00+02:00");
}

TEST(ScheduleRules, HalfHourShiftsMidnightChangesAndHalfHourZones) {
  // Lord Howe moves by 30 minutes: 2026-10-04 02:00 +10:30 becomes 02:30 +11:00.
  EXPECT_EQ(Next("15 2 * * *", "Australia/Lord_Howe", "2026-10-03T12:00:00Z"),
            "2026-10-04T02:30:00+11:00");
  EXPECT_EQ(Next("45 2 * * *", "Australia/Lord_Howe", "2026-10-03T12:00:00Z"),
            "2026-10-04T02:45:00+11:00");
  // Sao Paulo changed at midnight (2018-11-04 00:00 became 01:00).
  EXPECT_EQ(Next("0 0 * * *", "America/Sao_Paulo", "2018-11-03T12:00:00Z"),
            "2018-11-04T01:00:00-02:00");
  EXPECT_EQ(Next("30 9 * * *", "Asia/Kolkata", "2026-06-01T00:00:00Z"),
            "2026-06-01T09:30:00+05:30");
}

TEST(ScheduleRules, SummerTimeContinuesAfterTheLastListedTransition) {
  EXPECT_EQ(Next("0 12 1 7 *", "Europe/Berlin", "2045-01-01T00:00:00Z"),
            "2045-07-01T12:00:00+02:00");
  EXPECT_EQ(Next("0 12 1 1 *", "Australia/Sydney", "2050-06-01T00:00:00Z"),
            "2051-01-01T12:00:00+11:00");
}

TEST(ScheduleRules, DayFieldsFollowCronie) {
  // `*/2` starts with '*': unrestricted, so both fields must match (odd days that are Mondays).
  EXPECT_EQ(Next("0 9 */2 * 1", "UTC", "2026-11-30T10:00:00Z"), "2026-12-07T09:00:00+00:00");
  // Both restricted: either matches (the 15th, or a Monday).
  EXPECT_EQ(Next("0 9 15 * 1", "UTC", "2026-12-01T10:00:00Z"), "2026-12-07T09:00:00+00:00");
}

TEST(ScheduleRules, AnExpressionThatNeverFiresIsRefused) {
  EXPECT_FALSE(ParseCron("0 0 31 2 *").ok());
  EXPECT_FALSE(ParseCron("0 0 30,31 2 *").ok());
  EXPECT_TRUE(ParseCron("0 0 29 2 *").ok());   // leap years
  EXPECT_TRUE(ParseCron("0 0 31 2 1").ok());   // both restricted: Mondays in February
}

TEST(TimeZoneFiles, ARegionDirectoryOrAForeignFileIsAnErrorNotACrash) {
  auto dir = TimeZone::Load("Europe");
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.status().message().find("is a region, not a zone"), std::string::npos);
  EXPECT_FALSE(TimeZone::Load("../etc/passwd").ok());
  EXPECT_FALSE(TimeZone::Load("No/Such_Zone").ok());
  EXPECT_FALSE(TimeZone::FromTzif("x", "TZif2", "bytes").ok());
  EXPECT_FALSE(TimeZone::FromTzif("x", std::string(100, 'A'), "bytes").ok());
  // Every truncation of a real file is refused or read, never a crash.
  std::ifstream in("/usr/share/zoneinfo/Europe/Berlin", std::ios::binary);
  std::string berlin((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(berlin.size(), 100u);
  for (size_t n = 0; n < berlin.size(); n += 7) {
    auto tz = TimeZone::FromTzif("x", std::string_view(berlin).substr(0, n), "bytes");
    if (tz.ok()) tz->OffsetAt(2000000000);
  }
}

TEST(TimeZoneFiles, SlimFilesFromTheZoneCompilerGiveTheSameOffsets) {
  if (!std::filesystem::exists("/usr/sbin/zic")) GTEST_SKIP() << "no zic here";
  const auto dir = std::filesystem::temp_directory_path() / ("outpost-zic-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  // The European Union's rules since 1977 (as in the tz database's "EU" rules).
  std::ofstream(dir / "src") << "Rule EU 1977 1980 - Apr Sun>=1 1:00u 1:00 S\n"
                                "Rule EU 1977 only - Sep lastSun 1:00u 0 -\n"
                                "Rule EU 1978 only - Oct 1 1:00u 0 -\n"
                                "Rule EU 1979 1995 - Sep lastSun 1:00u 0 -\n"
                                "Rule EU 1981 max - Mar lastSun 1:00u 1:00 S\n"
                                "Rule EU 1996 max - Oct lastSun 1:00u 0 -\n"
                                "Zone Test/Slim 1:00 - CET 1977\n"
                                "  1:00 EU CE%sT\n";
  ASSERT_EQ(system(("/usr/sbin/zic -b slim -d " + dir.string() + " " + (dir / "src").string())
                       .c_str()),
            0);
  setenv("TZDIR", dir.c_str(), 1);
  auto tz = TimeZone::Load("Test/Slim");
  unsetenv("TZDIR");
  ASSERT_TRUE(tz.ok()) << tz.status().ToString();
  const std::string path = ":" + (dir / "Test/Slim").string();
  for (int64_t t = 946684800; t < 4102444800; t += 86400 * 7 + 3607) {
    ASSERT_EQ(tz->OffsetAt(t), LibcOffset(path, t)) << "t=" << t;
  }
  auto berlin = TimeZone::Load("Europe/Berlin");
  for (int64_t t = 946684800; t < 4102444800; t += 86400 * 5 + 17) {
    ASSERT_EQ(tz->OffsetAt(t), berlin->OffsetAt(t)) << "t=" << t;
  }
  unsetenv("TZ");
  tzset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace outpost
