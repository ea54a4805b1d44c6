// outpost-fuzz-http: a seeded fuzzer for the hub's HTTP boundary — the dashboard's
// login, pages, queries and actions (hub/dashboard.h) and the listener under them.
//
// In-process: requests go to a real Dashboard over a real HubCore (RocksDB on an
// in-memory Env) that has sites, a workflow and a run, so handlers get past their first
// checks. Methods, paths (the known ones, mutated, long, with bytes a URL should not
// hold), query fields by the names the handlers read with values of every shape (numbers
// past their bounds, negative, with junk, huge, invalid UTF-8), cookies (a real session,
// a stale one, junk), the CSRF header and origin (right and wrong) and bodies (JSON
// objects with fields of random types, deep nesting, not JSON). Every answer must have a
// status from the documented set, a JSON body that parses where it says JSON, and
// nothing may throw. At the end the real session still works.
//
// Over the wire (--wire N): an HttpListener on 127.0.0.1 is sent N raw requests, most of
// them malformed (broken request lines, bad versions, huge or endless headers, bodies
// longer or shorter than their Content-Length, binary garbage), each on its own
// connection, with the dashboard answering what parses; the listener must answer a
// well-formed request afterwards.
//
// The seed is printed; replay with --seed S --iterations N.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <rocksdb/env.h>
#include <spdlog/spdlog.h>

#include "common/json_fields.h"
#include "common/keys.h"
#include "common/random.h"
#include "hub/dashboard.h"
#include "hub/rocks_hub_store.h"

using namespace outpost;
using json = nlohmann::json;

namespace {

struct Fuzz {
  explicit Fuzz(uint64_t seed) : rng(seed) {}
  Rng rng;
  size_t Pick(size_t n) { return static_cast<size_t>(rng.Uniform(n - 1)); }
  bool Coin(int one_in) { return rng.Uniform(static_cast<uint64_t>(one_in) - 1) == 0; }

  std::string Junk(size_t max_len) {
    std::string s(Pick(max_len + 1), '\0');
    for (auto& c : s) c = static_cast<char>(rng.Uniform(255));
    return s;
  }
  std::string Text() {
    static const char* kText[] = {"",       "0",        "1",          "-1",       "50",
                                  "500",    "501",      "1e3",        "0x10",     "99999999999999999999999",
                                  "online", "offline",  "pending",    "revoked",  "asleep",
                                  "site-1", "site-2",   "deploy",     "fetch",    "gate",
                                  " ",      "%00",      "\xff\xfe",   "a\nb",     "../../etc",
                                  "role=gw", "=",       "\"",         "<script>", "compensate:fetch"};
    if (Coin(8)) return Junk(64);
    if (Coin(40)) return std::string(Pick(70000), 'x');
    return kText[Pick(sizeof kText / sizeof *kText)];
  }
  json Value(int depth = 0) {
    switch (Pick(depth > 3 ? 6 : 8)) {
      case 0: return Text();
      case 1: return static_cast<int64_t>(rng.Next());
      case 2: return -static_cast<int64_t>(Pick(1000));
      case 3: return Coin(2);
      case 4: return nullptr;
      case 5: return 0.5;
      case 6: {
        json a = json::array();
        for (size_t i = Pick(4); i > 0; --i) a.push_back(Value(depth + 1));
        return a;
      }
      default: {
        json o = json::object();
        for (size_t i = Pick(4); i > 0; --i) o[Text()] = Value(depth + 1);
        return o;
      }
    }
  }
};

struct Hub {
  std::unique_ptr<rocksdb::Env> env{rocksdb::NewMemEnv(rocksdb::Env::Default())};
  ManualClock clock;
  Rng rng{3};
  std::unique_ptr<RocksHubStore> store;
  std::unique_ptr<HubCore> core;
  std::string run;

