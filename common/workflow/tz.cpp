#include "common/workflow/tz.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace outpost {

namespace {

constexpr size_t kMaxTzifBytes = 1 << 20;

// Days since 1970-01-01 of a proleptic Gregorian date (month 1-12).
int64_t DaysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

bool Leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int DaysInMonth(int64_t y, int m) {
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && Leap(y) ? 29 : kDays[m - 1];
}

int64_t YearOf(int64_t t) {
  int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
  // civil_from_days, year only.
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const int64_t doe = days - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t m = mp < 10 ? mp + 3 : mp - 9;
  return yoe + era * 400 + (m <= 2);
}

// Local seconds (as if UTC) at which `d` falls in year y.
int64_t RuleTime(const PosixTz::Date& d, int64_t y) {
  int64_t day = 0;
  if (d.kind == 'J') {
    day = DaysFromCivil(y, 1, 1) + d.day - 1 + (Leap(y) && d.day >= 60 ? 1 : 0);
  } else if (d.kind == 'D') {
    day = DaysFromCivil(y, 1, 1) + d.day;
  } else {
    const int64_t first = DaysFromCivil(y, d.month, 1);
    const int wd_first = static_cast<int>(((first % 7) + 7 + 4) % 7);  // 1970-01-01: Thursday
    int mday = 1 + (d.day - wd_first + 7) % 7 + (d.week - 1) * 7;
    while (mday > DaysInMonth(y, d.month)) mday -= 7;
    day = first + mday - 1;
  }
  return day * 86400 + d.time;
}

// A small cursor over a POSIX TZ string; every read checks bounds.
struct Cursor {
  std::string_view s;
  size_t i = 0;
  bool done() const { return i >= s.size(); }
  char peek() const { return done() ? '\0' : s[i]; }
};

bool ReadName(Cursor* c) {
  if (c->peek() == '<') {
    const size_t close = c->s.find('>', c->i);
    if (close == std::string_view::npos || close - c->i < 4) return false;
    c->i = close + 1;
    return true;
  }
  const size_t start = c->i;
  while (!c->done() && std::isalpha(static_cast<unsigned char>(c->peek()))) ++c->i;
  return c->i - start >= 3;
}

// [+-]hh[:mm[:ss]] as seconds, hours up to max_hours.
bool ReadHms(Cursor* c, int max_hours, int32_t* out) {
  int sign = 1;
  if (c->peek() == '+' || c->peek() == '-') sign = c->s[c->i++] == '-' ? -1 : 1;
  int32_t parts[3] = {0, 0, 0};
  for (int p = 0; p < 3; ++p) {
    if (p > 0) {
      if (c->peek() != ':') break;
      ++c->i;
    }
    const size_t start = c->i;
    int32_t v = 0;
    while (!c->done() && std::isdigit(static_cast<unsigned char>(c->peek())) && c->i - start < 3) {
      v = v * 10 + (c->s[c->i++] - '0');
    }
    if (c->i == start) return false;
    parts[p] = v;
  }
  if (parts[0] > max_hours || parts[1] > 59 || parts[2] > 59) return false;
  *out = sign * (parts[0] * 3600 + parts[1] * 60 + parts[2]);
  return true;
}

bool ReadInt(Cursor* c, int lo, int hi, int* out) {
  const size_t start = c->i;
  int v = 0;
  while (!c->done() && std::isdigit(static_cast<unsigned char>(c->peek())) && c->i - start < 4) {
    v = v * 10 + (c->s[c->i++] - '0');
  }
  if (c->i == start || v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool ReadDate(Cursor* c, PosixTz::Date* d) {
  if (c->peek() == 'M') {
    ++c->i;
    d->kind = 'M';
    if (!ReadInt(c, 1, 12, &d->month) || c->peek() != '.') return false;
    ++c->i;
    if (!ReadInt(c, 1, 5, &d->week) || c->peek() != '.') return false;
    ++c->i;
    if (!ReadInt(c, 0, 6, &d->day)) return false;
  } else if (c->peek() == 'J') {
    ++c->i;
    d->kind = 'J';
    if (!ReadInt(c, 1, 365, &d->day)) return false;
  } else {
    d->kind = 'D';
    if (!ReadInt(c, 0, 365, &d->day)) return false;
  }
  d->time = 7200;
  if (c->peek() == '/') {
    ++c->i;
    if (!ReadHms(c, 167, &d->time)) return false;  // RFC 8536: -167..167 hours
  }
  return true;
}

uint32_t Be32(std::string_view d, size_t o) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(d[o])) << 24) |
         (static_cast<uint32_t>(static_cast<uint8_t>(d[o + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(d[o + 2])) << 8) |
         static_cast<uint32_t>(static_cast<uint8_t>(d[o + 3]));
}

int64_t Be64(std::string_view d, size_t o) {
  return static_cast<int64_t>((static_cast<uint64_t>(Be32(d, o)) << 32) | Be32(d, o + 4));
}

struct Header {
  uint64_t isut, isstd, leap, time, type, chars;
};

bool ReadHeader(std::string_view d, size_t o, Header* h) {
  if (d.size() < o + 44 || d.substr(o, 4) != "TZif") return false;
  h->isut = Be32(d, o + 20);
  h->isstd = Be32(d, o + 24);
  h->leap = Be32(d, o + 28);
  h->time = Be32(d, o + 32);
  h->type = Be32(d, o + 36);
  h->chars = Be32(d, o + 40);
  // Counts beyond the file are refused before any arithmetic on them can overflow.
  return h->time <= kMaxTzifBytes && h->type <= 256 && h->chars <= kMaxTzifBytes &&
         h->leap <= kMaxTzifBytes && h->isut <= 256 && h->isstd <= 256 && h->type >= 1;
}

uint64_t BlockBytes(const Header& h, uint64_t tsize) {
  return h.time * tsize + h.time + h.type * 6 + h.chars + h.leap * (tsize + 4) + h.isstd + h.isut;
}

}  // namespace

Result<PosixTz> ParsePosixTz(std::string_view text) {
  auto bad = [&] {
    return Status::InvalidArgument("POSIX TZ string '" + std::string(text.substr(0, 64)) +
                                   "' is not valid");
  };
  PosixTz tz;
  Cursor c{text};
  int32_t west = 0;
  if (!ReadName(&c) || !ReadHms(&c, 24, &west)) return bad();
  tz.std_offset = -west;
  if (c.done()) return tz;
  if (!ReadName(&c)) return bad();
  tz.has_dst = true;
  tz.dst_offset = tz.std_offset + 3600;
  if (!c.done() && c.peek() != ',') {
    if (!ReadHms(&c, 24, &west)) return bad();
    tz.dst_offset = -west;
  }
  // Without rules POSIX leaves the dates to the implementation; US rules are the custom.
  tz.start = {'M', 3, 2, 0, 7200};
  tz.end = {'M', 11, 1, 0, 7200};
  if (!c.done()) {
    if (c.peek() != ',') return bad();
    ++c.i;
    if (!ReadDate(&c, &tz.start) || c.peek() != ',') return bad();
    ++c.i;
    if (!ReadDate(&c, &tz.end)) return bad();
  }
  if (!c.done()) return bad();
  return tz;
}

int32_t PosixTz::OffsetAt(int64_t t) const {
  if (!has_dst) return std_offset;
  const int64_t y = YearOf(t + std_offset);
  const int64_t start_utc = RuleTime(start, y) - std_offset;  // start is in standard time
  const int64_t end_utc = RuleTime(end, y) - dst_offset;      // end is in daylight time
  bool dst;
  if (start_utc < end_utc) {
    dst = t >= start_utc && t < end_utc;  // northern: summer inside the year
  } else {
    dst = !(t >= end_utc && t < start_utc);  // southern: summer across the new year
  }
  return dst ? dst_offset : std_offset;
}

Result<TimeZone> TimeZone::Load(const std::string& name) {
  const std::string zone = name.empty() ? "UTC" : name;
  if (zone == "UTC" || zone == "Etc/UTC") {
    TimeZone tz;
    tz.name_ = zone;
    return tz;
  }
  if (zone.find("..") != std::string::npos || zone[0] == '/' || zone.size() > 255) {
    return Status::InvalidArgument("time zone '" + zone + "' is not a zone name like Europe/Berlin");
  }
  const char* dir = getenv("TZDIR");
  const std::string path = std::string(dir && *dir ? dir : "/usr/share/zoneinfo") + "/" + zone;
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    return Status::NotFound("unknown time zone '" + zone + "' (no " + path + ")");
  }
  if (S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument("time zone '" + zone + "' is a region, not a zone (" + path +
                                   " is a directory); name a zone such as " + zone + "/...");
  }
  if (!S_ISREG(st.st_mode) || st.st_size > static_cast<off_t>(kMaxTzifBytes)) {
    return Status::InvalidArgument("time zone '" + zone + "': " + path +
                                   " is not a zone file");
  }
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Status::IoError("time zone '" + zone + "': open " + path + ": " + strerror(errno));
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(fd);
  bytes.resize(got);
  return FromTzif(zone, bytes, path);
}

