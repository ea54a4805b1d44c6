// outpost-bench-fleet: a real outpost-hub process driven over CurveZMQ by many emulated
// sites, beside Mosquitto and NATS JetStream doing the same job on the same machine in
// the same run. Not a test: it prints numbers (docs/performance.md).
//
//   outpost-bench-fleet --bin-dir build [--sites 10000] [--stream-sites 1000]
//                       [--events 200] [--workers 4] [--rounds R] [--peers] [--dir PATH]
//                       [--sites-nice 10] [--keep]
//
// Each emulated site is what an agent runs for its link: its own enrolled CURVE key, a
// DEALER socket through the real Connector (libzmq's reconnect as shipped), the real
// SyncSession in the site role and real wire frames. Its event log is kept in memory
// (tests/common/mem_streams.h): 10,000 RocksDB databases do not fit two cores, and the
// site's own disk is measured by outpost-bench. The sites are split over --workers
// processes; the driver talks to the hub as an operator (cli/client.h). The sites stand in
// for other machines, so their processes (and the peers' publishers) run at nice 10 by
// default: the hub and the brokers come first on the two cores, as they would on a machine
// of their own (--sites-nice 0 shares the cores evenly).
//
// Phases: every site connects to a fresh hub (handshakes, first incarnations recorded);
// --stream-sites of them append --events events each and stream them until every one is
// acknowledged (each acknowledgement follows the hub's synced commit) while the driver
// asks `status` and `run list` back to back (their latency); the hub is stopped and
// started again on the same store and port, and the time until every site has its
// session back is taken. --rounds R streams R times, printing the hub's memory and store
// size after each (memory should stay flat while the store grows). With --peers the same publishers-to-centre job runs on
// Mosquitto (persistence on, QoS 1, a persistent QoS 1 subscriber as the centre) and on
// NATS JetStream (a file-storage stream, publishers waiting for its acks).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <mosquitto.h>
#include <nats/nats.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "../tests/common/mem_streams.h"
#include "bench/sample_event.h"
#include "cli/client.h"
#include "common/keys.h"
#include "hub/pg_hub_store.h"
#include "common/protocol/event.h"
#include "common/protocol/sync_session.h"
#include "common/protocol/wire.h"
#include "common/random.h"
#include "common/transport/zmq_link.h"

