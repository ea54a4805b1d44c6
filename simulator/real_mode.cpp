#include "simulator/real_mode.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/protocol/control.h"
#include "common/random.h"
#include "simulator/fault_proxy.h"
#include "simulator/processes.h"

namespace outpost::sim {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;
using Clk = std::chrono::steady_clock;

const char* kWorkflow = R"(name: collect
tasks:
  - id: read
    shell: "sleep 0.2; [ $OUTPOST_ATTEMPT -ge 2 ] || [ $(( $(date +%N) % 4 )) -ne 0 ]"
    retry: {max: 3, backoff: 100ms}
  - id: upload
    run: [sleep, "0.1"]
    needs: [read]
  - id: report
    run: [true]
    needs: [upload]
    when: always
)";

class Fleet {
 public:
  Fleet(const RealOptions& o, Report* r) : o_(o), r_(r), rng_(o.seed) {
    dir_ = fs::temp_directory_path() /
           ("outpost-sim-real-" + std::to_string(getpid()) + "-" + std::to_string(o.seed));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~Fleet() {
    for (auto& p : agents_) Kill(&p, SIGKILL);
    Kill(&hub_, SIGKILL);
    proxy_.Stop();
    if (!o_.keep && r_->ok()) fs::remove_all(dir_);
    else fprintf(stderr, "outpost-sim: real-mode data and logs kept in %s\n", dir_.c_str());
  }

  void Fail(const std::string& inv, const std::string& detail) {
    for (auto& i : r_->invariants) {
      if (i.name == inv && i.ok) {
        i.ok = false;
        i.detail = detail;
      }
    }
  }

  std::string Bin(const std::string& name) const {
    if (name == "outpost-hub") return o_.hub_bin;
    if (name == "outpost-agent") return o_.agent_bin;
    return o_.ctl_bin;
  }
  std::string SiteName(size_t i) const { return "site-" + std::to_string(i + 1); }
  std::string SiteDir(size_t i) const { return (dir_ / SiteName(i)).string(); }

  bool StartHub() {
    const std::string hub_dir = (dir_ / "hub").string();
    fs::remove(hub_dir + "/hub.endpoints");
    hub_ = Spawn({Bin("outpost-hub"), "--data-dir", hub_dir, "--sites-endpoint",
                  sites_ep_.empty() ? "tcp://127.0.0.1:0" : sites_ep_, "--operators-endpoint",
                  ops_ep_.empty() ? "tcp://127.0.0.1:0" : ops_ep_, "--offline-after-ms", "3000",
                  "--ping-ms", "500", "--resend-ms", "1000", "--log-level", "warn"},
                 (dir_ / "hub.log").string());
    if (!Eventually([&] { return fs::exists(hub_dir + "/hub.endpoints"); }, 10000)) return false;
    json ep = json::parse(ReadAll(hub_dir + "/hub.endpoints"), nullptr, false);
    if (!ep.is_object()) return false;
    sites_ep_ = ep["sites"];
    ops_ep_ = ep["operators"];
    hub_key_ = ep["hub_key"];
    return true;
  }

  bool StartAgent(size_t i) {
    agents_[i] = Spawn({Bin("outpost-agent"), "--data-dir", SiteDir(i), "--site", SiteName(i),
                        "--hub", "tcp://127.0.0.1:" + std::to_string(proxy_ports_[i]), "--hub-key",
                        hub_key_, "--sync-ping-ms", "500", "--sync-dead-ms", "3000",
                        "--sync-resend-ms", "1000", "--reconnect-max-ms", "1000",
                        "--kill-grace-ms", "200", "--log-level", "warn"},
                       (dir_ / (SiteName(i) + ".log")).string());
    return Eventually([&] { return Agent(i, {{"op", "status"}}).contains("status"); }, 10000);
  }

  json Agent(size_t i, const json& req, int timeout_ms = 5000) {
    auto r = ControlCall(SiteDir(i) + "/agent.sock", req, timeout_ms);
    return r.ok() ? *r : json::object();
  }

  // outpostctl --json against the hub; returns the exit code.
  int Ctl(const std::string& args, json* out = nullptr) {
    const std::string cmd = Bin("outpostctl") + " --hub-dir " + (dir_ / "hub").string() +
                            " --timeout-ms 5000 --json " + args + " 2>/dev/null";
    FILE* f = popen(cmd.c_str(), "r");
    if (!f) return -1;
    std::string text;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    int rc = pclose(f);
    if (out) *out = json::parse(text, nullptr, false);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  }

  bool Setup() {
    agents_.assign(static_cast<size_t>(o_.sites), -1);
    if (!StartHub()) return false;
    const int target = std::stoi(sites_ep_.substr(sites_ep_.rfind(':') + 1));
    for (int i = 0; i < o_.sites; ++i) {
      auto port = proxy_.AddRoute(target);
      if (!port.ok()) return false;
      proxy_ports_.push_back(*port);
    }
    if (!proxy_.Start().ok()) return false;
    for (size_t i = 0; i < agents_.size(); ++i) {
      FILE* f = popen((Bin("outpost-agent") + " --data-dir " + SiteDir(i) + " --show-key").c_str(), "r");
      char key[64] = {0};
      if (!f || !fgets(key, sizeof key, f)) return false;
      pclose(f);
      std::string k(key);
      while (!k.empty() && k.back() == '\n') k.pop_back();
      if (Ctl("site add " + SiteName(i) + " --key '" + k + "' --label role=gateway") != 0) return false;
      if (!StartAgent(i)) return false;
    }
    const std::string wf = (dir_ / "collect.yaml").string();
    std::ofstream(wf) << kWorkflow;
    return Ctl("workflow apply " + wf + " --target role=gateway") == 0;
  }

  void Act(int step) {
    const size_t i = rng_.Uniform(agents_.size() - 1);
    switch (rng_.Uniform(9)) {
      case 0:
      case 1: {  // a run on the site's own initiative
        json st = Agent(i, {{"op", "status"}});
        const bool cut_off = st.contains("status") && st["status"]["hub"]["state"] != "established";
        json r = Agent(i, {{"op", "run.start"}, {"workflow", "collect"}});
        if (r.value("ok", false)) {
          ++r_->local_runs;
          if (cut_off) ++r_->local_runs_offline;
        }
        break;
      }
      case 2: {  // a hub request, sometimes retried with the same id
        const std::string id = "req-" + std::to_string(step);
        json first;
        if (Ctl("run start collect --request " + id, &first) == 0) {
          ++r_->requests;
          if (rng_.Uniform(2) == 0) {
            json again;
            if (Ctl("run start collect --request " + id, &again) == 0 &&
                (again["runs"] != first["runs"] || again["duplicate"] != true)) {
              Fail("no request id made two runs", "retry of " + id + " made new runs");
            }
          }
        } else {
          ++r_->requests_refused;
        }
        break;
      }
      case 3: {  // latency and a bandwidth cap for a while
        LinkFaults f;
        f.latency_ms = static_cast<int>(50 + rng_.Uniform(400));
        f.bandwidth_bps = 64'000 + rng_.Uniform(200'000);
        proxy_.SetFaults(i, f);
        break;
      }
      case 4: {  // a black hole
        LinkFaults f;
        f.black_hole = true;
        proxy_.SetFaults(i, f);
        break;
      }
      case 5:  // a reset, or a cut after a few hundred bytes
        if (rng_.Uniform(1) == 0) {
          proxy_.Reset(i);
        } else {
          LinkFaults f;
          f.cut_after = static_cast<int64_t>(100 + rng_.Uniform(2000));
          proxy_.SetFaults(i, f);
        }
        ++r_->resets;
        break;
      case 6:  // heal this link
        proxy_.SetFaults(i, LinkFaults{});
        break;
      case 7:  // SIGKILL the agent and restart it
        Kill(&agents_[i], SIGKILL);
        ++r_->agent_crashes;
        if (!StartAgent(i)) Fail("no store errors", SiteName(i) + " did not restart");
        break;
      case 8:  // SIGKILL the hub (rarely) and restart it on the same ports
        if (rng_.Uniform(3) != 0) break;
        Kill(&hub_, SIGKILL);
        ++r_->hub_crashes;
        std::this_thread::sleep_for(std::chrono::milliseconds(200 + rng_.Uniform(800)));
        if (!StartHub()) Fail("no store errors", "the hub did not restart");
        break;
      default:
        break;
    }
  }

