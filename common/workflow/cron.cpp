#include "common/workflow/cron.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

namespace outpost {

namespace {

std::vector<std::string> Split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    const auto next = s.find(sep, pos);
    out.emplace_back(s.substr(pos, next == std::string_view::npos ? std::string_view::npos : next - pos));
    if (next == std::string_view::npos) return out;
    pos = next + 1;
  }
}

const char* kMonths[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
const char* kDays[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

bool Number(std::string s, int lo, int hi, const char* const* names, int base, int* out) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (names) {
    const int count = names == kMonths ? 12 : 7;
    for (int i = 0; i < count; ++i) {
      if (s == names[i]) {
        *out = i + base;
        return true;
      }
    }
  }
  if (s.empty() || s.size() > 4 || !std::all_of(s.begin(), s.end(), ::isdigit)) return false;
  *out = std::atoi(s.c_str());
  return *out >= lo && *out <= hi;
}

// One field into `bits` (index = value). Returns "" or what is wrong.
template <size_t N>
std::string Field(const std::string& text, int lo, int hi, const char* const* names, int base,
                  std::bitset<N>* bits, bool* any, const char* what) {
  *any = !text.empty() && text[0] == '*';  // as cronie: `*/2` is unrestricted too
  for (const auto& part : Split(text, ',')) {
    std::string range = part;
    int step = 1;
    if (auto slash = part.find('/'); slash != std::string::npos) {
      range = part.substr(0, slash);
      if (!Number(part.substr(slash + 1), 1, hi, nullptr, 0, &step)) {
        return std::string("bad step in ") + what + " '" + part + "'";
      }
    }
    int a = lo, b = hi;
    if (range != "*") {
      const auto dash = range.find('-');
      if (dash == std::string::npos) {
        if (!Number(range, lo, hi, names, base, &a)) {
          return std::string(what) + " '" + range + "' is not " + std::to_string(lo) + "-" + std::to_string(hi);
        }
        b = part.find('/') != std::string::npos ? hi : a;
      } else if (!Number(range.substr(0, dash), lo, hi, names, base, &a) ||
                 !Number(range.substr(dash + 1), lo, hi, names, base, &b) || a > b) {
        return std::string("bad range in ") + what + " '" + range + "'";
      }
    }
    for (int v = a; v <= b; v += step) bits->set(static_cast<size_t>(v));
  }
  return "";
}

}  // namespace