namespace outpost {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clk = std::chrono::steady_clock;

double Since(Clk::time_point t0) { return std::chrono::duration<double>(Clk::now() - t0).count(); }

struct SiteKey {
  std::string name, pub, sec;
};

using bench::SampleEvent;

// ---- /proc readings of the hub process ----

double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), {});
  const size_t close = s.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(s.substr(close + 2));
  std::string f;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> f; ++i) {
    // Fields that do not parse count as 0 (strtoull never throws).
    if (i == 14) utime = std::strtoull(f.c_str(), nullptr, 10);
    if (i == 15) stime = std::strtoull(f.c_str(), nullptr, 10);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct Memory {
  double rss_mb = 0, pss_mb = 0, anon_mb = 0;
};

Memory MemoryOf(pid_t pid) {
  Memory m;
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string line, key, unit;
  double kb = 0;
  std::getline(in, line);  // the address range of the rollup
  while (in >> key >> kb >> unit) {
    if (key == "Rss:") m.rss_mb = kb / 1024;
    if (key == "Pss:") m.pss_mb = kb / 1024;
    if (key == "Anonymous:") m.anon_mb = kb / 1024;
  }
  return m;
}

// ---- the emulated sites (one worker process) ----

struct EmSite {
  size_t index = 0;
  SiteKey key;
  std::unique_ptr<Connector> conn;
  testing::MemOutgoing up;
  testing::MemIncoming down;
  std::unique_ptr<SyncSession> session;
  TimeMs reconnect_at = 0;
  int attempt = 0;
};

// Commands from the driver, one per line: "connect", "stream E K" (sites with index < K
// append E events), "quit". Reports, one per line: "established" (every site of this
// worker has its session; again after a loss), "acked" (every streamed event acknowledged).
int WorkerMain(const std::string& endpoint, const std::string& hub_key,
               std::vector<SiteKey> keys, size_t first_index, int cmd_fd, int report_fd) {
  spdlog::set_level(spdlog::level::off);
  auto ctx = ZmqContext::Create(1, static_cast<int>(keys.size() * 3 + 64));
  if (!ctx.ok()) return 1;
  SystemClock clock;
  Rng rng(first_index + 1);
  SyncOptions so;
  std::vector<std::unique_ptr<EmSite>> sites;
  for (size_t i = 0; i < keys.size(); ++i) {
    auto s = std::make_unique<EmSite>();
    s->index = first_index + i;
    s->key = keys[i];
    s->session = std::make_unique<SyncSession>(SyncSession::Role::kSite, clock, so, &s->up,
                                               &s->down, s->key.name, rng.Next() | 1);
    sites.push_back(std::move(s));
  }
  auto connect = [&](EmSite& s) {
    Connector::Options o;
    o.endpoint = endpoint;
    o.server_public_z85 = hub_key;
    o.keys = {s.key.pub, s.key.sec};
    auto c = Connector::Connect(**ctx, o);
    if (c.ok()) s.conn = std::move(c).value();
  };
  auto send = [](EmSite& s, const SyncOutput& out) {
    if (!s.conn) return;
    for (const auto& m : out.send) s.conn->Send(EncodeMessage(m)).IgnoreError();
  };
  auto report = [&](const char* what) {
    std::string line = std::string(what) + "\n";
    if (write(report_fd, line.data(), line.size()) < 0) _exit(1);
  };
  bool started = false, quit = false, reported_established = false, streaming = false;
  bool reported_acked = false;
  size_t stream_below = 0;
  std::string cmdbuf;
  TimeMs last_tick = 0;
  std::vector<zmq_pollitem_t> items;
  while (!quit) {
    items.clear();
    items.push_back({nullptr, cmd_fd, ZMQ_POLLIN, 0});
    for (auto& s : sites) {
      if (!s->conn) continue;
      items.push_back({s->conn->socket(), 0, ZMQ_POLLIN, 0});
      items.push_back({s->conn->monitor(), 0, ZMQ_POLLIN, 0});
    }
    zmq_poll(items.data(), static_cast<int>(items.size()), 50);
    if (items[0].revents) {
      char buf[256];
      const ssize_t n = read(cmd_fd, buf, sizeof buf);
      if (n <= 0) break;
      cmdbuf.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = cmdbuf.find('\n')) != std::string::npos) {
        std::istringstream line(cmdbuf.substr(0, nl));
        cmdbuf.erase(0, nl + 1);
        std::string cmd;
        line >> cmd;
        if (cmd == "connect") {
          started = true;
          for (auto& s : sites) connect(*s);
        } else if (cmd == "stream") {
          size_t events = 0;
          line >> events >> stream_below;
          streaming = true;
          reported_acked = false;
          for (auto& s : sites) {
            if (s->index >= stream_below) continue;
            for (size_t e = 0; e < events; ++e) s->up.Append(SampleEvent(s->index, s->up.head()));
            SyncOutput out;
            s->session->Poke(&out);
            send(*s, out);
          }
        } else if (cmd == "quit") {
          quit = true;
        }
      }
    }
    const TimeMs now = clock.Now();
    std::vector<Connector::Event> evs;
    for (auto& s : sites) {
      if (!s->conn) {
        if (started && s->reconnect_at > 0 && now >= s->reconnect_at) {
          s->reconnect_at = 0;
          connect(*s);
        }
        continue;
      }
      evs.clear();
      s->conn->Drain(&evs);
      for (auto& ev : evs) {
        SyncOutput out;
        bool drop = false;
        switch (ev.kind) {
          case Connector::EventKind::kConnected: s->session->OnConnected(&out); break;
          case Connector::EventKind::kDisconnected:
            s->session->OnDisconnected();
            reported_established = false;
            break;
          case Connector::EventKind::kAuthFailed:
          case Connector::EventKind::kHandshakeFailed: drop = true; break;
          case Connector::EventKind::kFrame: {
            Message m;
            if (DecodeMessage(ev.payload, &m).ok()) s->session->OnMessage(m, &out);
            break;
          }
        }
        send(*s, out);
        if (drop || out.disconnect) {
          // As the agent does: a fresh socket after a jittered backoff (agent_sync.cpp).
          s->session->OnDisconnected();
          s->conn.reset();
          BackoffPolicy p;
          p.initial = 500;
          p.factor = 2;
          p.max = 30'000;
          p.full_jitter = true;
          s->reconnect_at = now + std::max<DurationMs>(100, BackoffDelay(p, ++s->attempt, &rng));
          reported_established = false;
          break;
        }
      }
    }
    if (now - last_tick >= 100) {
      last_tick = now;
      for (auto& s : sites) {
        SyncOutput out;
        s->session->Tick(&out);
        send(*s, out);
      }
    }
    if (started && !reported_established) {
      bool all = true;
      for (auto& s : sites) all = all && s->session->established();
      if (all) {
        reported_established = true;
        for (auto& s : sites) s->attempt = 0;
        report("established");
      }
    }
    if (streaming && !reported_acked) {
      bool all = true;
      for (auto& s : sites) {
        if (s->index < stream_below) all = all && s->up.acked() == s->up.head();
      }
      if (all) {
        reported_acked = true;
        report("acked");
      }
    }
  }
  sites.clear();
  return 0;
}

// ---- the driver ----

