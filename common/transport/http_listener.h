// HttpListener: a small HTTP server for a daemon whose state lives on one thread (the
// hub's /metrics and, later, its dashboard; the agent's --metrics-listen).
//
// The server runs on its own threads (cpp-httplib, from Debian), but it answers nothing
// itself: each request is queued, an eventfd (fd()) wakes the daemon's poll loop, and the
// daemon's call to Serve() answers every queued request on the daemon's thread. So the
// hub's core and the agent stay single-threaded. A request the daemon does not answer
// within `answer_within` gets 503; a body over `max_body` gets 413; a handler that throws
// gets 500 (counted, never a crash).
//
// Thread-safety: Serve, fd and the counters from the daemon's thread; the rest is inside.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace outpost {

struct HttpRequest {
  std::string method;  // GET, POST, ...
  std::string path;    // without the query
  std::map<std::string, std::string> query;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  std::string remote;  // the peer's address
};

struct HttpReply {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

struct HttpCounters {
  uint64_t requests = 0;    // answered by the daemon
  uint64_t exceptions = 0;  // handlers that threw (answered 500)
};

class HttpListener {
 public:
  struct Options {
    std::string address;  // HOST:PORT; port 0 picks a free one (see address())
    size_t max_body = 1 << 20;
    DurationMs answer_within = 10'000;
    int threads = 2;
  };

  // Binds and starts serving (the requests wait for Serve). Errors name the address.
  static Result<std::unique_ptr<HttpListener>> Start(const Options& options);
  // Stops the server and joins its threads; requests still queued get 503.
  ~HttpListener();

  // Readable while requests wait for Serve.
  int fd() const;
  // Answers every waiting request with `handler`, on the calling thread.
  void Serve(const std::function<HttpReply(const HttpRequest&)>& handler);
  // The address bound: HOST:PORT with the real port.
  const std::string& address() const;
  const HttpCounters& counters() const;

  // "HOST:PORT" (HOST a name or an IPv4 address, or [IPv6]; PORT 0-65535).
  static Status ParseAddress(const std::string& text, std::string* host, int* port);

 private:
  struct Impl;
  explicit HttpListener(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace outpost