Result<CronSpec> ParseCron(std::string_view input) {
  std::string text(input);
  static const std::pair<const char*, const char*> kShort[] = {
      {"@hourly", "0 * * * *"}, {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
      {"@weekly", "0 0 * * 0"}, {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
      {"@annually", "0 0 1 1 *"}};
  for (const auto& [k, v] : kShort) {
    if (text == k) text = v;
  }
  std::istringstream in(text);
  std::vector<std::string> f;
  for (std::string w; in >> w;) f.push_back(w);
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("schedule '" + std::string(input) + "': " + why);
  };
  if (f.size() != 5) return bad("needs 5 fields (minute hour day-of-month month day-of-week) or @daily etc.");
  CronSpec c;
  c.text = std::string(input);
  bool any;
  std::bitset<8> dow8;
  std::string e;
  if (!(e = Field(f[0], 0, 59, nullptr, 0, &c.minute, &any, "minute")).empty()) return bad(e);
  if (!(e = Field(f[1], 0, 23, nullptr, 0, &c.hour, &any, "hour")).empty()) return bad(e);
  if (!(e = Field(f[2], 1, 31, nullptr, 0, &c.dom, &c.dom_any, "day of month")).empty()) return bad(e);
  if (!(e = Field(f[3], 1, 12, kMonths, 1, &c.month, &any, "month")).empty()) return bad(e);
  if (!(e = Field(f[4], 0, 7, kDays, 0, &dow8, &c.dow_any, "day of week")).empty()) return bad(e);
  for (int d = 0; d < 7; ++d) c.dow[static_cast<size_t>(d)] = dow8[static_cast<size_t>(d)];
  if (dow8[7]) c.dow.set(0);  // 7 is Sunday too
  if (!c.dom_any && c.dow_any) {
    // Only the day of month restricts: some chosen month must have some chosen day.
    static const int kMaxDays[] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool possible = false;
    for (int m = 1; m <= 12 && !possible; ++m) {
      for (int d = 1; d <= kMaxDays[m] && !possible; ++d) {
        possible = c.month[static_cast<size_t>(m)] && c.dom[static_cast<size_t>(d)];
      }
    }
    if (!possible) return bad("no chosen month has any of the chosen days: it would never fire");
  }
  return c;
}

namespace {

bool DayMatches(const CronSpec& c, const tm& f) {
  const bool dom_ok = c.dom[static_cast<size_t>(f.tm_mday)];
  const bool dow_ok = c.dow[static_cast<size_t>(f.tm_wday)];
  const bool day_ok = (c.dom_any || c.dow_any) ? (dom_ok && dow_ok) : (dom_ok || dow_ok);
  return c.month[static_cast<size_t>(f.tm_mon + 1)] && day_ok;
}

// The instant (UTC seconds) at which local wall time `local` (seconds, as if UTC) happens
// under the rules above: the only instant, the first of two, or — in a gap — the first
// instant after the jump. Assumes at most one offset change within two days of it.
int64_t InstantOf(int64_t local, const TimeZone& tz) {
  constexpr int64_t kSpan = 2 * 86400;
  const int64_t before = tz.OffsetAt(local - kSpan), after = tz.OffsetAt(local + kSpan);
  const int64_t u1 = local - before, u2 = local - after;
  const bool ok1 = tz.OffsetAt(u1) == before, ok2 = tz.OffsetAt(u2) == after;
  if (ok1 && ok2) return std::min(u1, u2);
  if (ok1) return u1;
  if (ok2) return u2;
  // A gap: the clock jumped from `before` to `after` somewhere in [u2, u1]; find the jump.
  int64_t lo = std::min(u1, u2), hi = std::max(u1, u2);
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (tz.OffsetAt(mid) == after) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

}  // namespace

TimeMs NextFire(const CronSpec& c, const TimeZone& tz, TimeMs after) {
  const int64_t after_s = after >= 0 ? after / 1000 : (after - 999) / 1000;
  // Local times map to instants in order (first occurrences, gaps to the jump), so the
  // answer is the image of the first matching local minute whose image is past `after`.
  // Start a day early in local time: an overlap can put later local times at earlier
  // instants than `after`'s own local time suggests.
  const int64_t start_local = after_s + tz.OffsetAt(after_s) - 86400;
  // Local times more than 3 hours before `after`'s own map to instants before it (offsets
  // near one instant differ by at most 2 hours): not looked at.
  const int64_t skip_before = start_local + 86400 - 3 * 3600;
  int64_t day = (start_local >= 0 ? start_local : start_local - 86399) / 86400;
  // Eight years: the longest wait between two matching days of an expression that can
  // fire at all is 29 February across a century year that is not leap (2096 to 2104).
  for (int guard = 0; guard < 8 * 366 + 2; ++guard, ++day) {
    time_t lt = static_cast<time_t>(day * 86400);
    tm f{};
    gmtime_r(&lt, &f);
    if (!DayMatches(c, f)) continue;
    for (int h = 0; h < 24; ++h) {
      if (!c.hour[static_cast<size_t>(h)] || day * 86400 + h * 3600 + 3599 < skip_before) continue;
      for (int m = 0; m < 60; ++m) {
        const int64_t local = day * 86400 + h * 3600 + m * 60;
        if (!c.minute[static_cast<size_t>(m)] || local < skip_before) continue;
        const int64_t at = InstantOf(local, tz);
        if (at * 1000 > after) return at * 1000;
      }
    }
  }
  return 0;
}

std::string FormatLocal(TimeMs t, const TimeZone& tz) {
  const int64_t s = t / 1000;
  const int64_t off = tz.OffsetAt(s);
  time_t lt = static_cast<time_t>(s + off);
  tm f{};
  gmtime_r(&lt, &f);
  char buf[64];
  const int64_t a = off < 0 ? -off : off;
  snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", f.tm_year + 1900, f.tm_mon + 1,
           f.tm_mday, f.tm_hour, f.tm_min, f.tm_sec, off < 0 ? '-' : '+', static_cast<int>(a / 3600),
           static_cast<int>((a % 3600) / 60));
  return buf;
}

Result<TimeMs> ParseIsoTime(std::string_view text) {
  tm f{};
  int off_sign = 0, oh = 0, om = 0;
  const std::string s(text);
  const char* rest = strptime(s.c_str(), "%Y-%m-%dT%H:%M", &f);
  if (!rest) return Status::InvalidArgument("'" + s + "' is not an ISO-8601 time like 2026-11-24T10:00:00Z");
  if (*rest == ':') {
    rest = strptime(rest, ":%S", &f);
    if (!rest) return Status::InvalidArgument("bad seconds in '" + s + "'");
  }
  if (*rest == 'Z') {
    ++rest;
  } else if (*rest == '+' || *rest == '-') {
    off_sign = *rest == '+' ? 1 : -1;
    if (sscanf(rest + 1, "%2d:%2d", &oh, &om) != 2) return Status::InvalidArgument("bad offset in '" + s + "'");
    rest += 6;
  }
  if (*rest != '\0') return Status::InvalidArgument("trailing text in '" + s + "'");
  const int64_t secs = static_cast<int64_t>(timegm(&f)) - off_sign * (oh * 3600 + om * 60);
  return static_cast<TimeMs>(secs) * 1000;
}

}  // namespace outpost
