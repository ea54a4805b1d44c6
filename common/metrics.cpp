#include "common/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace outpost {

namespace {

// Label values are UTF-8 with \, " and newline escaped; bytes that are not valid UTF-8
// (a site's text is not trusted to be) become U+FFFD.
void AppendLabelValue(std::string* out, std::string_view v) {
  size_t i = 0;
  while (i < v.size()) {
    const unsigned char c = static_cast<unsigned char>(v[i]);
    if (c == '\\') {
      *out += "\\\\";
    } else if (c == '"') {
      *out += "\\\"";
    } else if (c == '\n') {
      *out += "\\n";
    } else if (c < 0x80) {
      *out += static_cast<char>(c);
    } else {
      // A multi-byte sequence: its length from the lead byte, each continuation checked
      // (overlong forms and surrogates are refused too).
      const size_t n = c >= 0xf0 && c <= 0xf4   ? 4
                       : c >= 0xe0 && c <= 0xef ? 3
                       : c >= 0xc2 && c <= 0xdf ? 2
                                                : 0;
      bool ok = n > 0 && i + n <= v.size();
      for (size_t k = 1; ok && k < n; ++k) {
        ok = (static_cast<unsigned char>(v[i + k]) & 0xc0) == 0x80;
      }
      if (ok && n == 3) {
        const unsigned char c1 = static_cast<unsigned char>(v[i + 1]);
        ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);
      }
      if (ok && n == 4) {
        const unsigned char c1 = static_cast<unsigned char>(v[i + 1]);
        ok = !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
      }
      if (ok) {
        out->append(v.data() + i, n);
        i += n;
        continue;
      }
      *out += "\xef\xbf\xbd";
    }
    ++i;
  }
}

// HELP text escapes \ and newline.
void AppendHelp(std::string* out, std::string_view v) {
  for (char c : v) {
    if (c == '\\') {
      *out += "\\\\";
    } else if (c == '\n') {
      *out += "\\n";
    } else {
      *out += c;
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Histogram

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  bounds_.erase(std::remove_if(bounds_.begin(), bounds_.end(),
                               [](double b) { return !std::isfinite(b); }),
                bounds_.end());
  std::sort(bounds_.begin(), bounds_.end());
  bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
  counts_.assign(bounds_.size() + 1, 0);
}

void Histogram::Observe(double v) {
  if (std::isnan(v)) return;
  // The first bucket whose upper bound is >= v (Prometheus buckets are inclusive).
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) -
                                       bounds_.begin());
  ++counts_[i];
  sum_ += v;
  ++count_;
}

std::vector<double> Histogram::LatencyBounds() {
  return {0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064,
          0.128,   0.256,  0.512, 1.024, 2.5,   5,     10};
}

std::vector<double> Histogram::DurationBounds() {
  return {0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600};
}

// ---------------------------------------------------------------------------------------
// Exposition

bool Exposition::ValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool Exposition::ValidLabelName(std::string_view name) {
  if (name.empty() || name.rfind("__", 0) == 0) return false;  // __ is reserved
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

std::string Exposition::FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[40];
  // The shortest of %.15g..%.17g that reads back exactly.
  for (int precision = 15; precision <= 17; ++precision) {
    snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

void Exposition::AddConstantLabel(std::string name, std::string value) {
  if (!ValidLabelName(name)) {
    ++errors_;
    return;
  }
  constant_.emplace_back(std::move(name), std::move(value));
}

void Exposition::Family(std::string_view name, Type type, std::string_view help) {
  family_.clear();
  const std::string n(name);
  if (!ValidMetricName(n) || written_.count(n)) {
    ++errors_;
    return;
  }
  written_.insert(n);
  family_ = n;
  type_ = type;
  out_ += "# HELP ";
  out_ += n;
  out_ += ' ';
  AppendHelp(&out_, help);
  out_ += "\n# TYPE ";
  out_ += n;
  out_ += type == Type::kCounter ? " counter\n" : type == Type::kGauge ? " gauge\n" : " histogram\n";
}

void Exposition::Line(std::string_view suffix, const MetricLabels& labels,
                      const char* extra_name, const std::string& extra_value, double value) {
  std::string line = family_;
  line += suffix;
  bool any = false;
  auto label = [&](std::string_view k, std::string_view v) {
    line += any ? ',' : '{';
    any = true;
    line += k;
    line += "=\"";
    AppendLabelValue(&line, v);
    line += '"';
  };
  for (const auto& [k, v] : constant_) label(k, v);
  for (const auto& [k, v] : labels) {
    const bool clash = (extra_name && k == extra_name) ||
                       std::any_of(constant_.begin(), constant_.end(),
                                   [&k = k](const auto& c) { return c.first == k; });
    if (!ValidLabelName(k) || clash) {
      ++errors_;
      return;
    }
    label(k, v);
  }
  if (extra_name) label(extra_name, extra_value);
  if (any) line += '}';
  line += ' ';
  line += FormatValue(value);
  line += '\n';
  out_ += line;
}

void Exposition::Sample(double value, const MetricLabels& labels) {
  if (family_.empty() || type_ == Type::kHistogram) {
    ++errors_;
    return;
  }
  Line("", labels, nullptr, "", value);
}

void Exposition::Observe(const Histogram& h, const MetricLabels& labels) {
  if (family_.empty() || type_ != Type::kHistogram) {
    ++errors_;
    return;
  }
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.bounds().size(); ++i) {
    cumulative += h.counts()[i];
    Line("_bucket", labels, "le", FormatValue(h.bounds()[i]), static_cast<double>(cumulative));
  }
  Line("_bucket", labels, "le", "+Inf", static_cast<double>(h.count()));
  Line("_sum", labels, nullptr, "", h.sum());
  Line("_count", labels, nullptr, "", static_cast<double>(h.count()));
}

}  // namespace outpost
