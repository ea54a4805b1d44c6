#include "common/cron.h"

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
  *any = text == "*";
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
  return c;
}

Result<TimeZone> TimeZone::Load(const std::string& name) {
  TimeZone tz;
  tz.name_ = name.empty() ? "UTC" : name;
  if (tz.name_ == "UTC" || tz.name_ == "Etc/UTC") return tz;
  if (name.find("..") != std::string::npos || name[0] == '/') {
    return Status::InvalidArgument("time zone '" + name + "' is not a zone name like Europe/Berlin");
  }
  const char* dir = getenv("TZDIR");
  const std::string path = std::string(dir ? dir : "/usr/share/zoneinfo") + "/" + name;
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("unknown time zone '" + name + "' (no " + path + ")");
  std::string d((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto be32 = [&d](size_t o) -> int64_t {
    return static_cast<int32_t>((static_cast<uint32_t>(static_cast<uint8_t>(d[o])) << 24) |
                                (static_cast<uint32_t>(static_cast<uint8_t>(d[o + 1])) << 16) |
                                (static_cast<uint32_t>(static_cast<uint8_t>(d[o + 2])) << 8) |
                                static_cast<uint32_t>(static_cast<uint8_t>(d[o + 3])));
  };
  auto be64 = [&](size_t o) -> int64_t {
    return static_cast<int64_t>((static_cast<uint64_t>(static_cast<uint32_t>(be32(o))) << 32) |
                                static_cast<uint32_t>(be32(o + 4)));
  };
  auto corrupt = [&] { return Status::Corruption("time zone file " + path + " is not valid TZif"); };
  if (d.size() < 44 || d.compare(0, 4, "TZif") != 0) return corrupt();
  auto counts = [&](size_t o, int64_t c[6]) {
    for (int i = 0; i < 6; ++i) c[i] = be32(o + 20 + 4 * static_cast<size_t>(i));
  };
  int64_t c[6];
  counts(0, c);
  size_t o = 44;
  size_t tsize = 4;
  if (d[4] >= '2') {  // skip the 32-bit block to the 64-bit one
    o += static_cast<size_t>(c[3] * 4 + c[3] + c[4] * 6 + c[5] + c[2] * 8 + c[1] + c[0]);
    if (d.size() < o + 44) return corrupt();
    counts(o, c);
    o += 44;
    tsize = 8;
  }
  const int64_t timecnt = c[3], typecnt = c[4];
  if (typecnt < 1 || timecnt < 0 || d.size() < o + static_cast<size_t>(timecnt * (static_cast<int64_t>(tsize) + 1) + typecnt * 6)) {
    return corrupt();
  }
  for (int64_t i = 0; i < timecnt; ++i) {
    tz.transitions_.push_back(tsize == 8 ? be64(o + static_cast<size_t>(i) * 8) : be32(o + static_cast<size_t>(i) * 4));
  }
  o += static_cast<size_t>(timecnt) * tsize;
  for (int64_t i = 0; i < timecnt; ++i) {
    const uint8_t idx = static_cast<uint8_t>(d[o + static_cast<size_t>(i)]);
    if (idx >= typecnt) return corrupt();
    tz.index_.push_back(idx);
  }
  o += static_cast<size_t>(timecnt);
  for (int64_t i = 0; i < typecnt; ++i) tz.offsets_.push_back(static_cast<int32_t>(be32(o + static_cast<size_t>(i) * 6)));
  tz.initial_ = tz.offsets_[0];
  return tz;
}

int64_t TimeZone::OffsetAt(int64_t t) const {
  if (transitions_.empty()) return offsets_.empty() ? 0 : initial_;
  auto it = std::upper_bound(transitions_.begin(), transitions_.end(), t);
  if (it == transitions_.begin()) return initial_;
  return offsets_[index_[static_cast<size_t>(it - transitions_.begin() - 1)]];
}

namespace {

// Does the local wall-clock minute `local` (seconds, as if UTC) match the spec?
bool MatchesLocal(const CronSpec& c, int64_t local) {
  time_t lt = static_cast<time_t>(local);
  tm f{};
  gmtime_r(&lt, &f);
  const bool dom_ok = c.dom[static_cast<size_t>(f.tm_mday)];
  const bool dow_ok = c.dow[static_cast<size_t>(f.tm_wday)];
  const bool day_ok = (c.dom_any || c.dow_any) ? (dom_ok && dow_ok) : (dom_ok || dow_ok);
  return c.month[static_cast<size_t>(f.tm_mon + 1)] && day_ok &&
         c.hour[static_cast<size_t>(f.tm_hour)] && c.minute[static_cast<size_t>(f.tm_min)];
}

}  // namespace

TimeMs NextFire(const CronSpec& c, const TimeZone& tz, TimeMs after) {
  int64_t t = (after / 60000 + 1) * 60;  // next whole minute, in seconds
  int64_t last_local = INT64_MIN;
  // The instant before the first candidate is `after` itself, so a jump right after it
  // counts too.
  int64_t prev_t = after / 1000;
  int64_t prev_local = prev_t + tz.OffsetAt(prev_t);
  for (int guard = 0; guard < 5 * 366 * 24 * 60; ++guard) {
    const int64_t local = t + tz.OffsetAt(t);
    // Clocks jumped forward since the last minute looked at: local minutes that never
    // existed were skipped. If one of them matches, fire now, at the first instant after
    // the jump (as cron does for a fixed time in the skipped hour) — once, however many.
    if (local - prev_local > t - prev_t) {
      const int64_t skipped_from = prev_local + (t - prev_t);
      for (int64_t m = skipped_from; m < local && m - skipped_from < 2 * 86400; m += 60) {
        if (MatchesLocal(c, m)) return t * 1000;
      }
    }
    prev_t = t;
    prev_local = local;
    time_t lt = static_cast<time_t>(local);
    tm f{};
    gmtime_r(&lt, &f);
    const bool dom_ok = c.dom[static_cast<size_t>(f.tm_mday)];
    const bool dow_ok = c.dow[static_cast<size_t>(f.tm_wday)];
    const bool day_ok = (c.dom_any || c.dow_any) ? (dom_ok && dow_ok) : (dom_ok || dow_ok);
    if (!c.month[static_cast<size_t>(f.tm_mon + 1)] || !day_ok) {
      t += (24 * 60 - (f.tm_hour * 60 + f.tm_min)) * 60;  // next local midnight
      continue;
    }
    if (!c.hour[static_cast<size_t>(f.tm_hour)]) {
      t += (60 - f.tm_min) * 60;
      continue;
    }
    // A local minute seen before (clocks went back) does not fire again.
    if (c.minute[static_cast<size_t>(f.tm_min)] && local > last_local) return t * 1000;
    last_local = std::max(last_local, local);
    t += 60;
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
