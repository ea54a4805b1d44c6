// The Prometheus text exposition (common/metrics.h) and the HTTP listener that serves it
// on the daemon's own thread (common/transport/http_listener.h). The format itself is
// also checked by promtool and a real Prometheus in tests/integration/metrics_test.py.
#include "common/metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <clocale>
#include <cmath>
#include <cstring>
#include <cwchar>
#include <limits>
#include <random>
#include <thread>

#include "common/transport/http_listener.h"

namespace outpost {
namespace {

using T = Exposition::Type;

TEST(MetricsTest, CounterAndGaugeFamiliesAreWrittenWithHelpTypeAndLabels) {
  Exposition x;
  x.Family("outpost_x_total", T::kCounter, "Things\\counted\nhere.");
  x.Sample(3, {{"site", "a"}, {"state", "ok"}});
  x.Sample(0.5);
  x.Family("outpost_y", T::kGauge, "A gauge.");
  EXPECT_EQ(x.text(),
            "# HELP outpost_x_total Things\\\\counted\\nhere.\n"
            "# TYPE outpost_x_total counter\n"
            "outpost_x_total{site=\"a\",state=\"ok\"} 3\n"
            "outpost_x_total 0.5\n"
            "# HELP outpost_y A gauge.\n"
            "# TYPE outpost_y gauge\n");
  EXPECT_EQ(x.errors(), 0u);
}

TEST(MetricsTest, LabelValuesAreEscapedAndInvalidUtf8Replaced) {
  Exposition x;
  x.Family("m", T::kGauge, "h");
  x.Sample(1, {{"v", "a\\b\"c\nd"}});
  x.Sample(2, {{"v", "caf\xc3\xa9"}});                 // valid UTF-8 passes
  x.Sample(3, {{"v", std::string("x\xff" "y\xc3", 4)}});  // a stray byte, a cut sequence
  x.Sample(4, {{"v", "\xed\xa0\x80"}});                // a surrogate is not UTF-8
  EXPECT_NE(x.text().find("m{v=\"a\\\\b\\\"c\\nd\"} 1\n"), std::string::npos) << x.text();
  EXPECT_NE(x.text().find("m{v=\"caf\xc3\xa9\"} 2\n"), std::string::npos);
  EXPECT_NE(x.text().find("m{v=\"x\xef\xbf\xbdy\xef\xbf\xbd\"} 3\n"), std::string::npos);
  EXPECT_NE(x.text().find("m{v=\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"} 4\n"), std::string::npos);
}

TEST(MetricsTest, BadNamesAndDuplicatesAreLeftOutAndCounted) {
  Exposition x;
  x.Family("9starts_with_digit", T::kGauge, "h");
  x.Sample(1);  // belongs to the left-out family: left out too
  x.Family("has-dash", T::kGauge, "h");
  x.Family("good", T::kGauge, "h");
  x.Sample(1, {{"bad-label", "x"}});
  x.Sample(2, {{"__reserved", "x"}});
  x.Sample(3, {{"ok_label", "x"}});
  x.Family("good", T::kCounter, "again");
  x.Sample(4);
  EXPECT_EQ(x.text(), "# HELP good h\n# TYPE good gauge\ngood{ok_label=\"x\"} 3\n");
  EXPECT_EQ(x.errors(), 7u);  // 3 families, 2 samples of left-out families, 2 bad labels
  EXPECT_TRUE(Exposition::ValidMetricName("a:b_c9"));
  EXPECT_FALSE(Exposition::ValidMetricName(""));
  EXPECT_FALSE(Exposition::ValidLabelName("a:b"));
}

TEST(MetricsTest, ConstantLabelsGoOnEverySampleAndCannotBeRepeated) {
  Histogram h({1});
  h.Observe(0.5);
  Exposition x;
  x.AddConstantLabel("site", "gw-1");
  x.Family("c_total", T::kCounter, "h");
  x.Sample(1);
  x.Sample(2, {{"state", "ok"}});
  x.Sample(3, {{"site", "other"}});  // would repeat the constant label: left out
  x.Family("l_seconds", T::kHistogram, "h");
  x.Observe(h);
  EXPECT_EQ(x.text(),
            "# HELP c_total h\n# TYPE c_total counter\n"
            "c_total{site=\"gw-1\"} 1\n"
            "c_total{site=\"gw-1\",state=\"ok\"} 2\n"
            "# HELP l_seconds h\n# TYPE l_seconds histogram\n"
            "l_seconds_bucket{site=\"gw-1\",le=\"1\"} 1\n"
            "l_seconds_bucket{site=\"gw-1\",le=\"+Inf\"} 1\n"
            "l_seconds_sum{site=\"gw-1\"} 0.5\n"
            "l_seconds_count{site=\"gw-1\"} 1\n");
  EXPECT_EQ(x.errors(), 1u);
}

TEST(MetricsTest, HistogramBucketsAreCumulativeAndInclusive) {
  Histogram h({2, 1, std::numeric_limits<double>::infinity(), 1});  // sorted, deduplicated
  ASSERT_EQ(h.bounds(), (std::vector<double>{1, 2}));
  for (double v : {0.5, 1.0, 1.5, 5.0}) h.Observe(v);
  h.Observe(std::nan(""));  // ignored
  Exposition x;
  x.Family("lat_seconds", T::kHistogram, "h");
  x.Observe(h, {{"site", "s"}});
  EXPECT_EQ(x.text(),
            "# HELP lat_seconds h\n# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{site=\"s\",le=\"1\"} 2\n"
            "lat_seconds_bucket{site=\"s\",le=\"2\"} 3\n"
            "lat_seconds_bucket{site=\"s\",le=\"+Inf\"} 4\n"
            "lat_seconds_sum{site=\"s\"} 8\n"
            "lat_seconds_count{site=\"s\"} 4\n");
  // A histogram's samples only in a histogram family, and the other way round.
  Exposition y;
  y.Family("g", T::kGauge, "h");
  y.Observe(h);
  y.Family("hh", T::kHistogram, "h");
  y.Sample(1);
  EXPECT_EQ(y.errors(), 2u);
}

TEST(MetricsTest, ValuesAreShortestExactDecimals) {
  EXPECT_EQ(Exposition::FormatValue(42), "42");
  EXPECT_EQ(Exposition::FormatValue(0.1), "0.1");
  EXPECT_EQ(Exposition::FormatValue(-0.5), "-0.5");
  EXPECT_EQ(Exposition::FormatValue(1e300), "1e+300");
  EXPECT_EQ(Exposition::FormatValue(1784563200.123), "1784563200.123");
  EXPECT_EQ(Exposition::FormatValue(std::nan("")), "NaN");
  EXPECT_EQ(Exposition::FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(Exposition::FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  const double third = 1.0 / 3.0;
  EXPECT_EQ(std::strtod(Exposition::FormatValue(third).c_str(), nullptr), third);
}

// Random bytes as label values (a site's text is not trusted): the output is valid UTF-8
// by the C library's own decoder, and every line is one sample or a comment.
TEST(MetricsTest, RandomLabelBytesAlwaysGiveValidUtf8Lines) {
  ASSERT_NE(std::setlocale(LC_CTYPE, "C.UTF-8"), nullptr);
  const uint64_t seed = 20261130;
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 2000; ++round) {
    std::string v(rng() % 12, '\0');
    for (auto& c : v) c = static_cast<char>(rng() % 256);
    Exposition x;
    x.Family("m", T::kGauge, "h");
    x.Sample(1, {{"v", v}});
    const std::string& t = x.text();
    std::mbstate_t st{};
    size_t i = 0;
    while (i < t.size()) {
      wchar_t w;
      const size_t n = std::mbrtowc(&w, t.data() + i, t.size() - i, &st);
      ASSERT_TRUE(n != static_cast<size_t>(-1) && n != static_cast<size_t>(-2))
          << "seed " << seed << " round " << round << ": invalid UTF-8 at " << i;
      i += n == 0 ? 1 : n;
    }
    // Three lines: HELP, TYPE, the sample; no raw newline from the value.
    EXPECT_EQ(std::count(t.begin(), t.end(), '\n'), 3) << "seed " << seed << " round " << round;
  }
  std::setlocale(LC_CTYPE, "C");
}

// --- HttpListener ------------------------------------------------------------------------

// One HTTP/1.0 exchange over a plain socket (the reply up to the server's close).
std::string Fetch(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return "connect failed";
  }
  (void)!write(fd, request.data(), request.size());
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

int PortOf(const std::string& address) { return std::stoi(address.substr(address.rfind(':') + 1)); }

TEST(HttpListenerTest, RequestsAreAnsweredOnTheServingThread) {
  HttpListener::Options o;
  o.address = "127.0.0.1:0";
  auto l = HttpListener::Start(o);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  const int port = PortOf((*l)->address());
  ASSERT_GT(port, 0);
  std::string reply;
  std::thread client([&] { reply = Fetch(port, "GET /metrics?x=1 HTTP/1.0\r\nX-Test: yes\r\n\r\n"); });
  const auto me = std::this_thread::get_id();
  bool served = false;
  for (int i = 0; i < 500 && !served; ++i) {
    pollfd p{(*l)->fd(), POLLIN, 0};
    poll(&p, 1, 10);
    (*l)->Serve([&](const HttpRequest& r) {
      EXPECT_EQ(std::this_thread::get_id(), me);
      EXPECT_EQ(r.method, "GET");
      EXPECT_EQ(r.path, "/metrics");
      EXPECT_EQ(r.query.at("x"), "1");
      EXPECT_EQ(r.headers.at("x-test"), "yes");
      served = true;
      HttpReply out;
      out.body = "hello\n";
      out.content_type = Exposition::kContentType;
      return out;
    });
  }
  client.join();
  ASSERT_TRUE(served);
  EXPECT_NE(reply.find("200"), std::string::npos) << reply;
  EXPECT_NE(reply.find("text/plain; version=0.0.4"), std::string::npos) << reply;
  EXPECT_NE(reply.find("\r\n\r\nhello\n"), std::string::npos) << reply;
  EXPECT_EQ((*l)->counters().requests, 1u);
}

TEST(HttpListenerTest, AHandlerThatThrowsGives500AndABusyDaemon503) {
  HttpListener::Options o;
  o.address = "127.0.0.1:0";
  o.answer_within = 300;
  auto l = HttpListener::Start(o);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  const int port = PortOf((*l)->address());
  // Nobody serves: the client gets 503 after answer_within.
  EXPECT_NE(Fetch(port, "GET / HTTP/1.0\r\n\r\n").find(" 503 "), std::string::npos);
  (*l)->Serve([](const HttpRequest&) { return HttpReply{}; });  // the stale one, answered late
  std::string reply;
  std::thread client([&] { reply = Fetch(port, "GET / HTTP/1.0\r\n\r\n"); });
  for (int i = 0; i < 300 && reply.empty(); ++i) {
    pollfd p{(*l)->fd(), POLLIN, 0};
    poll(&p, 1, 10);
    (*l)->Serve([](const HttpRequest&) -> HttpReply { throw std::runtime_error("boom"); });
  }
  client.join();
  EXPECT_NE(reply.find(" 500 "), std::string::npos) << reply;
  EXPECT_EQ((*l)->counters().exceptions, 1u);
}

TEST(HttpListenerTest, AddressesAreParsedStrictly) {
  std::string host;
  int port = -1;
  EXPECT_TRUE(HttpListener::ParseAddress("127.0.0.1:7480", &host, &port).ok());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 7480);
  EXPECT_TRUE(HttpListener::ParseAddress("[::1]:0", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  for (const char* bad : {"", "7480", ":7480", "host:", "host:x1", "host:65536", "::1:80",
                          "host:123456", "[::1:80"}) {
    EXPECT_FALSE(HttpListener::ParseAddress(bad, &host, &port).ok()) << bad;
  }
  HttpListener::Options o;
  o.address = "127.0.0.1:0";
  auto first = HttpListener::Start(o);
  ASSERT_TRUE(first.ok());
  o.address = (*first)->address();  // taken
  auto second = HttpListener::Start(o);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find(o.address), std::string::npos);
}

}  // namespace
}  // namespace outpost