  bool Open() {
    RocksHubStore::Options so;
    so.env = env.get();
    auto s = RocksHubStore::Open("/hub", so);
    if (!s.ok()) return false;
    store = std::move(s).value();
    auto c = HubCore::Open(store.get(), clock, &rng, HubOptions{});
    if (!c.ok()) return false;
    core = std::move(c).value();
    HubOutput out;
    for (const char* name : {"site-1", "site-2"}) {
      auto keys = GenerateCurveKeys();
      core->OnOperator("admin", {{"op", "site.add"}, {"name", name}, {"key", keys->public_z85},
                                 {"labels", {{"role", "gw"}}}}, &out);
    }
    core->OnOperator("admin",
                     {{"op", "workflow.apply"},
                      {"source", "name: deploy\nschedule:\n  cron: \"*/5 * * * *\"\ntasks:\n"
                                 "  - id: fetch\n    run: [true]\n    compensate: echo undo\n"
                                 "  - id: gate\n    type: approval\n    needs: [fetch]\n"},
                      {"target", json::object()}},
                     &out);
    json r = core->OnOperator("admin", {{"op", "run.start"}, {"workflow", "deploy"}, {"site", "site-1"}}, &out);
    if (!r.value("ok", false) || !r["runs"].is_array() || r["runs"].empty()) return false;
    run = r["runs"][0].get<std::string>();
    return true;
  }
};

const std::set<int> kStatuses = {200, 301, 303, 400, 401, 403, 404, 405};

int RunInProcess(uint64_t seed, size_t iterations) {
  Hub hub;
  if (!hub.Open()) {
    fprintf(stderr, "http_fuzz: could not set up the hub\n");
    return 1;
  }
  int tokens = 0;
  Dashboard dash(
      Dashboard::Options{},
      [](const std::string& n) -> std::optional<OperatorRole> {
        if (n == "alice") return OperatorRole::kOperator;
        if (n == "victor") return OperatorRole::kViewer;
        return std::nullopt;
      },
      [&tokens] { return "tok" + std::to_string(++tokens); });
  HubOutput out;
  auto login = [&](const std::string& who) {
    const std::string link = dash.IssueLink(who, hub.clock.Now());
    HttpRequest r;
    r.method = "GET";
    r.path = "/login";
    r.query["token"] = link.substr(link.find('=') + 1);
    HttpReply reply = dash.Handle(r, *hub.core, hub.clock.Now(), &out);
    std::string id;
    for (const auto& [k, v] : reply.headers) {
      if (k == "Set-Cookie") id = v.substr(v.find('=') + 1, v.find(';') - v.find('=') - 1);
    }
    HttpRequest s;
    s.method = "GET";
    s.path = "/api/session";
    s.headers["cookie"] = "outpost_session=" + id;
    json j = json::parse(dash.Handle(s, *hub.core, hub.clock.Now(), &out).body, nullptr, false);
    return std::make_pair(id, j.is_object() && j.contains("csrf") && j["csrf"].is_string()
                                  ? j["csrf"].get<std::string>() : std::string());
  };
  auto [alice, alice_csrf] = login("alice");
  auto [victor, victor_csrf] = login("victor");
  static const char* kPaths[] = {"/login", "/logout", "/ui", "/ui/", "/ui/app.js", "/ui/app.css",
                                 "/ui/nothing", "/api/session", "/api/fleet", "/api/site", "/api/runs",
                                 "/api/run", "/api/logs", "/api/audit", "/api/workflows", "/api/cancel",
                                 "/api/approve", "/api/", "/api/fleet/../session"};
  static const char* kMethods[] = {"GET", "POST", "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", ""};
  static const char* kKeys[] = {"name", "id", "task", "q", "state", "offset", "limit", "token", "csrf",
                                "site", "workflow"};
  Fuzz f(seed);
  for (size_t i = 0; i < iterations; ++i) {
    if (i % 500 == 499) {  // sessions lapse as the clock jumps; log in again
      std::tie(alice, alice_csrf) = login("alice");
      std::tie(victor, victor_csrf) = login("victor");
    }
    HttpRequest r;
    r.method = f.Coin(30) ? f.Text() : kMethods[f.Pick(sizeof kMethods / sizeof *kMethods)];
    r.path = kPaths[f.Pick(sizeof kPaths / sizeof *kPaths)];
    if (f.Coin(10)) r.path += f.Text();
    for (size_t k = f.Pick(5); k > 0; --k) {
      std::string key = f.Coin(6) ? f.Text() : kKeys[f.Pick(sizeof kKeys / sizeof *kKeys)];
      std::string value = f.Text();
      if (key == "id" && f.Coin(2)) value = hub.run;
      if (key == "task" && f.Coin(2)) value = f.Coin(2) ? "gate" : "fetch";
      r.query[key] = value;
    }
    const bool as_viewer = f.Coin(3);
    switch (f.Pick(5)) {
      case 0: break;
      case 1: r.headers["cookie"] = "outpost_session=" + f.Text(); break;
      case 2: r.headers["cookie"] = f.Text(); break;
      default: r.headers["cookie"] = "a=b; outpost_session=" + (as_viewer ? victor : alice); break;
    }
    if (f.Coin(2)) r.headers["x-outpost-csrf"] = f.Coin(4) ? f.Text() : (as_viewer ? victor_csrf : alice_csrf);
    if (f.Coin(2)) r.headers["content-type"] = f.Coin(4) ? f.Text() : "application/json";
    if (f.Coin(3)) r.headers["origin"] = f.Coin(2) ? "http://127.0.0.1:7480" : f.Text();
    if (f.Coin(3)) r.headers["host"] = f.Coin(2) ? "127.0.0.1:7480" : f.Text();
    if (f.Coin(3)) r.headers["sec-fetch-site"] = f.Coin(2) ? "same-origin" : f.Text();
    switch (f.Pick(4)) {
      case 0: r.body = f.Junk(200); break;
      case 1: r.body = std::string(f.Pick(5000), '[') ; break;
      default: {
        json b = f.Coin(8) ? f.Value() : json::object();
        if (b.is_object()) {
          if (f.Coin(2)) b["id"] = f.Coin(2) ? json(hub.run) : f.Value();
          if (f.Coin(2)) b["task"] = f.Coin(2) ? json("gate") : f.Value();
          if (f.Coin(3)) b["reject"] = f.Value();
        }
        r.body = SafeDump(b);
      }
    }
    if (f.Coin(4)) {  // a well-formed action, so the body decoders are reached often
      r.method = "POST";
      r.path = f.Coin(2) ? "/api/cancel" : "/api/approve";
      r.headers["cookie"] = "outpost_session=" + (as_viewer ? victor : alice);
      r.headers["x-outpost-csrf"] = as_viewer ? victor_csrf : alice_csrf;
      r.headers["content-type"] = "application/json";
      r.headers.erase("origin");
      r.headers.erase("sec-fetch-site");
    }
    if (f.Coin(50)) hub.clock.Advance(static_cast<DurationMs>(f.Pick(3'600'000)));
    HttpReply reply;
    try {
      reply = dash.Handle(r, *hub.core, hub.clock.Now(), &out);
    } catch (const std::exception& e) {
      fprintf(stderr, "http_fuzz: seed %llu iteration %zu: %s %s threw: %s\n",
              static_cast<unsigned long long>(seed), i, r.method.c_str(), SafeText(r.path, 80).c_str(), e.what());
      return 1;
    }
    if (!kStatuses.count(reply.status)) {
      fprintf(stderr, "http_fuzz: seed %llu iteration %zu: %s %s answered %d\n",
              static_cast<unsigned long long>(seed), i, r.method.c_str(), SafeText(r.path, 80).c_str(), reply.status);
      return 1;
    }
    if (reply.content_type == "application/json" &&
        !json::parse(reply.body, nullptr, false).is_object()) {
      fprintf(stderr, "http_fuzz: seed %llu iteration %zu: %s %s: a JSON answer that does not parse: %s\n",
              static_cast<unsigned long long>(seed), i, r.method.c_str(), SafeText(r.path, 80).c_str(),
              SafeText(reply.body, 200).c_str());
      return 1;
    }
    out.send.clear();
  }
  if (hub.core->counters().operator_exceptions != 0) {
    fprintf(stderr, "http_fuzz: seed %llu: a handler threw (caught by the core)\n",
            static_cast<unsigned long long>(seed));
    return 1;
  }
  auto [again, csrf] = login("alice");
  if (again.empty() || csrf.empty()) {
    fprintf(stderr, "http_fuzz: seed %llu: no session after the run\n", static_cast<unsigned long long>(seed));
    return 1;
  }
  const DashboardCounters& c = dash.counters();
  printf("http_fuzz: seed %llu: %zu requests in process (%llu unauthenticated, %llu refused for CSRF, "
         "%llu actions)\n",
         static_cast<unsigned long long>(seed), iterations, static_cast<unsigned long long>(c.unauthenticated),
         static_cast<unsigned long long>(c.csrf_refused), static_cast<unsigned long long>(c.actions));
  return 0;
}

// One request on its own connection; what came back within `wait_ms`. (The client
// does not half-close: cpp-httplib answers nothing to a client that shut its side.)
std::string Send(int port, const std::string& bytes, int wait_ms) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  timeval tv{wait_ms / 1000, (wait_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string got;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    (void)!send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    char buf[4096];
    for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return got;
}

int RunWire(uint64_t seed, size_t n) {
  Hub hub;
  if (!hub.Open()) return 1;
  Dashboard dash(
      Dashboard::Options{}, [](const std::string&) { return std::optional(OperatorRole::kOperator); },
      [] { return std::string("wire-token"); });
  HttpListener::Options o;
  o.address = "127.0.0.1:0";
  o.answer_within = 2000;
  auto l = HttpListener::Start(o);
  if (!l.ok()) {
    fprintf(stderr, "http_fuzz: %s\n", l.status().ToString().c_str());
    return 1;
  }
  const std::string addr = (*l)->address();
  const int port = std::atoi(addr.substr(addr.rfind(':') + 1).c_str());
  std::atomic<bool> done{false};
  std::string last;
  Fuzz f(seed ^ 0x9e3779b97f4a7c15ull);
  std::vector<std::string> requests;
  static const char* kLines[] = {"GET /api/fleet HTTP/1.1", "POST /api/cancel HTTP/1.1", "GET /ui/ HTTP/1.0",
                                 "GET /login?token=%zz HTTP/1.1", "BREW /coffee HTCPCP/1.0", "GET", "",
                                 "GET /api/run?id=\xff\xfe HTTP/1.1", "GET /api/fleet?limit=1&limit=2 HTTP/1.1",
                                 "GET http://elsewhere/ HTTP/1.1", "GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1"};
  for (size_t i = 0; i < n; ++i) {
    std::string req = f.Coin(5) ? f.Junk(300) : kLines[f.Pick(sizeof kLines / sizeof *kLines)];
    req += "\r\n";
    for (size_t h = f.Pick(6); h > 0; --h) {
      switch (f.Pick(6)) {
        case 0: req += "Content-Length: " + f.Text() + "\r\n"; break;
        case 1: req += "Cookie: outpost_session=" + f.Text() + "\r\n"; break;
        case 2: req += "X-" + std::string(f.Pick(9000), 'h') + ": v\r\n"; break;
        case 3: req += f.Junk(80) + "\r\n"; break;
        case 4: req += "Transfer-Encoding: chunked\r\n"; break;
        default: req += "Content-Type: application/json\r\n"; break;
      }
    }
    if (!f.Coin(6)) req += "\r\n";
    if (f.Coin(2)) req += f.Coin(2) ? f.Junk(500) : SafeDump(f.Value());
    requests.push_back(std::move(req));
  }
  std::thread client([&] {
    for (const auto& r : requests) Send(port, r, 100);
    // The listener may still be reading what the abandoned connections sent (up to its
    // 5 s read timeout each); a well-formed request is answered after them.
    for (int k = 0; k < 3 && last.find(" 401 ") == std::string::npos; ++k) {
      last = Send(port, "GET /api/session HTTP/1.0\r\n\r\n", 20'000);
    }
    done = true;
  });
  HubOutput out;
  while (!done) {
    pollfd p{(*l)->fd(), POLLIN, 0};
    poll(&p, 1, 20);
    (*l)->Serve([&](const HttpRequest& r) { return dash.Handle(r, *hub.core, hub.clock.Now(), &out); });
    out.send.clear();
  }
  client.join();
  if (last.find(" 401 ") == std::string::npos) {
    fprintf(stderr, "http_fuzz: seed %llu: after %zu raw requests the listener answered: %s\n",
            static_cast<unsigned long long>(seed), n, SafeText(last, 200).c_str());
    return 1;
  }
  if ((*l)->counters().exceptions != 0) {
    fprintf(stderr, "http_fuzz: seed %llu: a handler threw on the wire\n", static_cast<unsigned long long>(seed));
    return 1;
  }
  printf("http_fuzz: seed %llu: %zu raw requests over loopback, %llu reached the dashboard; still answering\n",
         static_cast<unsigned long long>(seed), n, static_cast<unsigned long long>((*l)->counters().requests));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seed = 0;
  size_t iterations = 20000, wire = 500;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const unsigned long long v = std::strtoull(argv[i + 1], nullptr, 10);
    if (k == "--seed") seed = v;
    else if (k == "--iterations") iterations = v;
    else if (k == "--wire") wire = v;
    else {
      fprintf(stderr, "usage: outpost-fuzz-http [--seed S] [--iterations N] [--wire N]\n");
      return 2;
    }
  }
  if (seed == 0) seed = SeedFromOs();
  spdlog::set_level(spdlog::level::off);
  printf("http_fuzz: seed %llu (replay with --seed %llu)\n", static_cast<unsigned long long>(seed),
         static_cast<unsigned long long>(seed));
  if (int rc = RunInProcess(seed, iterations); rc != 0) return rc;
  return RunWire(seed, wire);
}