Result<TimeZone> TimeZone::FromTzif(const std::string& name, std::string_view d,
                                    const std::string& where) {
  auto corrupt = [&](const char* why) {
    return Status::Corruption("time zone '" + name + "': " + where + " is not a valid zone file (" +
                              why + ")");
  };
  Header h;
  if (!ReadHeader(d, 0, &h)) return corrupt("bad TZif header");
  const char version = d[4];
  size_t o = 44;
  uint64_t tsize = 4;
  if (version >= '2') {  // skip the 32-bit block; the 64-bit one follows
    o += BlockBytes(h, 4);
    if (!ReadHeader(d, o, &h)) return corrupt("bad second TZif header");
    o += 44;
    tsize = 8;
  }
  if (d.size() < o + BlockBytes(h, tsize)) return corrupt("truncated");
  TimeZone tz;
  tz.name_ = name;
  for (uint64_t i = 0; i < h.time; ++i) {
    tz.transitions_.push_back(tsize == 8 ? Be64(d, o + i * 8)
                                         : static_cast<int32_t>(Be32(d, o + i * 4)));
    if (i > 0 && tz.transitions_[i] <= tz.transitions_[i - 1]) {
      return corrupt("transitions out of order");
    }
  }
  o += h.time * tsize;
  for (uint64_t i = 0; i < h.time; ++i) {
    const uint8_t idx = static_cast<uint8_t>(d[o + i]);
    if (idx >= h.type) return corrupt("transition type out of range");
    tz.index_.push_back(idx);
  }
  o += h.time;
  for (uint64_t i = 0; i < h.type; ++i) {
    const int32_t off = static_cast<int32_t>(Be32(d, o + i * 6));
    if (off < -25 * 3600 || off > 26 * 3600) return corrupt("offset out of range");
    tz.offsets_.push_back(off);
  }
  tz.initial_ = tz.offsets_[0];
  o += BlockBytes(h, tsize) - h.time * tsize - h.time;  // the rest of the data block
  if (version >= '2' && o < d.size() && d[o] == '\n') {
    const size_t end = d.find('\n', o + 1);
    if (end == std::string_view::npos) return corrupt("unterminated footer");
    const std::string_view footer = d.substr(o + 1, end - o - 1);
    if (!footer.empty()) {
      auto rule = ParsePosixTz(footer);
      if (!rule.ok()) return corrupt("footer is not a POSIX TZ string");
      tz.footer_ = *rule;
      tz.has_footer_ = true;
    }
  }
  return tz;
}

int64_t TimeZone::OffsetAt(int64_t t) const {
  if (transitions_.empty()) {
    if (has_footer_) return footer_.OffsetAt(t);
    return offsets_.empty() ? 0 : initial_;
  }
  if (t < transitions_.front()) return initial_;
  if (t >= transitions_.back() && has_footer_) return footer_.OffsetAt(t);
  auto it = std::upper_bound(transitions_.begin(), transitions_.end(), t);
  return offsets_[index_[static_cast<size_t>(it - transitions_.begin() - 1)]];
}

}  // namespace outpost