  bool Converged() {
    for (size_t i = 0; i < agents_.size(); ++i) {
      json st = Agent(i, {{"op", "status"}});
      json hub;
      if (!st.contains("status") || Ctl("site show " + SiteName(i), &hub) != 0) return false;
      const json& s = st["status"];
      if (s["active_runs"] != 0 || s["log_acked"] != s["log_head"] ||
          hub["events_received"] != s["log_head"] || hub["commands_pending"] != 0 ||
          s["hub"]["state"] != "established") {
        return false;
      }
    }
    return true;
  }

  void Check() {
    for (size_t i = 0; i < agents_.size(); ++i) {
      json st = Agent(i, {{"op", "status"}});
      json hub;
      Ctl("site show " + SiteName(i), &hub);
      r_->events += st["status"].value("log_head", uint64_t{0});
      if (hub["events_received"] != st["status"]["log_head"]) {
        Fail("every event at the hub exactly once",
             SiteName(i) + ": hub has " + hub["events_received"].dump() + ", site logged " +
                 st["status"]["log_head"].dump());
      }
      if (hub["commands_pending"] != 0) {
        Fail("every hub command applied exactly once",
             SiteName(i) + ": " + hub["commands_pending"].dump() + " commands not applied");
      }
      json runs = Agent(i, {{"op", "run.list"}, {"limit", 100000}});
      std::map<std::string, int> per_request;
      for (const auto& r : runs["runs"]) {
        json mine = Agent(i, {{"op", "run.show"}, {"id", r["id"]}})["run"];
        json theirs;
        ++r_->runs;
        if (mine["state"] == "succeeded") ++r_->runs_succeeded;
        const std::string req = mine.value("request", "");
        if (!req.empty() && ++per_request[req] > 1) {
          Fail("no request id made two runs", SiteName(i) + ": request " + req);
        }
        if (Ctl("run show " + r["id"].get<std::string>(), &theirs) != 0) {
          Fail("hub view equals each site's state", "run " + r["id"].get<std::string>() + " missing at the hub");
          continue;
        }
        bool same = theirs["state"] == mine["state"] && theirs["tasks"].size() == mine["tasks"].size();
        for (size_t t = 0; same && t < mine["tasks"].size(); ++t) {
          same = theirs["tasks"][t]["state"] == mine["tasks"][t]["state"] &&
                 theirs["tasks"][t]["attempts"] == mine["tasks"][t]["attempts"];
        }
        if (!same) {
          Fail("hub view equals each site's state",
               "run " + r["id"].get<std::string>() + ": hub " + theirs["state"].dump() + ", site " +
                   mine["state"].dump());
        }
      }
    }
    json runs;
    if (Ctl("run list --limit 100000", &runs) == 0) {
      for (const auto& r : runs) {
        if (r["request"].get<std::string>().empty()) continue;
        const std::string site = r["site"];
        size_t i = std::stoul(site.substr(site.rfind('-') + 1)) - 1;
        if (!Agent(i, {{"op", "run.show"}, {"id", r["id"]}}).value("ok", false)) {
          Fail("every hub command applied exactly once", "requested run " + r["id"].get<std::string>() +
                                                             " never reached " + site);
        }
      }
    }
    if (r_->local_runs_offline == 0) {
      Fail("sites ran work while cut off", "no local run started while a site was cut off");
    }
  }

