// Metrics in the Prometheus text exposition format (version 0.0.4): the hub's and the
// agent's /metrics, and the agent's file for node_exporter's textfile collector
// (docs/operations.md, "Monitoring").
//
// Debian 12 ships no Prometheus client library for C++ (prometheus-cpp is not in
// bookworm), so this is the part of one Outpost needs, kept small: a daemon builds the
// families fresh at each scrape from its own state and counters; only histograms are
// kept between scrapes (Histogram). Names are checked, label values and help text are
// escaped as the format says, and each family is written once. What it writes is held
// to the reference parsers in the tests: `promtool check metrics` and a real Prometheus
// scraping a real hub (tests/integration/metrics_test.sh).
//
// Thread-safety: none; the owner's thread builds and observes.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outpost {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// Observations counted into fixed buckets (upper bounds, ascending; +Inf is implied).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  // Per bucket, not cumulative; one more than bounds() (the last is +Inf).
  const std::vector<uint64_t>& counts() const { return counts_; }
  double sum() const { return sum_; }
  uint64_t count() const { return count_; }

  // 0.25 ms to 10 s: synced writes, from a fast SSD to a slow SD card.
  static std::vector<double> LatencyBounds();
  // 0.1 s to 6 h: task attempts.
  static std::vector<double> DurationBounds();

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Exposition {
 public:
  enum class Type { kCounter, kGauge, kHistogram };

  // Starts a family; the samples added until the next Family belong to it. A family
  // with no samples is still written (HELP and TYPE). A name that is not a valid metric
  // name, or one already written, makes the family and its samples be left out (and
  // counted in errors()): a daemon's scrape never fails for one bad family.
  void Family(std::string_view name, Type type, std::string_view help);
  // A sample of a counter or gauge family.
  void Sample(double value, const MetricLabels& labels = {});
  // The samples of a histogram family (_bucket with le, _sum, _count).
  void Observe(const Histogram& h, const MetricLabels& labels = {});

  // A label every sample written after this carries (the agent's site, so the series of
  // two agents on one host, or in one textfile directory, stay apart).
  void AddConstantLabel(std::string name, std::string value);

  const std::string& text() const { return out_; }
  std::string Take() { return std::move(out_); }
  // Families and samples left out: bad names, duplicates, the wrong kind of sample.
  uint64_t errors() const { return errors_; }

  static bool ValidMetricName(std::string_view name);
  static bool ValidLabelName(std::string_view name);
  // A value as the format writes it: shortest exact decimal, +Inf, -Inf, NaN.
  static std::string FormatValue(double v);

  // The Content-Type of the format.
  static constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  void Line(std::string_view suffix, const MetricLabels& labels, const char* extra_name,
            const std::string& extra_value, double value);

  std::string out_;
  std::string family_;  // empty: the current family is left out
  Type type_ = Type::kGauge;
  std::set<std::string> written_;
  MetricLabels constant_;
  uint64_t errors_ = 0;
};

}  // namespace outpost
