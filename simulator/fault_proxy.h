// FaultProxy: a user-space TCP proxy on loopback that puts real connections through the
// faults a bad WAN has — latency, a bandwidth cap, resets, black holes and a cut after N
// bytes — for the simulator's real-process mode (outpost-sim --real). `tc netem` is not
// available on these machines; this does the same job per connection.
//
// One listener per route (a site); each accepted connection gets its own connection to
// the target. A poll loop on its own thread moves the bytes; faults are set per route
// from any thread and apply to the route's current and future connections.
//
// Thread-safety: the setters and counters are safe from any thread; Start/Stop from one.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"

namespace outpost::sim {

struct LinkFaults {
  int latency_ms = 0;
  uint64_t bandwidth_bps = 0;  // 0: unlimited
  bool black_hole = false;     // bytes are swallowed; the connection stays open
  int64_t cut_after = -1;      // reset the connection after this many more bytes (-1: never)
  bool refuse = false;         // new connections are reset at once (the link is down)
};

class FaultProxy {
 public:
  FaultProxy() = default;
  ~FaultProxy();

  // Adds a route: a listener on 127.0.0.1:<free port> forwarding to target_port.
  // Returns the listening port.
  Result<int> AddRoute(int target_port);
  Status Start();
  void Stop();

  void SetFaults(size_t route, const LinkFaults& f);
  // Resets every open connection of the route now.
  void Reset(size_t route);
  // Points every route at a new target port (the hub restarted on another port).
  void Retarget(int target_port);

  uint64_t bytes_forwarded() const { return bytes_.load(); }
  uint64_t bytes_swallowed() const { return swallowed_.load(); }
  uint64_t resets() const { return resets_.load(); }

 private:
  struct Chunk {
    int64_t due_ms;
    std::string data;
  };
  struct Pipe {  // one direction of one connection
    int from = -1, to = -1;
    std::deque<Chunk> queue;
    int64_t next_free_ms = 0;  // bandwidth: when the link can take the next byte
  };
  struct Conn {
    size_t route;
    Pipe up, down;  // client->target, target->client
    bool dead = false;
  };
  struct Route {
    int listen_fd = -1;
    int port = 0;
    LinkFaults faults;
    bool reset_requested = false;
  };

  void Loop();
  void Accept(size_t route);
  void Pump(Conn& c, Pipe& p, const LinkFaults& f, int64_t now);
  void Kill(Conn& c);

  std::mutex mu_;
  std::vector<Route> routes_;
  std::vector<std::unique_ptr<Conn>> conns_;
  int target_port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> bytes_{0}, swallowed_{0}, resets_{0};
  int wake_[2] = {-1, -1};
};

}  // namespace outpost::sim