  void Heal() {
    for (size_t i = 0; i < agents_.size(); ++i) proxy_.SetFaults(i, LinkFaults{});
    if (hub_ <= 0 && !StartHub()) Fail("no store errors", "the hub did not restart");
    for (size_t i = 0; i < agents_.size(); ++i) {
      if (agents_[i] <= 0 && !StartAgent(i)) Fail("no store errors", SiteName(i) + " did not restart");
    }
  }

  const RealOptions& o_;
  Report* r_;
  Rng rng_;
  fs::path dir_;
  FaultProxy proxy_;
  std::vector<int> proxy_ports_;
  std::vector<pid_t> agents_;
  pid_t hub_ = -1;
  std::string sites_ep_, ops_ep_, hub_key_;
};

}  // namespace

Report RunReal(const RealOptions& o) {
  Report r;
  r.scenario = "real-processes";
  r.seed = o.seed;
  r.sites = static_cast<size_t>(o.sites);
  for (const char* name :
       {"every event at the hub exactly once", "every hub command applied exactly once",
        "no request id made two runs", "hub view equals each site's state",
        "sites ran work while cut off", "converged after the last heal", "no store errors"}) {
    r.invariants.push_back({name, true, ""});
  }
  const auto t0 = Clk::now();
  Fleet fleet(o, &r);
  if (!fleet.Setup()) {
    fleet.Fail("no store errors", "the fleet did not start");
    return r;
  }
  // Act for o.seconds, then heal and wait for quiet.
  const auto end = Clk::now() + std::chrono::seconds(o.seconds);
  int step = 0;
  // The first cut-off is certain: site 1's link goes black before anything else.
  {
    LinkFaults f;
    f.black_hole = true;
    fleet.proxy_.SetFaults(0, f);
    std::this_thread::sleep_for(std::chrono::milliseconds(3500));
    json r0 = fleet.Agent(0, {{"op", "run.start"}, {"workflow", "collect"}});
    if (r0.value("ok", false)) {
      ++r.local_runs;
      ++r.local_runs_offline;
    }
    fleet.proxy_.SetFaults(0, LinkFaults{});
  }
  while (Clk::now() < end) {
    fleet.Act(++step);
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
  }
  fleet.Heal();
  const auto healed = Clk::now();
  if (Eventually([&] { return fleet.Converged(); }, 90'000)) {
    r.convergence_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clk::now() - healed).count();
  } else {
    fleet.Fail("converged after the last heal", "not converged within 90 s of the heal");
  }
  fleet.Check();
  r.wire_bytes = fleet.proxy_.bytes_forwarded();
  r.frames_dropped = fleet.proxy_.bytes_swallowed();
  r.wall_seconds = std::chrono::duration<double>(Clk::now() - t0).count();
  r.virtual_ms = static_cast<TimeMs>(r.wall_seconds * 1000);
  return r;
}

}  // namespace outpost::sim
