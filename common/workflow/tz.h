// TimeZone: UTC offsets of an IANA zone, read from its TZif file (RFC 8536).
//
// Reads versions 1 to 4, fat or slim: the 64-bit block when there is one, the transitions
// it lists, and the POSIX TZ string in the footer (e.g. "CET-1CEST,M3.5.0,M10.5.0/3"),
// which gives the offset after the last listed transition — for slim files that is most
// of the time, for fat ones everything after 2037. A zone without a footer keeps its last
// offset.
//
// Everything read is checked: the name must be a zone name (no "..", not absolute), the
// file a regular file of at most 1 MiB, every count and index within the file. A directory
// (`Europe`), a truncated or foreign file, or a footer that does not parse is an error
// naming the zone and the file — never an exception or an abort. Time zones are loaded by
// the drivers (the agent, outpostctl) and handed to the sans-I/O scheduler.
//
// Thread-safety: a loaded TimeZone is immutable.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace outpost {

// A POSIX TZ rule ("std offset [dst [offset] [,start[/time],end[/time]]]").
struct PosixTz {
  int32_t std_offset = 0;  // seconds east of UTC (the string says west: negated)
  int32_t dst_offset = 0;
  bool has_dst = false;
  struct Date {
    char kind = 'M';  // 'M' month.week.day, 'J' julian 1-365 (no Feb 29), 'D' 0-365
    int month = 0, week = 0, day = 0;  // M: month 1-12, week 1-5, weekday 0-6; J/D: day
    int32_t time = 7200;               // local seconds after midnight (may be <0 or >24h)
  };
  Date start, end;  // DST starts at `start` (local standard time), ends at `end` (local DST)

  // Offset at UTC second t.
  int32_t OffsetAt(int64_t t) const;
};

Result<PosixTz> ParsePosixTz(std::string_view text);

class TimeZone {
 public:
  // "UTC" (or empty) without a file; otherwise TZDIR/NAME, TZDIR being $TZDIR or
  // /usr/share/zoneinfo.
  static Result<TimeZone> Load(const std::string& name);
  // A zone from TZif bytes (`where` names the source in errors).
  static Result<TimeZone> FromTzif(const std::string& name, std::string_view bytes,
                                   const std::string& where);

  const std::string& name() const { return name_; }
  // Offset from UTC in seconds at the UTC instant `t` (seconds since the epoch).
  int64_t OffsetAt(int64_t t) const;

 private:
  std::string name_;
  std::vector<int64_t> transitions_;  // UTC seconds, ascending
  std::vector<uint8_t> index_;        // type of each transition
  std::vector<int32_t> offsets_;      // by type
  int32_t initial_ = 0;               // before the first transition
  bool has_footer_ = false;
  PosixTz footer_;
};

}  // namespace outpost
