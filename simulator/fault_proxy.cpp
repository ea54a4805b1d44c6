#include "simulator/fault_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <chrono>
#include <cstring>

namespace outpost::sim {

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void NonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Closing with SO_LINGER 0 sends RST: the peer sees a reset, not an orderly close.
void CloseHard(int fd) {
  if (fd < 0) return;
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

int ConnectLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  NonBlocking(fd);
  return fd;
}

}  // namespace

FaultProxy::~FaultProxy() { Stop(); }

Result<int> FaultProxy::AddRoute(int target_port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::IoError(std::string("socket: ") + strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 64) != 0) {
    close(fd);
    return Status::IoError(std::string("bind proxy listener: ") + strerror(errno));
  }
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  NonBlocking(fd);
  std::lock_guard<std::mutex> lock(mu_);
  target_port_ = target_port;
  Route r;
  r.listen_fd = fd;
  r.port = ntohs(a.sin_port);
  routes_.push_back(r);
  return r.port;
}

Status FaultProxy::Start() {
  if (pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) return Status::IoError("pipe");
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void FaultProxy::Stop() {
  if (!thread_.joinable()) return;
  stop_ = true;
  (void)!write(wake_[1], "x", 1);
  thread_.join();
  for (auto& c : conns_) Kill(*c);
  conns_.clear();
  for (auto& r : routes_) close(r.listen_fd);
  routes_.clear();
  close(wake_[0]);
  close(wake_[1]);
}

void FaultProxy::SetFaults(size_t route, const LinkFaults& f) {
  std::lock_guard<std::mutex> lock(mu_);
  if (route < routes_.size()) routes_[route].faults = f;
  (void)!write(wake_[1], "x", 1);
}

void FaultProxy::Reset(size_t route) {
  std::lock_guard<std::mutex> lock(mu_);
  if (route < routes_.size()) routes_[route].reset_requested = true;
  (void)!write(wake_[1], "x", 1);
}

void FaultProxy::Retarget(int target_port) {
  std::lock_guard<std::mutex> lock(mu_);
  target_port_ = target_port;
}

void FaultProxy::Kill(Conn& c) {
  if (c.dead) return;
  c.dead = true;
  ++resets_;
  CloseHard(c.up.from);
  CloseHard(c.up.to);
  c.up.from = c.up.to = c.down.from = c.down.to = -1;
}

void FaultProxy::Accept(size_t route) {
  for (;;) {
    int fd = accept4(routes_[route].listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    if (routes_[route].faults.refuse) {
      CloseHard(fd);
      ++resets_;
      continue;
    }
    int target = ConnectLoopback(target_port_);
    if (target < 0) {
      CloseHard(fd);  // the hub is down: the agent sees a reset and retries
      continue;
    }
    auto c = std::make_unique<Conn>();
    c->route = route;
    c->up.from = fd;
    c->up.to = target;
    c->down.from = target;
    c->down.to = fd;
    conns_.push_back(std::move(c));
  }
}

void FaultProxy::Pump(Conn& c, Pipe& p, const LinkFaults& f, int64_t now) {
  // Read what arrived; queue it for its due time (or swallow it in a black hole).
  char buf[65536];
  for (;;) {
    ssize_t n = read(p.from, buf, sizeof buf);
    if (n > 0) {
      if (f.black_hole) {
        swallowed_ += static_cast<uint64_t>(n);
        continue;
      }
      p.queue.push_back({now + f.latency_ms, std::string(buf, static_cast<size_t>(n))});
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      Kill(c);  // one side closed: close the other, as a broken path would
      return;
    }
    break;
  }
  // Write what is due, within the bandwidth.
  while (!p.queue.empty() && p.queue.front().due_ms <= now && !c.dead) {
    if (f.bandwidth_bps > 0 && p.next_free_ms > now) break;
    std::string& data = p.queue.front().data;
    size_t len = data.size();
    if (f.bandwidth_bps > 0) len = std::min<size_t>(len, std::max<uint64_t>(1, f.bandwidth_bps / 8 / 100));
    ssize_t n = write(p.to, data.data(), len);
    if (n < 0) {
      if (errno == EAGAIN) break;
      Kill(c);
      return;
    }
    bytes_ += static_cast<uint64_t>(n);
    if (f.bandwidth_bps > 0) {
      p.next_free_ms = now + static_cast<int64_t>(static_cast<uint64_t>(n) * 8 * 1000 / f.bandwidth_bps);
    }
    data.erase(0, static_cast<size_t>(n));
    if (data.empty()) p.queue.pop_front();
  }
}

void FaultProxy::Loop() {
  while (!stop_) {
    std::vector<pollfd> fds;
    fds.push_back({wake_[0], POLLIN, 0});
    std::vector<LinkFaults> faults;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& r : routes_) {
        fds.push_back({r.listen_fd, POLLIN, 0});
        faults.push_back(r.faults);
      }
      for (auto& c : conns_) {
        Route& r = routes_[c->route];
        if (r.reset_requested || r.faults.refuse) Kill(*c);
        if (r.faults.cut_after == 0) {
          Kill(*c);
          r.faults.cut_after = -1;
        }
      }
      for (auto& r : routes_) r.reset_requested = false;
    }
    conns_.erase(std::remove_if(conns_.begin(), conns_.end(), [](auto& c) { return c->dead; }),
                 conns_.end());
    for (auto& c : conns_) {
      fds.push_back({c->up.from, POLLIN, 0});
      fds.push_back({c->down.from, POLLIN, 0});
    }
    int64_t now = NowMs();
    int timeout = 50;
    for (auto& c : conns_) {
      for (Pipe* p : {&c->up, &c->down}) {
        if (!p->queue.empty()) {
          timeout = std::min<int>(timeout, static_cast<int>(std::max<int64_t>(
                                               0, std::max(p->queue.front().due_ms, p->next_free_ms) - now)));
        }
      }
    }
    poll(fds.data(), fds.size(), std::max(timeout, 1));
    char drain[64];
    while (read(wake_[0], drain, sizeof drain) > 0) {
    }
    now = NowMs();
    for (size_t i = 0; i < faults.size(); ++i) {
      if (fds[1 + i].revents) Accept(i);
    }
    for (size_t i = 0; i < conns_.size(); ++i) {
      Conn& c = *conns_[i];
      if (c.dead || c.route >= faults.size()) continue;
      LinkFaults f = faults[c.route];
      const uint64_t before = bytes_;
      Pump(c, c.up, f, now);
      if (!c.dead) Pump(c, c.down, f, now);
      if (f.cut_after > 0 && !c.dead) {
        std::lock_guard<std::mutex> lock(mu_);
        int64_t& left = routes_[c.route].faults.cut_after;
        left = std::max<int64_t>(0, left - static_cast<int64_t>(bytes_ - before));
      }
    }
  }
}

}  // namespace outpost::sim
