// outpost-bench-artifact: how fast an artifact reaches a site over a link that is cut,
// next to raw TCP throughput on the same loopback in the same run.
//
//  raw      one TCP stream of the same bytes over loopback, straight and through the
//           fault proxy (the ceiling for any transfer here: a plain copy, like scp
//           without the cipher)
//  outpost  the real outpost-hub and outpost-agent processes: `outpostctl artifact push`
//           stores the file at the hub, a workflow naming it is applied, and the agent
//           fetches it over CURVE through the fault proxy, which cuts the link after every
//           --cut-every bytes; the time from the apply until the site holds the verified
//           file, and how many chunks it fetched in all (resumed, never from zero)
//
//   outpost-bench-artifact --bin-dir build [--mib 200] [--cuts 4] [--dir /tmp/x]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bundle.h"
#include "common/json_fields.h"
#include "common/protocol/control.h"
#include "common/trust.h"
#include "simulator/fault_proxy.h"
#include "simulator/processes.h"

namespace outpost {
namespace {

using json = nlohmann::json;
using Clk = std::chrono::steady_clock;
namespace fs = std::filesystem;

// A counter from the agent's artifact status; 0 when absent or of another type.
uint64_t CounterOf(const json& arts, const char* key) {
  if (!arts.is_object()) return 0;
  auto c = arts.find("counters");
  int64_t v = 0;
  if (c != arts.end()) outpost::JsonFields(*c).Int(key, &v, 0, INT64_MAX).IgnoreError();
  return static_cast<uint64_t>(v);
}
using sim::Eventually;
using sim::ReadAll;
using sim::Spawn;

double Seconds(Clk::time_point a) { return std::chrono::duration<double>(Clk::now() - a).count(); }

// A listener that reads and discards `bytes`; returns its port.
int Sink(uint64_t bytes, std::thread* t) {
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a);
  listen(ls, 1);
  socklen_t len = sizeof a;
  getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len);
  *t = std::thread([ls, bytes] {
    int c = accept(ls, nullptr, nullptr);
    std::vector<char> buf(1 << 20);
    uint64_t got = 0;
    while (got < bytes) {
      ssize_t n = read(c, buf.data(), buf.size());
      if (n <= 0) break;
      got += static_cast<uint64_t>(n);
    }
    close(c);
    close(ls);
  });
  return ntohs(a.sin_port);
}

double RawMiBs(int port, const std::string& data) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return 0;
  auto t0 = Clk::now();
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(s, data.data() + off, std::min<size_t>(1 << 20, data.size() - off));
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  shutdown(s, SHUT_WR);
  char b;
  while (read(s, &b, 1) > 0) {
  }
  close(s);
  return static_cast<double>(data.size()) / (1 << 20) / Seconds(t0);
}

