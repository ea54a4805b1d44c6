// outpost-bench-dashboard [--sites N] [--runs R] [--repeat K]: how long the hub's thread
// spends answering the dashboard's queries for a large fleet (10,000 sites and 100,000
// runs by default), next to the operator API's whole-fleet queries in the same run
// (`site.list`, `status`, an unfiltered `run.list`), which the dashboard's pages avoid.
//
// The store is RocksDB on an in-memory Env (the queries' CPU is measured, not the disk);
// the runs are written to it directly, spread evenly over the sites, three tasks each.
// Prints the median and the slowest of K answers per query, in milliseconds.
#include <rocksdb/env.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/json_fields.h"
#include "common/keys.h"
#include "hub/dashboard.h"
#include "hub/rocks_hub_store.h"

using namespace outpost;
using json = nlohmann::json;

namespace {

double Ms(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

int main(int argc, char** argv) {
  size_t sites = 10'000, runs = 100'000, repeat = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const size_t v = std::strtoull(argv[i + 1], nullptr, 10);
    if (k == "--sites") sites = v;
    else if (k == "--runs") runs = v;
    else if (k == "--repeat") repeat = std::max<size_t>(1, v);
    else {
      fprintf(stderr, "usage: outpost-bench-dashboard [--sites N] [--runs R] [--repeat K]\n");
      return 2;
    }
  }
  spdlog::set_level(spdlog::level::warn);
  std::unique_ptr<rocksdb::Env> env(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  RocksHubStore::Options so;
  so.env = env.get();
  auto store = RocksHubStore::Open("/hub", so);
  if (!store.ok()) {
    fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 1;
  }
  ManualClock clock(1'780'000'000'000);
  Rng rng(1);
  auto core = HubCore::Open(store->get(), clock, &rng, HubOptions{});
  if (!core.ok()) {
    fprintf(stderr, "%s\n", core.status().ToString().c_str());
    return 1;
  }
  HubCore& hub = **core;
  HubOutput out;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> names;
  for (size_t i = 0; i < sites; ++i) {
    char name[32];
    snprintf(name, sizeof name, "site-%05zu", i);
    names.push_back(name);
    auto keys = GenerateCurveKeys();
    json r = hub.OnOperator("admin", {{"op", "site.add"}, {"name", name}, {"key", keys->public_z85},
                                      {"labels", {{"role", i % 10 == 0 ? "camera" : "gw"}}}},
                            &out);
    if (!r.value("ok", false)) {
      fprintf(stderr, "site.add: %s\n", r.dump().c_str());
      return 1;
    }
  }
  const char* states[] = {"succeeded", "succeeded", "succeeded", "failed", "running"};
  HubStore::Txn txn;
  std::string sample_run;
  for (size_t i = 0; i < runs; ++i) {
    HubRun r;
    const std::string& site = names[i % names.size()];
    char ulid[32];
    snprintf(ulid, sizeof ulid, "01J%023zu", i);
    r.id = site + "-" + ulid;
    r.site = site;
    r.workflow = "deploy";
    r.state = states[i % 5];
    r.created = clock.Now() - static_cast<TimeMs>(runs - i) * 1000;
    r.finished = r.state == "running" ? 0 : r.created + 500;
    for (const char* t : {"fetch", "install", "verify"}) {
      HubTask task;
      task.id = t;
      task.state = r.state == "running" && std::strcmp(t, "verify") == 0 ? "running" : "succeeded";
      task.attempts = 1;
      task.exit_code = 0;
      r.tasks.push_back(task);
    }
    if (i == runs / 2) sample_run = r.id;
    txn.PutRun(r);
    if (txn.size() >= 1000 || i + 1 == runs) {
      Status s = (*store)->Commit(txn);
      if (!s.ok()) {
        fprintf(stderr, "%s\n", s.ToString().c_str());
        return 1;
      }
      txn = HubStore::Txn();
    }
  }
  printf("fleet      %zu sites, %zu runs (set up in %.1f s)\n", sites, runs,
         Ms(t0, std::chrono::steady_clock::now()) / 1000);

  int tokens = 0;
  Dashboard dash(
      Dashboard::Options{}, [](const std::string&) { return std::optional(OperatorRole::kViewer); },
      [&tokens] { return "t" + std::to_string(++tokens); });
  const std::string link = dash.IssueLink("viewer", clock.Now());
  HttpRequest login;
  login.method = "GET";
  login.path = "/login";
  login.query["token"] = link.substr(link.find('=') + 1);
  HttpReply lr = dash.Handle(login, hub, clock.Now(), &out);
  std::string cookie;
  for (const auto& [k, v] : lr.headers) {
    if (k == "Set-Cookie") cookie = v.substr(0, v.find(';'));
  }

  struct Query {
    const char* what;
    std::string path;
    std::map<std::string, std::string> query;
    json op;  // an operator API request instead, when set
  };
  const std::string mid = names[names.size() / 2];
  std::vector<Query> queries = {
      {"dashboard: fleet, first page of 100", "/api/fleet", {{"limit", "100"}}, nullptr},
      {"dashboard: fleet, last page", "/api/fleet",
       {{"limit", "100"}, {"offset", std::to_string(sites > 100 ? sites - 100 : 0)}}, nullptr},
      {"dashboard: fleet, label filter", "/api/fleet", {{"q", "role=camera"}, {"limit", "100"}}, nullptr},
      {"dashboard: one site with its runs", "/api/site", {{"name", mid}, {"limit", "50"}}, nullptr},
      {"dashboard: one run", "/api/run", {{"id", sample_run}}, nullptr},
      {"dashboard: audit log (200)", "/api/audit", {{"limit", "200"}}, nullptr},
      {"operator API: site.list (all sites)", "", {}, {{"op", "site.list"}}},
      {"operator API: status", "", {}, {{"op", "status"}}},
      {"operator API: run.list (latest 1000)", "", {}, {{"op", "run.list"}, {"limit", 1000}}},
  };
  printf("%-42s %10s %10s %10s\n", "query", "median ms", "max ms", "bytes");
  for (const auto& q : queries) {
    std::vector<double> took;
    size_t bytes = 0;
    for (size_t k = 0; k < repeat; ++k) {
      const auto a = std::chrono::steady_clock::now();
      if (q.op.is_null()) {
        HttpRequest r;
        r.method = "GET";
        r.path = q.path;
        r.query = q.query;
        r.headers["cookie"] = cookie;
        HttpReply reply = dash.Handle(r, hub, clock.Now(), &out);
        if (reply.status != 200) {
          fprintf(stderr, "%s: %d %s\n", q.what, reply.status, reply.body.substr(0, 200).c_str());
          return 1;
        }
        bytes = reply.body.size();
      } else {
        bytes = SafeDump(hub.OnOperator("viewer", q.op, &out, OperatorRole::kViewer)).size();
      }
      took.push_back(Ms(a, std::chrono::steady_clock::now()));
    }
    std::sort(took.begin(), took.end());
    printf("%-42s %10.2f %10.2f %10zu\n", q.what, took[took.size() / 2], took.back(), bytes);
  }
  return 0;
}
