// Schedules: cron expressions in a time zone, evaluated from the site's own clock.
//
// Five fields — minute hour day-of-month month day-of-week — each `*`, a number, a range
// `a-b`, a list `a,b,c`, or a step `*/n` / `a-b/n`; months and weekdays also by name
// (jan..dec, sun..sat; 0 and 7 are Sunday). Day-of-month and day-of-week restrict
// together only when both are given (otherwise as cron: either matches). Shorthands:
// @hourly, @daily (@midnight), @weekly, @monthly, @yearly (@annually).
//
// Time zones are read from the system's zoneinfo (TZif) files. A local time skipped by a
// DST jump fires once at the first instant after the jump (as cron runs a job set for
// 02:30 at 03:00 on that day); a local time repeated when clocks go back fires once (the
// first).
#pragma once

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

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

class TimeZone {
 public:
  // "UTC" (or empty) without a file; otherwise /usr/share/zoneinfo/NAME (or $TZDIR/NAME).
  static Result<TimeZone> Load(const std::string& name);
  const std::string& name() const { return name_; }
  // Offset from UTC in seconds at the UTC instant `t` (seconds since the epoch).
  int64_t OffsetAt(int64_t t) const;

 private:
  std::string name_;
  std::vector<int64_t> transitions_;  // UTC seconds, ascending
  std::vector<uint8_t> index_;        // type of each transition
  std::vector<int32_t> offsets_;      // by type
  int32_t initial_ = 0;               // before the first transition
};

// The first fire time strictly after `after` (UTC ms), or 0 if none within ~5 years.
TimeMs NextFire(const CronSpec& spec, const TimeZone& tz, TimeMs after);

// "2026-11-25T02:00:00+01:00": ISO-8601 with the zone's offset at that instant.
std::string FormatLocal(TimeMs t, const TimeZone& tz);
// Parses "2026-11-24T10:00:00Z", "...+01:00", or "2026-11-24T10:00" (read as UTC).
Result<TimeMs> ParseIsoTime(std::string_view text);

}  // namespace outpost