int Main(int argc, char** argv) {
  std::string bin = "build", dir = "/tmp/outpost-bench-artifact";
  uint64_t mib = 200;
  int cuts = 4;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    char* end = nullptr;
    const unsigned long long n = strtoull(v.c_str(), &end, 10);
    const bool number = !v.empty() && *end == '\0';
    if (k == "--bin-dir") {
      bin = v;
    } else if (k == "--dir") {
      dir = v;
    } else if ((k == "--mib" || k == "--cuts") && number && n <= 1024) {
      if (k == "--mib") mib = n; else cuts = static_cast<int>(n);
    } else {
      fprintf(stderr, "usage: outpost-bench-artifact --bin-dir DIR [--mib 1-1024] [--cuts N] [--dir D]\n");
      return 2;
    }
  }
  if (mib == 0) mib = 1;
  bin = fs::absolute(bin).string();
  fs::remove_all(dir);
  fs::create_directories(dir);
  const uint64_t size = mib << 20;
  std::string data(size, '\0');
  uint32_t x = 12345;
  for (size_t i = 0; i < data.size(); i += 4) {
    x = x * 1664525u + 1013904223u;
    memcpy(&data[i], &x, std::min<size_t>(4, data.size() - i));
  }
  const std::string file = dir + "/image.bin";
  std::ofstream(file, std::ios::binary) << data;

  // Raw: direct, and through the proxy without faults.
  std::thread t;
  int port = Sink(size, &t);
  const double raw = RawMiBs(port, data);
  t.join();
  sim::FaultProxy raw_proxy;
  port = Sink(size, &t);
  auto rp = raw_proxy.AddRoute(port);
  raw_proxy.Start().IgnoreError();
  const double raw_proxied = RawMiBs(*rp, data);
  t.join();
  raw_proxy.Stop();

  // Outpost: hub, agent through the proxy.
  const std::string hub_dir = dir + "/hub", site_dir = dir + "/site";
  pid_t hub = Spawn({bin + "/hub/outpost-hub", "--data-dir", hub_dir, "--sites-endpoint",
                     "tcp://127.0.0.1:0", "--operators-endpoint", "tcp://127.0.0.1:0",
                     "--log-level", "warn"},
                    dir + "/hub.log");
  Eventually([&] { return fs::exists(hub_dir + "/hub.endpoints"); }, 10'000, 50);
  json ep = json::parse(ReadAll(hub_dir + "/hub.endpoints"), nullptr, false);
  std::string sites_ep, hub_key;
  outpost::JsonFields(ep).Str("sites", &sites_ep).And(outpost::JsonFields(ep).Str("hub_key", &hub_key)).IgnoreError();
  const int hub_port = atoi(sites_ep.substr(sites_ep.rfind(':') + 1).c_str());
  if (hub_key.empty() || hub_port <= 0) {
    fprintf(stderr, "the hub did not start; see %s/hub.log\n", dir.c_str());
    return 1;
  }
  sim::FaultProxy proxy;
  auto pp = proxy.AddRoute(hub_port);
  proxy.Start().IgnoreError();
  const std::string ctl = bin + "/cli/outpostctl --hub-dir " + hub_dir + " --timeout-ms 60000 ";
  auto run = [](const std::string& cmd) {
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    char buf[4096];
    size_t n;
    while (p && (n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    if (p) pclose(p);
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  };
  const std::string key = run(bin + "/site-agent/outpost-agent --data-dir " + site_dir + " --show-key");
  run(ctl + "site add ship --key '" + key + "' --label role=vessel");
  auto t_push = Clk::now();
  const std::string digest = run(ctl + "artifact push " + file + " 2>/dev/null");
  const double push_s = Seconds(t_push);
  pid_t agent = Spawn({bin + "/site-agent/outpost-agent", "--data-dir", site_dir, "--site", "ship",
                       "--hub", "tcp://127.0.0.1:" + std::to_string(*pp), "--hub-key",
                       hub_key, "--label", "role=vessel",
                       "--reconnect-max-ms", "1000", "--log-level", "warn"},
                      dir + "/agent.log");
  Eventually([&] { return ControlCall(site_dir + "/agent.sock", {{"op", "status"}}, 1000).ok(); },
             10'000, 50);
  std::ofstream(dir + "/wf.yaml") << "name: flash\nartifacts:\n  image: " << digest
                                  << "\ntasks:\n  - id: a\n    shell: 'true'\n";
  sim::LinkFaults cut;
  cut.cut_after = static_cast<int64_t>(size / static_cast<uint64_t>(cuts + 1));
  if (cuts > 0) proxy.SetFaults(0, cut);
  auto t0 = Clk::now();
  run(ctl + "workflow apply " + dir + "/wf.yaml --target role=vessel");
  json arts;
  uint64_t seen_cuts = 0;
  const bool done = Eventually(
      [&] {
        if (proxy.resets() > seen_cuts) {
          seen_cuts = proxy.resets();
          proxy.SetFaults(0, static_cast<int>(seen_cuts) < cuts ? cut : sim::LinkFaults{});
        }
        auto r = ControlCall(site_dir + "/agent.sock", {{"op", "artifact.list"}}, 5000);
        if (r.ok() && r->contains("artifacts")) arts = (*r)["artifacts"];
        return arts.is_object() && arts.contains("cached") && arts["cached"].size() == 1;
      },
      900'000, 20);
  const double secs = Seconds(t0);
  const bool verified = done && ContentDigest(ReadAll(site_dir + "/artifacts/" + digest)) == digest;
  sim::Kill(&agent, SIGTERM);
  sim::Kill(&hub, SIGTERM);
  proxy.Stop();
  const uint64_t chunks = (size + kArtifactChunkBytes - 1) / kArtifactChunkBytes;
  printf("artifact   %llu MiB, %llu chunks of %zu KiB\n", static_cast<unsigned long long>(mib),
         static_cast<unsigned long long>(chunks), kArtifactChunkBytes >> 10);
  printf("raw        %.0f MiB/s loopback TCP; %.0f MiB/s through the fault proxy\n", raw, raw_proxied);
  printf("push       %.1f s (%.0f MiB/s): outpostctl -> hub, chunked, stored synced\n", push_s,
         static_cast<double>(mib) / push_s);
  if (!done) {
    printf("fetch      did not finish in 900 s; see %s\n", dir.c_str());
    return 1;
  }
  printf("fetch      %.1f s (%.0f MiB/s, %.0f%% of raw through the proxy) with %llu link cuts; "
         "%llu chunks fetched for %llu (resumed, never from zero); digest %s\n",
         secs, static_cast<double>(mib) / secs, 100.0 * (static_cast<double>(mib) / secs) / raw_proxied,
         static_cast<unsigned long long>(proxy.resets()),
         static_cast<unsigned long long>(CounterOf(arts, "chunks_received")),
         static_cast<unsigned long long>(chunks), verified ? "verified" : "WRONG");
  fs::remove_all(dir);
  return verified ? 0 : 1;
}

}  // namespace
}  // namespace outpost

int main(int argc, char** argv) { return outpost::Main(argc, argv); }