struct Worker {
  pid_t pid = -1;
  int cmd = -1, report = -1;
  std::string buf;
};

// Waits until every worker has reported `what` (or the timeout); returns seconds or -1.
double WaitAll(std::vector<Worker>& ws, const std::string& what, double timeout_s,
               const std::function<void()>& meanwhile = nullptr) {
  const auto t0 = Clk::now();
  std::vector<bool> got(ws.size(), false);
  size_t n = 0;
  while (n < ws.size()) {
    if (Since(t0) > timeout_s) return -1;
    std::vector<pollfd> fds;
    for (auto& w : ws) fds.push_back({w.report, POLLIN, 0});
    poll(fds.data(), fds.size(), meanwhile ? 0 : 100);
    for (size_t i = 0; i < ws.size(); ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      char b[256];
      const ssize_t r = read(ws[i].report, b, sizeof b);
      if (r <= 0) return -1;
      ws[i].buf.append(b, static_cast<size_t>(r));
      size_t nl;
      while ((nl = ws[i].buf.find('\n')) != std::string::npos) {
        const std::string line = ws[i].buf.substr(0, nl);
        ws[i].buf.erase(0, nl + 1);
        if (line == what && !got[i]) {
          got[i] = true;
          ++n;
        }
      }
    }
    if (meanwhile) meanwhile();
  }
  return Since(t0);
}

void Tell(std::vector<Worker>& ws, const std::string& line) {
  for (auto& w : ws) {
    if (write(w.cmd, (line + "\n").data(), line.size() + 1) < 0) perror("write");
  }
}

// The hub store the hub processes use: empty for RocksDB in their data directory, or a
// PostgreSQL connection string and schema they share (--store).
std::string g_store, g_schema;
std::vector<std::string> g_hub_args;  // --hub-arg: passed to every outpost-hub (an A/B in one run)
// --sites-nice: the emulated sites (and the peers' publishers) stand in for other machines,
// so they run below the hub and the brokers: what a real site spends on its own CPU must
// not delay the centre. 0 shares the two cores evenly with them.
int g_sites_nice = 10;
bool g_keep = false;  // --keep: the hub's directory and log stay for a look

// In a forked site or publisher process: --sites-nice below the bench's own priority.
void LowerSitePriority() {
  if (g_sites_nice == 0) return;
  errno = 0;
  const int now = getpriority(PRIO_PROCESS, 0);
  if (errno != 0 || setpriority(PRIO_PROCESS, 0, std::min(19, now + g_sites_nice)) != 0) {
    perror("outpost-bench-fleet: lower the emulated sites' priority");
  }
}

pid_t StartHub(const std::string& bin, const std::string& dir, const std::string& sites_ep,
               const std::string& ops_ep) {
  pid_t pid = fork();
  if (pid == 0) {
    const std::string log = dir + ".log";
    if (!freopen(log.c_str(), "a", stderr) || !freopen(log.c_str(), "a", stdout)) _exit(127);
    std::vector<const char*> args = {bin.c_str(), "--data-dir", dir.c_str(), "--sites-endpoint",
                                     sites_ep.c_str(), "--operators-endpoint", ops_ep.c_str(),
                                     "--max-sockets", "65536", "--log-level", "warn"};
    if (!g_store.empty()) {
      args.insert(args.end(), {"--store", g_store.c_str(), "--store-schema", g_schema.c_str()});
    }
    for (const auto& a : g_hub_args) args.push_back(a.c_str());
    args.push_back(nullptr);
    execv(bin.c_str(), const_cast<char* const*>(args.data()));
    _exit(127);
  }
  return pid;
}

