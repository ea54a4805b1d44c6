#include "common/transport/http_listener.h"

#include <httplib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

namespace outpost {

namespace {

struct Pending {
  HttpRequest request;
  std::promise<HttpReply> reply;
};

HttpReply Plain(int status, std::string body) {
  HttpReply r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

}  // namespace

struct HttpListener::Impl {
  Options options;
  httplib::Server server;
  std::thread thread;
  int efd = -1;
  std::string address;
  HttpCounters counters;
  std::mutex mu;
  std::deque<std::shared_ptr<Pending>> queue;  // guarded by mu
  bool stopping = false;                       // guarded by mu

  ~Impl() {
    if (efd >= 0) close(efd);
  }

  // Answers what waits with 503 (the daemon is going away).
  void Drain() {
    std::deque<std::shared_ptr<Pending>> left;
    {
      std::lock_guard<std::mutex> l(mu);
      left.swap(queue);
    }
    for (auto& p : left) p->reply.set_value(Plain(503, "the daemon is stopping\n"));
  }

  // On a server thread: queue the request, wake the daemon, wait for its answer.
  void Handle(const httplib::Request& in, httplib::Response& out) {
    auto p = std::make_shared<Pending>();
    HttpRequest& r = p->request;
    r.method = in.method;
    r.path = in.path;
    for (const auto& [k, v] : in.params) r.query.emplace(k, v);  // the first value wins
    for (const auto& [k, v] : in.headers) {
      std::string name = k;
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers.emplace(std::move(name), v);
    }
    r.body = in.body;
    r.remote = in.remote_addr;
    std::future<HttpReply> done = p->reply.get_future();
    {
      std::lock_guard<std::mutex> l(mu);
      if (stopping) {
        out.status = 503;
        out.set_content("the daemon is stopping\n", "text/plain; charset=utf-8");
        return;
      }
      queue.push_back(p);
    }
    const uint64_t one = 1;
    if (write(efd, &one, sizeof one) < 0) {
      // The counter cannot overflow in practice; the daemon still polls its queue.
    }
    HttpReply reply;
    if (done.wait_for(std::chrono::milliseconds(options.answer_within)) == std::future_status::ready) {
      reply = done.get();
    } else {
      reply = Plain(503, "the daemon did not answer within " +
                             std::to_string(options.answer_within) + " ms\n");
    }
    out.status = reply.status;
    for (const auto& [k, v] : reply.headers) out.set_header(k, v);
    out.set_content(reply.body, reply.content_type);
  }
};

HttpListener::HttpListener(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpListener::~HttpListener() {
  // Nothing new waits, and what waits is answered, so the server's threads end at once.
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    impl_->stopping = true;
  }
  impl_->Drain();
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->Drain();
}

Status HttpListener::ParseAddress(const std::string& text, std::string* host, int* port) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    return Status::InvalidArgument("listen address '" + text + "' is not HOST:PORT");
  }
  std::string h = text.substr(0, colon);
  if (h.front() == '[') {
    if (h.size() < 3 || h.back() != ']') {
      return Status::InvalidArgument("listen address '" + text + "': an IPv6 host is [ADDR]");
    }
    h = h.substr(1, h.size() - 2);
  } else if (h.find(':') != std::string::npos) {
    return Status::InvalidArgument("listen address '" + text + "': write an IPv6 host as [ADDR]");
  }
  const std::string p = text.substr(colon + 1);
  if (p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) {
    return Status::InvalidArgument("listen address '" + text + "': the port is not a number");
  }
  const long n = std::strtol(p.c_str(), nullptr, 10);
  if (n > 65535) {
    return Status::InvalidArgument("listen address '" + text + "': the port is above 65535");
  }
  *host = h;
  *port = static_cast<int>(n);
  return Status::Ok();
}

Result<std::unique_ptr<HttpListener>> HttpListener::Start(const Options& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  std::string host;
  int port = 0;
  OUTPOST_RETURN_IF_ERROR(ParseAddress(options.address, &host, &port));
  impl->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (impl->efd < 0) return Status::IoError(std::string("eventfd: ") + strerror(errno));
  Impl* raw = impl.get();
  httplib::Server& s = impl->server;
  const int threads = std::max(1, options.threads);
  s.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  s.set_payload_max_length(options.max_body);
  s.set_read_timeout(5, 0);
  s.set_write_timeout(5, 0);
  // A connection held open (a scraper's keep-alive) occupies a server thread until it
  // idles out: short, so one client cannot keep a gateway's single thread from others.
  s.set_keep_alive_max_count(20);
  s.set_keep_alive_timeout(1);
  // SO_REUSEADDR only: the library's default adds SO_REUSEPORT, with which a second
  // daemon on the same port would bind too and share the scrapes.
  s.set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  auto handler = [raw](const httplib::Request& in, httplib::Response& out) { raw->Handle(in, out); };
  s.Get(".*", handler);
  s.Post(".*", handler);
  s.set_exception_handler([](const httplib::Request&, httplib::Response& out, std::exception_ptr) {
    out.status = 500;
    out.set_content("internal error\n", "text/plain; charset=utf-8");
  });
  int bound = port;
  if (port == 0) {
    bound = s.bind_to_any_port(host);
    if (bound < 0) return Status::IoError("cannot listen on " + options.address);
  } else if (!s.bind_to_port(host, port)) {
    return Status::IoError("cannot listen on " + options.address +
                           " (in use by another process, or not an address of this host)");
  }
  impl->address = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                  std::to_string(bound);
  impl->thread = std::thread([raw] { raw->server.listen_after_bind(); });
  // Until the server runs, stop() would not reach it (and the destructor would wait on an
  // accept forever): wait for it, a few milliseconds at most in practice.
  for (int i = 0; i < 5000 && !s.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return std::unique_ptr<HttpListener>(new HttpListener(std::move(impl)));
}

int HttpListener::fd() const { return impl_->efd; }

const std::string& HttpListener::address() const { return impl_->address; }

const HttpCounters& HttpListener::counters() const { return impl_->counters; }

void HttpListener::Serve(const std::function<HttpReply(const HttpRequest&)>& handler) {
  uint64_t n = 0;
  while (read(impl_->efd, &n, sizeof n) == sizeof n) {
  }
  std::deque<std::shared_ptr<Pending>> batch;
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    batch.swap(impl_->queue);
  }
  for (auto& p : batch) {
    HttpReply reply;
    try {
      reply = handler(p->request);
      ++impl_->counters.requests;
    } catch (const std::exception& e) {
      ++impl_->counters.exceptions;
      reply = Plain(500, std::string("internal error: ") + e.what() + "\n");
    } catch (...) {
      ++impl_->counters.exceptions;
      reply = Plain(500, "internal error\n");
    }
    p->reply.set_value(std::move(reply));
  }
}

}  // namespace outpost
