// Schedules: cron expressions in a time zone, evaluated from the site's own clock.
//
// Five fields — minute hour day-of-month month day-of-week — each `*`, a number, a range
// `a-b`, a list `a,b,c`, or a step `*/n` / `a-b/n`; months and weekdays also by name
// (jan..dec, sun..sat; 0 and 7 are Sunday). Shorthands: @hourly, @daily (@midnight),
// @weekly, @monthly, @yearly (@annually).
//
// Day of month and day of week, exactly as cronie and Vixie cron: a field whose text
// starts with `*` (`*`, `*/2`) is "unrestricted"; if either field is unrestricted a day
// must match both, otherwise (both restricted) a day matching either fires.
// An expression that can never fire (`0 0 31 2 *`) is refused.
//
// Daylight saving time, the same for every expression: the local times an expression names
// are mapped to instants. A local time that exists once fires then. A local time skipped by
// a jump forward fires at the first instant after the jump — once, however many skipped
// times match (cron runs a 02:30 job at 03:00 on that day). A local time that occurs twice
// when clocks go back fires once, the first time. Time zones: common/workflow/tz.h.
#pragma once

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "common/workflow/tz.h"

namespace outpost {

struct CronSpec {
  std::bitset<60> minute;
  std::bitset<24> hour;
  std::bitset<32> dom;    // 1-31
  std::bitset<13> month;  // 1-12
  std::bitset<7> dow;     // 0-6, Sunday = 0
  bool dom_any = true, dow_any = true;
  std::string text;
};

Result<CronSpec> ParseCron(std::string_view text);

// The first fire time strictly after `after` (UTC ms), or 0 if none within ~5 years.
// Cost: at most one step per local day up to the firing day, then per matching minute.
TimeMs NextFire(const CronSpec& spec, const TimeZone& tz, TimeMs after);

// "2026-11-25T02:00:00+01:00": ISO-8601 with the zone's offset at that instant.
std::string FormatLocal(TimeMs t, const TimeZone& tz);
// Parses "2026-11-24T10:00:00Z", "...+01:00", or "2026-11-24T10:00" (read as UTC).
Result<TimeMs> ParseIsoTime(std::string_view text);

}  // namespace outpost