bool WaitEndpoints(const std::string& dir, json* out) {
  for (int i = 0; i < 400; ++i) {
    std::ifstream in(dir + "/hub.endpoints");
    if (in) {
      *out = json::parse(in, nullptr, false);
      if (out->is_object()) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return false;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// ---- peers ----

int FreePort() {
  // The kernel's pick for a listening socket, released for the peer to bind.
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  close(s);
  return ntohs(a.sin_port);
}

bool WaitPort(int port) {
  for (int i = 0; i < 200; ++i) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    close(s);
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return false;
}

// Forks `workers` processes, each running fn(first, count); returns when all exited.
bool ForkEach(size_t total, size_t workers, const std::function<int(size_t, size_t)>& fn) {
  std::vector<pid_t> pids;
  for (size_t w = 0; w < workers; ++w) {
    const size_t first = total * w / workers, count = total * (w + 1) / workers - first;
    pid_t pid = fork();
    if (pid == 0) {
      LowerSitePriority();
      _exit(fn(first, count));
    }
    pids.push_back(pid);
  }
  bool ok = true;
  for (pid_t p : pids) {
    int st = 0;
    waitpid(p, &st, 0);
    ok = ok && WIFEXITED(st) && WEXITSTATUS(st) == 0;
  }
  return ok;
}

struct PeerResult {
  double seconds = -1;
  double cpu = 0;  // the broker's CPU seconds
};

PeerResult Mosquitto(const std::string& dir, size_t sites, size_t events, size_t workers) {
  PeerResult r;
  fs::create_directories(dir + "/data");
  const int port = FreePort();
  std::ofstream(dir + "/mosquitto.conf")
      << "listener " << port << " 127.0.0.1\nallow_anonymous true\npersistence true\n"
      << "persistence_location " << dir << "/data/\nmax_queued_messages 0\n"
      << "max_inflight_messages 1000\nlog_dest none\n";
  pid_t broker = fork();
  if (broker == 0) {
    execlp("mosquitto", "mosquitto", "-c", (dir + "/mosquitto.conf").c_str(),
           static_cast<char*>(nullptr));
    _exit(127);
  }
  auto stop_broker = [&] {
    kill(broker, SIGTERM);
    waitpid(broker, nullptr, 0);
    return r;
  };
  if (!WaitPort(port)) {
    fprintf(stderr, "  mosquitto: the broker did not listen on port %d\n", port);
    return stop_broker();
  }
  mosquitto_lib_init();
  // The centre: a persistent QoS 1 subscription (clean session off), as durable as a
  // broker makes it, counting what it receives.
  std::atomic<size_t> received{0};
  mosquitto* sub = mosquitto_new("centre", false, &received);
  mosquitto_message_callback_set(sub, [](mosquitto*, void* ud, const mosquitto_message*) {
    ++*static_cast<std::atomic<size_t>*>(ud);
  });
  mosquitto_max_inflight_messages_set(sub, 1000);
  if (const int rc = mosquitto_connect(sub, "127.0.0.1", port, 60); rc != MOSQ_ERR_SUCCESS) {
    fprintf(stderr, "  mosquitto: the centre could not connect: %s\n", mosquitto_strerror(rc));
    mosquitto_destroy(sub);
    return stop_broker();
  }
  mosquitto_subscribe(sub, nullptr, "sites/#", 1);
  mosquitto_loop_start(sub);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const double cpu0 = CpuSeconds(broker);
  const auto t0 = Clk::now();
  const bool ok = ForkEach(sites, workers, [&](size_t first, size_t count) {
    mosquitto_lib_init();
    std::atomic<size_t> acked{0};
    std::vector<mosquitto*> cs;
    for (size_t i = 0; i < count; ++i) {
      mosquitto* c = mosquitto_new(("site" + std::to_string(first + i)).c_str(), true, &acked);
      mosquitto_publish_callback_set(c, [](mosquitto*, void* ud, int) {
        ++*static_cast<std::atomic<size_t>*>(ud);
      });
      mosquitto_max_inflight_messages_set(c, 20);
      if (mosquitto_connect(c, "127.0.0.1", port, 60) != MOSQ_ERR_SUCCESS) return 1;
      cs.push_back(c);
    }
    // Every client publishes its events (QoS 1); one thread drives all the sockets.
    for (size_t i = 0; i < count; ++i) {
      const std::string topic = "sites/site" + std::to_string(first + i) + "/events";
      for (size_t e = 0; e < events; ++e) {
        const std::string p = SampleEvent(first + i, e);
        mosquitto_publish(cs[i], nullptr, topic.c_str(), static_cast<int>(p.size()), p.data(), 1,
                          false);
      }
    }
    const auto start = Clk::now();
    while (acked < count * events && Since(start) < 600) {
      std::vector<pollfd> fds;
      for (auto* c : cs) {
        fds.push_back({mosquitto_socket(c), static_cast<short>(POLLIN | (mosquitto_want_write(c) ? POLLOUT : 0)), 0});
      }
      poll(fds.data(), fds.size(), 10);
      for (size_t i = 0; i < cs.size(); ++i) {
        if (fds[i].revents & POLLIN) mosquitto_loop_read(cs[i], 1);
        if (fds[i].revents & POLLOUT) mosquitto_loop_write(cs[i], 1);
        mosquitto_loop_misc(cs[i]);
      }
    }
    for (auto* c : cs) {
      mosquitto_disconnect(c);
      mosquitto_destroy(c);
    }
    return acked == count * events ? 0 : 1;
  });
  const double pub_acked = Since(t0);
  while (received < sites * events && Since(t0) < 600) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (ok && received == sites * events) r.seconds = Since(t0);
  r.cpu = CpuSeconds(broker) - cpu0;
  printf("  mosquitto: publishers acknowledged in %.2f s; the centre received %zu of %zu\n",
         pub_acked, received.load(), sites * events);
  mosquitto_loop_stop(sub, true);
  mosquitto_destroy(sub);
  kill(broker, SIGTERM);
  waitpid(broker, nullptr, 0);
  return r;
}

// NATS's last error on this thread, or "" (never a null for printf).
const char* NatsLastError() {
  const char* e = nats_GetLastError(nullptr);
  return e ? e : "";
}

PeerResult Nats(const std::string& dir, size_t sites, size_t events, size_t workers) {
  PeerResult r;
  fs::create_directories(dir + "/js");
  const int port = FreePort();
  pid_t server = fork();
  if (server == 0) {
    const std::string log = dir + "/nats.log";
    if (!freopen(log.c_str(), "a", stderr) || !freopen(log.c_str(), "a", stdout)) _exit(127);
    execlp("nats-server", "nats-server", "-js", "-sd", (dir + "/js").c_str(), "-a", "127.0.0.1",
           "-p", std::to_string(port).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  // Any failure says which step failed and why, and stops the client and the server.
  auto fail = [&](const char* what, natsStatus st) {
    if (js) jsCtx_Destroy(js);
    if (nc) natsConnection_Destroy(nc);
    fprintf(stderr, "  nats: %s failed: %s (%s; see %s/nats.log with --keep)\n", what,
            natsStatus_GetText(st), NatsLastError(), dir.c_str());
    kill(server, SIGTERM);
    waitpid(server, nullptr, 0);
    return r;
  };
  if (!WaitPort(port)) return fail("nats-server start", NATS_TIMEOUT);
  const std::string url = "nats://127.0.0.1:" + std::to_string(port);
  {
    natsStatus st = natsConnection_ConnectTo(&nc, url.c_str());
    if (st != NATS_OK) return fail("connect", st);
    st = natsConnection_JetStream(&js, nc, nullptr);
    if (st != NATS_OK) return fail("JetStream context", st);
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = "EVENTS";
    const char* subjects[] = {"sites.>"};
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    jsStreamInfo* si = nullptr;
    st = js_AddStream(&si, js, &sc, nullptr, &jerr);
    if (st != NATS_OK) return fail("add the stream", st);
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    js = nullptr;
    nc = nullptr;
  }
  const double cpu0 = CpuSeconds(server);
  const auto t0 = Clk::now();
  const bool ok = ForkEach(sites, workers, [&](size_t first, size_t count) {
    std::vector<natsConnection*> ncs(count, nullptr);
    std::vector<jsCtx*> jss(count, nullptr);
    for (size_t i = 0; i < count; ++i) {
      jsOptions o;
      jsOptions_Init(&o);
      o.PublishAsync.MaxPending = 256;
      natsStatus st = natsConnection_ConnectTo(&ncs[i], url.c_str());
      if (st == NATS_OK) st = natsConnection_JetStream(&jss[i], ncs[i], &o);
      if (st != NATS_OK) {
        fprintf(stderr, "  nats: publisher %zu could not connect: %s (%s)\n", first + i,
                natsStatus_GetText(st), NatsLastError());
        return 1;
      }
    }
    for (size_t i = 0; i < count; ++i) {
      const std::string subject = "sites.site" + std::to_string(first + i);
      for (size_t e = 0; e < events; ++e) {
        const std::string p = SampleEvent(first + i, e);
        const natsStatus st = js_PublishAsync(jss[i], subject.c_str(), p.data(),
                                              static_cast<int>(p.size()), nullptr);
        if (st != NATS_OK) {
          fprintf(stderr, "  nats: publisher %zu: publish %zu failed: %s (%s)\n", first + i, e,
                  natsStatus_GetText(st), NatsLastError());
          return 1;
        }
      }
    }
    int bad = 0;
    for (size_t i = 0; i < count; ++i) {
      jsPubOptions po;
      jsPubOptions_Init(&po);
      po.MaxWait = 600'000;
      const natsStatus st = js_PublishAsyncComplete(jss[i], &po);
      if (st != NATS_OK) {
        if (bad == 0) {
          fprintf(stderr, "  nats: publisher %zu: waiting for JetStream's acks failed: %s (%s)\n",
                  first + i, natsStatus_GetText(st), NatsLastError());
        }
        ++bad;
      }
      jsCtx_Destroy(jss[i]);
      natsConnection_Destroy(ncs[i]);
    }
    return bad == 0 ? 0 : 1;
  });
  if (ok) r.seconds = Since(t0);
  r.cpu = CpuSeconds(server) - cpu0;
  kill(server, SIGTERM);
  waitpid(server, nullptr, 0);
  return r;
}

// A whole decimal number, or throws: "1e2" or "19x" must not run as 1 or 19.
size_t WholeNumber(const std::string& text) {
  size_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    throw std::invalid_argument(text);
  }
  return v;
}

int Main(int argc, char** argv) {
  std::string bin_dir = "build", dir = "/tmp/outpost-bench-fleet";
  size_t sites = 10'000, stream_sites = 1000, events = 200, workers = 4, rounds = 1, hubs = 1;
  bool peers = false;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
      if (a == "--bin-dir") bin_dir = next();
      else if (a == "--dir") dir = next();
      else if (a == "--sites") sites = WholeNumber(next());
      else if (a == "--stream-sites") stream_sites = WholeNumber(next());
      else if (a == "--events") events = WholeNumber(next());
      else if (a == "--workers") workers = WholeNumber(next());
      else if (a == "--rounds") rounds = WholeNumber(next());
      else if (a == "--peers") peers = true;
      else if (a == "--store") g_store = next();
      else if (a == "--hubs") hubs = WholeNumber(next());
      else if (a == "--hub-arg") g_hub_args.push_back(next());
      else if (a == "--sites-nice") g_sites_nice = static_cast<int>(std::min<size_t>(WholeNumber(next()), 100));
      else if (a == "--keep") g_keep = true;
      else {
        fprintf(stderr, "usage: outpost-bench-fleet --bin-dir DIR [--sites N] [--stream-sites K] "
                        "[--events E] [--workers W] [--rounds R] [--peers] [--dir PATH]\n"
                        "                           [--store POSTGRESQL-CONNINFO [--hubs N]] "
                        "[--hub-arg FLAG]... [--sites-nice 0-19] [--keep]\n");
        return 2;
      }
    }
  } catch (const std::exception&) {  // a number that does not parse
    fprintf(stderr, "outpost-bench-fleet: --sites, --stream-sites, --events, --workers, "
                    "--rounds, --hubs and --sites-nice take whole decimal numbers\n");
    return 2;
  }
  stream_sites = std::min(stream_sites, sites);
  if (sites == 0 || sites > 100'000 || workers == 0 || workers > 64 || workers > sites ||
      events == 0 || events > 1'000'000 || rounds == 0 || rounds > 100 || hubs == 0 ||
      hubs > 8 || (hubs > 1 && g_store.empty()) || g_sites_nice < 0 || g_sites_nice > 19) {
    fprintf(stderr, "outpost-bench-fleet: wants 1-100000 sites, 1-64 workers (no more than "
                    "sites), 1-1000000 events, 1-100 rounds, 1-8 hubs (several only with "
                    "--store) and --sites-nice 0-19\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, nullptr, _IOLBF, 0);  // nothing buffered is printed again by a fork
  // Every site is a socket (and its monitor): raise the descriptor limit as far as allowed.
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string hub_bin = bin_dir + "/hub/outpost-hub", hub_dir = dir + "/hub";
  if (access(hub_bin.c_str(), X_OK) != 0) {
    fprintf(stderr, "outpost-bench-fleet: no outpost-hub at %s (--bin-dir is the build "
                    "directory, holding hub/outpost-hub)\n", hub_bin.c_str());
    return 2;
  }
  g_schema = "bench_" + std::to_string(getpid());
  printf("outpost-bench-fleet: %zu sites (%zu streaming %zu events each), %zu worker "
         "processes, %zu hub process%s on %s, 2 cores shared by all\n",
         sites, stream_sites, events, workers, hubs, hubs == 1 ? "" : "es",
         g_store.empty() ? "RocksDB" : "one PostgreSQL");
  if (g_sites_nice > 0) {
    printf("(the emulated sites and the peers' publishers run %d nice levels below the hub and "
           "the brokers: they stand in for other machines)\n\n", g_sites_nice);
  } else {
    printf("(the emulated sites and the peers' publishers share the cores evenly with the hub "
           "and the brokers: --sites-nice 0)\n\n");
  }

  pid_t hub = StartHub(hub_bin, hub_dir, "tcp://127.0.0.1:0", "tcp://127.0.0.1:0");
  json ep;
  if (!WaitEndpoints(hub_dir, &ep)) {
    fprintf(stderr, "the hub did not start (see %s.log)\n", hub_dir.c_str());
    return 1;
  }
  auto endpoint = [&ep](const char* key) {
    auto it = ep.find(key);
    return it != ep.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  const std::string sites_ep = endpoint("sites"), ops_ep = endpoint("operators");
  if (sites_ep.empty() || ops_ep.empty()) {
    fprintf(stderr, "%s/hub.endpoints names no sites or operators endpoint\n", hub_dir.c_str());
    return 1;
  }
  std::string hub_key;
  std::ifstream(hub_dir + "/keys/hub.pub") >> hub_key;
  // More hub processes over the same PostgreSQL, with the fleet's hub key; the workers are
  // spread over them.
  std::vector<pid_t> more_hubs;
  std::vector<std::string> site_eps = {sites_ep};
  for (size_t h = 1; h < hubs; ++h) {
    const std::string d = dir + "/hub" + std::to_string(h);
    fs::create_directories(d);
    for (const char* sub : {"keys", "admin", "operators"}) {
      fs::copy(hub_dir + "/" + sub, d + "/" + sub, fs::copy_options::recursive);
    }
    more_hubs.push_back(StartHub(hub_bin, d, "tcp://127.0.0.1:0", "tcp://127.0.0.1:0"));
    json e;
    if (!WaitEndpoints(d, &e) || !e.contains("sites") || !e["sites"].is_string()) {
      fprintf(stderr, "hub %zu did not start (see %s.log)\n", h, d.c_str());
      return 1;
    }
    site_eps.push_back(e["sites"].get<std::string>());
  }
  auto hubs_cpu = [&]() {
    double c = CpuSeconds(hub);
    for (pid_t p : more_hubs) c += CpuSeconds(p);
    return c;
  };
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const Memory mem0 = MemoryOf(hub);

  // Enrolment through the operator API, one site.add each.
  cli::HubClient op(60'000);
  cli::HubAddress addr;
  addr.hub_dir = hub_dir;
  if (op.Open(addr) != cli::kExitOk) return 1;
  std::vector<SiteKey> keys;
  auto t = Clk::now();
  for (size_t i = 0; i < sites; ++i) {
    auto k = GenerateCurveKeys();
    if (!k.ok()) return 1;
    keys.push_back({"site" + std::to_string(i), k->public_z85, k->secret_z85});
    cli::Reply r = op.Call({{"op", "site.add"}, {"name", keys.back().name}, {"key", k->public_z85}});
    if (!r.ok()) return 1;
  }
  printf("enrolment: %zu site.add requests in %.1f s (%.0f/s)\n", sites, Since(t),
         static_cast<double>(sites) / Since(t));

  std::vector<Worker> ws(workers);
  for (size_t w = 0; w < workers; ++w) {
    int cmd[2], rep[2];
    if (pipe(cmd) != 0 || pipe(rep) != 0) return 1;
    const size_t first = sites * w / workers, last = sites * (w + 1) / workers;
    pid_t pid = fork();
    if (pid == 0) {
      LowerSitePriority();
      close(cmd[1]);
      close(rep[0]);
      std::vector<SiteKey> mine(keys.begin() + static_cast<std::ptrdiff_t>(first),
                                keys.begin() + static_cast<std::ptrdiff_t>(last));
      _exit(WorkerMain(site_eps[w % site_eps.size()], hub_key, std::move(mine), first, cmd[0],
                       rep[1]));
    }
    close(cmd[0]);
    close(rep[1]);
    ws[w] = {pid, cmd[1], rep[0], {}};
  }

  // 1. Every site connects to the fresh hub.
  double cpu = hubs_cpu();
  Tell(ws, "connect");
  const double connect_s = WaitAll(ws, "established", 600);
  const double connect_cpu = hubs_cpu() - cpu;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const Memory mem1 = MemoryOf(hub);
  printf("handshake: %zu sites connected (CURVE, ZAP, HELLO, first incarnation stored) in "
         "%.1f s; hub CPU %.3f ms per handshake\n",
         sites, connect_s, connect_cpu * 1000 / static_cast<double>(sites));
  printf("memory: hub RSS %.1f MB (PSS %.1f, anonymous %.1f) with %zu sites connected, %.1f MB "
         "before: %.1f KB per connected site (anonymous)\n",
         mem1.rss_mb, mem1.pss_mb, mem1.anon_mb, sites, mem0.rss_mb,
         (mem1.anon_mb - mem0.anon_mb) * 1024 / static_cast<double>(sites));

  // 2. Streaming, with operator queries answered meanwhile.
  std::vector<double> status_ms, list_ms;
  cpu = hubs_cpu();
  Tell(ws, "stream " + std::to_string(events) + " " + std::to_string(stream_sites));
  auto last_query = Clk::now();
  bool ask_status = true;
  const double stream_s = WaitAll(ws, "acked", 900, [&] {
    if (Since(last_query) < 0.02) return;
    const auto q0 = Clk::now();
    cli::Reply r = op.Call(ask_status ? json{{"op", "status"}} : json{{"op", "run.list"}, {"limit", 50}});
    (ask_status ? status_ms : list_ms).push_back(Since(q0) * 1000);
    ask_status = !ask_status;
    last_query = Clk::now();
    (void)r;
  });
  const double stream_cpu = hubs_cpu() - cpu;
  const double total = static_cast<double>(stream_sites * events);
  printf("ingest: %zu sites x %zu events = %.0f events acknowledged in %.2f s: %.0f events/s "
         "end to end; hub CPU %.2f us per event\n",
         stream_sites, events, total, stream_s, total / stream_s, stream_cpu * 1e6 / total);
  printf("operator queries while streaming: status p50 %.1f ms p99 %.1f ms max %.1f ms (%zu); "
         "run list p50 %.1f ms p99 %.1f ms max %.1f ms (%zu)\n",
         Percentile(status_ms, 0.5), Percentile(status_ms, 0.99), Percentile(status_ms, 1),
         status_ms.size(), Percentile(list_ms, 0.5), Percentile(list_ms, 0.99),
         Percentile(list_ms, 1), list_ms.size());
  if (std::min(status_ms.size(), list_ms.size()) < 100) {
    printf("  (fewer than 100 queries of a kind: each p99 is that kind's slowest query)\n");
  }
  // More rounds of the same: does the hub's memory stay flat while its store grows?
  auto du = [](const std::string& d) {
    uint64_t b = 0;
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator(d, ec)) {
      if (e.is_regular_file(ec)) b += e.file_size(ec);
    }
    return static_cast<double>(b) / (1 << 20);
  };
  {
    const Memory m = MemoryOf(hub);
    printf("round 1: hub anonymous memory %.1f MB, store %.0f MB on disk\n", m.anon_mb, du(hub_dir));
  }
  for (size_t round = 2; round <= rounds; ++round) {
    Tell(ws, "stream " + std::to_string(events) + " " + std::to_string(stream_sites));
    const double secs = WaitAll(ws, "acked", 900);
    const Memory m = MemoryOf(hub);
    printf("round %zu: %.0f events/s; hub anonymous memory %.1f MB, store %.0f MB on disk\n",
           round, total / secs, m.anon_mb, du(hub_dir));
  }

  for (pid_t p : more_hubs) {
    kill(p, SIGTERM);
    waitpid(p, nullptr, 0);
  }
  // 3. The hub restarts on the same store and ports; every site resyncs.
  auto drop_schema = [&]() {
    if (g_store.empty()) return;
    PgHubStore::Options o;
    o.schema = g_schema;
    auto st = PgHubStore::Open(g_store, o);
    if (st.ok()) (*st)->DropSchema().IgnoreError();
  };
  if (hubs > 1) {
    Tell(ws, "quit");
    for (auto& w : ws) waitpid(w.pid, nullptr, 0);
    kill(hub, SIGTERM);
    waitpid(hub, nullptr, 0);
    drop_schema();
    if (!g_keep) fs::remove_all(dir);
    return 0;
  }
  kill(hub, SIGTERM);
  waitpid(hub, nullptr, 0);
  const auto r0 = Clk::now();
  hub = StartHub(hub_bin, hub_dir, sites_ep, ops_ep);
  cpu = 0;
  const double resync_s = WaitAll(ws, "established", 900);
  const double resync_cpu = CpuSeconds(hub);
  printf("restart: hub stopped and started again; all %zu sites had their sessions back "
         "%.1f s after the start (libzmq reconnect and the agents' backoff as shipped); hub "
         "CPU %.3f ms per site (start-up included)\n",
         sites, Since(r0), resync_cpu * 1000 / static_cast<double>(sites));
  (void)resync_s;
  Tell(ws, "quit");
  for (auto& w : ws) waitpid(w.pid, nullptr, 0);
  kill(hub, SIGTERM);
  waitpid(hub, nullptr, 0);
  drop_schema();

  if (peers) {
    printf("\npeers, same machine, same job (%zu publishers x %zu events of the same bytes):\n",
           stream_sites, events);
    const PeerResult m = Mosquitto(dir + "/mosquitto", stream_sites, events, workers);
    const PeerResult n = Nats(dir + "/nats", stream_sites, events, workers);
    printf("  %-46s %8s %12s %12s\n", "", "seconds", "events/s", "Outpost x");
    printf("  %-46s %8.2f %12.0f %12s\n", "Outpost hub (CurveZMQ, acked after synced write)",
           stream_s, total / stream_s, "1.00x");
    auto row = [&](const char* name, const PeerResult& p) {
      if (p.seconds <= 0) {
        printf("  %-46s   failed\n", name);
        return;
      }
      printf("  %-46s %8.2f %12.0f %11.2fx  (broker CPU %.2f us/event)\n", name, p.seconds,
             total / p.seconds, p.seconds / stream_s, p.cpu * 1e6 / total);
    };
    row("Mosquitto 2.0 (persistence, QoS 1, to the centre)", m);
    row("NATS JetStream 2.9 (file storage, acked)", n);
    printf("  (neither broker syncs each message to disk by default: Mosquitto saves its\n"
           "   store periodically, JetStream flushes its files in the background)\n");
  }
  if (g_keep) {
    printf("kept: %s (the hub's store and its log of warnings, until the next run with this "
           "--dir)\n", dir.c_str());
  } else {
    fs::remove_all(dir);
  }
  return 0;
}

}  // namespace
}  // namespace outpost

int main(int argc, char** argv) { return outpost::Main(argc, argv); }
