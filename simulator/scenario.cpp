#include "simulator/scenario.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <fstream>
#include <set>
#include <sstream>

#include "common/random.h"
#include "common/workflow/workflow.h"

namespace outpost::sim {

namespace {

class Parser {
 public:
  explicit Parser(std::string file) : file_(std::move(file)) {}

  Status Error(const YAML::Node& n, const std::string& what) const {
    const auto m = n.Mark();
    return Status::InvalidArgument(file_ + ":" + std::to_string(m.line + 1) + ":" +
                                   std::to_string(m.column + 1) + ": " + what);
  }
  // Rejects keys not in `allowed`, so a typo is an error rather than a default.
  Status Keys(const YAML::Node& n, const std::set<std::string>& allowed, const std::string& ctx) {
    if (!n.IsMap()) return Error(n, ctx + " must be a map");
    for (const auto& kv : n) {
      const std::string k = kv.first.as<std::string>();
      if (!allowed.count(k)) return Error(kv.first, "unknown key '" + k + "' in " + ctx);
    }
    return Status::Ok();
  }
  Status Duration(const YAML::Node& n, const char* key, DurationMs* out) {
    if (!n[key]) return Status::Ok();
    auto d = ParseDuration(n[key].as<std::string>());
    if (!d.ok()) return Error(n[key], std::string(key) + ": " + d.status().message());
    *out = *d;
    return Status::Ok();
  }
  template <typename T>
  Status Scalar(const YAML::Node& n, const char* key, T* out) {
    if (!n[key]) return Status::Ok();
    try {
      *out = n[key].as<T>();
    } catch (const YAML::Exception&) {
      return Error(n[key], std::string(key) + " has the wrong type");
    }
    return Status::Ok();
  }
  Status Labels(const YAML::Node& n, const char* key, std::map<std::string, std::string>* out) {
    if (!n[key]) return Status::Ok();
    if (!n[key].IsMap()) return Error(n[key], std::string(key) + " must be a map of labels");
    for (const auto& kv : n[key]) (*out)[kv.first.as<std::string>()] = kv.second.as<std::string>();
    return Status::Ok();
  }
  Status Periodics(const YAML::Node& n, const char* key, std::vector<Periodic>* out) {
    if (!n[key]) return Status::Ok();
    if (!n[key].IsSequence()) return Error(n[key], std::string(key) + " must be a list");
    for (const auto& p : n[key]) {
      OUTPOST_RETURN_IF_ERROR(Keys(p, {"workflow", "every", "at", "target"}, key));
      Periodic v;
      OUTPOST_RETURN_IF_ERROR(Scalar(p, "workflow", &v.workflow));
      OUTPOST_RETURN_IF_ERROR(Duration(p, "every", &v.every));
      DurationMs at = -1;
      if (p["at"]) OUTPOST_RETURN_IF_ERROR(Duration(p, "at", &at));
      v.at = at;
      OUTPOST_RETURN_IF_ERROR(Labels(p, "target", &v.target));
      if (v.workflow.empty()) return Error(p, std::string(key) + " entry needs a workflow");
      if (v.every == 0 && v.at < 0) return Error(p, std::string(key) + " entry needs every or at");
      out->push_back(v);
    }
    return Status::Ok();
  }
  Status Windows(const YAML::Node& n, const char* key, std::vector<Window>* out) {
    if (!n[key]) return Status::Ok();
    if (!n[key].IsSequence()) return Error(n[key], std::string(key) + " must be a list");
    for (const auto& w : n[key]) {
      OUTPOST_RETURN_IF_ERROR(Keys(w, {"sites", "at", "for", "direction", "period"}, key));
      Window v;
      OUTPOST_RETURN_IF_ERROR(Scalar(w, "sites", &v.sites));
      OUTPOST_RETURN_IF_ERROR(Duration(w, "at", &v.at));
      OUTPOST_RETURN_IF_ERROR(Duration(w, "for", &v.duration));
      OUTPOST_RETURN_IF_ERROR(Scalar(w, "direction", &v.direction));
      OUTPOST_RETURN_IF_ERROR(Duration(w, "period", &v.period));
      if (v.direction != "both" && v.direction != "up" && v.direction != "down") {
        return Error(w["direction"], "direction must be both, up or down");
      }
      if (v.duration <= 0) return Error(w, std::string(key) + " entry needs a positive 'for'");
      out->push_back(v);
    }
    return Status::Ok();
  }
  Status Crash(const YAML::Node& n, const char* key, CrashSpec* out) {
    if (!n[key]) return Status::Ok();
    OUTPOST_RETURN_IF_ERROR(Keys(n[key], {"every", "down"}, key));
    OUTPOST_RETURN_IF_ERROR(Duration(n[key], "every", &out->every));
    OUTPOST_RETURN_IF_ERROR(Duration(n[key], "down", &out->down));
    return Status::Ok();
  }

  Result<Scenario> Parse(const std::string& text) {
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      return Status::InvalidArgument(file_ + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
    }
    Scenario s;
    s.file = file_;
    OUTPOST_RETURN_IF_ERROR(Keys(root,
                                 {"name", "seed", "duration", "converge_within", "sync", "sites",
                                  "workflows", "local_runs", "requests", "duplicate_requests",
                                  "network", "partitions", "hub_outages", "flapping", "crashes",
                                  "clock_skew", "max_parallel", "couriers", "storage", "operators", "swarm"},
                                 "the scenario"));
    OUTPOST_RETURN_IF_ERROR(Scalar(root, "name", &s.name));
    OUTPOST_RETURN_IF_ERROR(Scalar(root, "seed", &s.seed));
    OUTPOST_RETURN_IF_ERROR(Duration(root, "duration", &s.duration));
    OUTPOST_RETURN_IF_ERROR(Duration(root, "converge_within", &s.converge_within));
    OUTPOST_RETURN_IF_ERROR(Scalar(root, "duplicate_requests", &s.duplicate_requests));
    OUTPOST_RETURN_IF_ERROR(Scalar(root, "max_parallel", &s.max_parallel));
    OUTPOST_RETURN_IF_ERROR(Duration(root, "clock_skew", &s.max_clock_skew));
    if (root["sync"]) {
      const auto& y = root["sync"];
      OUTPOST_RETURN_IF_ERROR(Keys(y, {"ping", "dead", "resend", "window", "batch"}, "sync"));
      OUTPOST_RETURN_IF_ERROR(Duration(y, "ping", &s.sync.idle_ping));
      OUTPOST_RETURN_IF_ERROR(Duration(y, "dead", &s.sync.dead_after));
      OUTPOST_RETURN_IF_ERROR(Duration(y, "resend", &s.sync.resend_after));
      OUTPOST_RETURN_IF_ERROR(Scalar(y, "window", &s.sync.window));
      OUTPOST_RETURN_IF_ERROR(Scalar(y, "batch", &s.sync.batch_count));
    }
    if (!root["sites"] || !root["sites"].IsSequence()) return Error(root, "sites: a list is required");
    for (const auto& g : root["sites"]) {
      OUTPOST_RETURN_IF_ERROR(Keys(g, {"prefix", "count", "labels"}, "sites"));
      SiteGroup sg;
      OUTPOST_RETURN_IF_ERROR(Scalar(g, "prefix", &sg.prefix));
      OUTPOST_RETURN_IF_ERROR(Scalar(g, "count", &sg.count));
      OUTPOST_RETURN_IF_ERROR(Labels(g, "labels", &sg.labels));
      if (sg.prefix.empty() || sg.count < 1 || sg.count > 100000) {
        return Error(g, "a site group needs a prefix and a count of 1-100000");
      }
      s.sites.push_back(sg);
    }
    if (root["workflows"]) {
      for (const auto& w : root["workflows"]) {
        OUTPOST_RETURN_IF_ERROR(Keys(w, {"definition", "target"}, "workflows"));
        WorkflowSpec ws;
        OUTPOST_RETURN_IF_ERROR(Scalar(w, "definition", &ws.source));
        OUTPOST_RETURN_IF_ERROR(Labels(w, "target", &ws.target));
        auto def = ParseWorkflow(ws.source, file_ + " (workflow at line " +
                                                std::to_string(w.Mark().line + 1) + ")");
        if (!def.ok()) return def.status();
        ws.name = def->name;
        s.workflows.push_back(ws);
      }
    }
    OUTPOST_RETURN_IF_ERROR(Periodics(root, "local_runs", &s.local_runs));
    OUTPOST_RETURN_IF_ERROR(Periodics(root, "requests", &s.requests));
    for (const auto* list : {&s.local_runs, &s.requests}) {
      for (const auto& p : *list) {
        bool known = false;
        for (const auto& w : s.workflows) known = known || w.name == p.workflow;
        if (!known) return Status::InvalidArgument(file_ + ": unknown workflow '" + p.workflow + "'");
      }
    }
    if (root["network"]) {
      const auto& net = root["network"];
      OUTPOST_RETURN_IF_ERROR(Keys(net, {"latency", "jitter", "bandwidth", "drop", "disconnects", "links"},
                                   "network"));
      LinkSpec base;
      OUTPOST_RETURN_IF_ERROR(ParseLink(net, &base));
      s.links.push_back(base);
      if (net["links"]) {
        for (const auto& l : net["links"]) {
          OUTPOST_RETURN_IF_ERROR(
              Keys(l, {"sites", "latency", "jitter", "bandwidth", "drop", "disconnects"}, "links"));
          LinkSpec ls = base;
          OUTPOST_RETURN_IF_ERROR(Scalar(l, "sites", &ls.sites));
          OUTPOST_RETURN_IF_ERROR(ParseLink(l, &ls));
          s.links.push_back(ls);
        }
      }
    } else {
      s.links.push_back(LinkSpec{});
    }
    OUTPOST_RETURN_IF_ERROR(Windows(root, "partitions", &s.partitions));
    OUTPOST_RETURN_IF_ERROR(Windows(root, "hub_outages", &s.hub_outages));
    OUTPOST_RETURN_IF_ERROR(Windows(root, "flapping", &s.flapping));
    if (root["couriers"]) {
      if (!root["couriers"].IsSequence()) return Error(root["couriers"], "couriers: a list");
      for (const auto& c : root["couriers"]) {
        OUTPOST_RETURN_IF_ERROR(Keys(c, {"sites", "every", "delay", "loss", "duplicate"}, "couriers"));
        CourierSpec cs;
        OUTPOST_RETURN_IF_ERROR(Scalar(c, "sites", &cs.sites));
        OUTPOST_RETURN_IF_ERROR(Duration(c, "every", &cs.every));
        OUTPOST_RETURN_IF_ERROR(Duration(c, "delay", &cs.delay));
        OUTPOST_RETURN_IF_ERROR(Scalar(c, "loss", &cs.loss));
        OUTPOST_RETURN_IF_ERROR(Scalar(c, "duplicate", &cs.duplicate));
        if (cs.every <= 0 || cs.delay < 0 || cs.loss < 0 || cs.loss > 0.9 || cs.duplicate < 0 ||
            cs.duplicate > 1) {
          return Error(c, "a courier needs every > 0, delay >= 0, loss 0-0.9, duplicate 0-1");
        }
        s.couriers.push_back(cs);
      }
    }
    OUTPOST_RETURN_IF_ERROR(Scalar(root, "swarm", &s.swarm));
    if (const YAML::Node op = root["operators"]) {
      OUTPOST_RETURN_IF_ERROR(Keys(op, {"every"}, "operators"));
      OUTPOST_RETURN_IF_ERROR(Duration(op, "every", &s.operators_every));
    }
    if (const YAML::Node st = root["storage"]) {
      OUTPOST_RETURN_IF_ERROR(Keys(st, {"power_cuts", "crash_points", "write_error", "sync_error",
                                        "corrupt_read", "disk_full", "lost_disks",
                                        "hub_restores"},
                                   "storage"));
      StorageSpec& g = s.storage;
      OUTPOST_RETURN_IF_ERROR(Scalar(st, "power_cuts", &g.power_cuts));
      OUTPOST_RETURN_IF_ERROR(Scalar(st, "crash_points", &g.crash_points));
      OUTPOST_RETURN_IF_ERROR(Scalar(st, "write_error", &g.write_error));
      OUTPOST_RETURN_IF_ERROR(Scalar(st, "sync_error", &g.sync_error));
      OUTPOST_RETURN_IF_ERROR(Scalar(st, "corrupt_read", &g.corrupt_read));
      OUTPOST_RETURN_IF_ERROR(Scalar(st, "hub_restores", &g.hub_restores));
      if (st["disk_full"]) {
        OUTPOST_RETURN_IF_ERROR(Keys(st["disk_full"], {"every", "for"}, "disk_full"));
        OUTPOST_RETURN_IF_ERROR(Duration(st["disk_full"], "every", &g.full_every));
        OUTPOST_RETURN_IF_ERROR(Duration(st["disk_full"], "for", &g.full_for));
      }
      if (st["lost_disks"]) {
        OUTPOST_RETURN_IF_ERROR(Keys(st["lost_disks"], {"every"}, "lost_disks"));
        OUTPOST_RETURN_IF_ERROR(Duration(st["lost_disks"], "every", &g.lost_every));
      }
      const std::pair<const char*, double> shares[] = {{"power_cuts", g.power_cuts},
                                                       {"crash_points", g.crash_points},
                                                       {"hub_restores", g.hub_restores}};
      for (const auto& [key, p] : shares) {
        if (p < 0 || p > 1) return Error(st[key], std::string(key) + " is a share, 0-1");
      }
      const std::pair<const char*, double> rates[] = {{"write_error", g.write_error},
                                                      {"sync_error", g.sync_error},
                                                      {"corrupt_read", g.corrupt_read}};
      for (const auto& [key, p] : rates) {
        if (p < 0 || p > 0.2) return Error(st[key], std::string(key) + " must be 0-0.2");
      }
      if (g.full_every < 0 || (g.full_every > 0 && g.full_for <= 0)) {
        return Error(st["disk_full"], "disk_full needs every and for, both positive");
      }
    }
    if (s.duplicate_requests < 0 || s.duplicate_requests > 1) {
      return Error(root["duplicate_requests"], "duplicate_requests is a share, 0-1");
    }
    if (root["crashes"]) {
      OUTPOST_RETURN_IF_ERROR(Keys(root["crashes"], {"agents", "hub"}, "crashes"));
      OUTPOST_RETURN_IF_ERROR(Crash(root["crashes"], "agents", &s.agent_crashes));
      OUTPOST_RETURN_IF_ERROR(Crash(root["crashes"], "hub", &s.hub_crashes));
    }
    // Every `sites:` names all, a group, or one site of a group: a typo would otherwise
    // make a fault that silently touches nothing.
    auto known = [&s](const std::string& name) {
      if (name == "all") return true;
      for (const auto& g : s.sites) {
        if (name == g.prefix) return true;
        if (name.rfind(g.prefix + "-", 0) == 0) {
          const std::string n = name.substr(g.prefix.size() + 1);
          int k = 0;
          auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), k);
          if (ec == std::errc() && end == n.data() + n.size() && k >= 1 && k <= g.count) return true;
        }
      }
      return false;
    };
    for (const char* key : {"partitions", "hub_outages", "flapping", "couriers"}) {
      if (!root[key] || !root[key].IsSequence()) continue;
      for (const auto& w : root[key]) {
        if (w["sites"] && !known(w["sites"].as<std::string>())) {
          return Error(w["sites"], "sites '" + w["sites"].as<std::string>() +
                                       "' is not all, a site group's prefix or one of its sites");
        }
      }
    }
    for (const auto& l : s.links) {
      if (!known(l.sites)) return Error(root["network"], "network link for unknown sites '" + l.sites + "'");
    }
    return s;
  }

  Status ParseLink(const YAML::Node& n, LinkSpec* l) {
    OUTPOST_RETURN_IF_ERROR(Duration(n, "latency", &l->latency));
    OUTPOST_RETURN_IF_ERROR(Duration(n, "jitter", &l->jitter));
    OUTPOST_RETURN_IF_ERROR(Scalar(n, "drop", &l->drop));
    if (n["bandwidth"]) {
      // "256kbit", "1mbit", "10mbit" or a number of bits per second.
      std::string b = n["bandwidth"].as<std::string>();
      uint64_t mult = 1;
      if (b.ends_with("kbit")) mult = 1000, b.resize(b.size() - 4);
      else if (b.ends_with("mbit")) mult = 1'000'000, b.resize(b.size() - 4);
      char* end = nullptr;
      const double v = strtod(b.c_str(), &end);
      if (b.empty() || *end != '\0' || v <= 0) return Error(n["bandwidth"], "bandwidth like 256kbit or 10mbit");
      l->bandwidth_bps = static_cast<uint64_t>(v * static_cast<double>(mult));
    }
    if (n["disconnects"]) {
      OUTPOST_RETURN_IF_ERROR(Keys(n["disconnects"], {"every", "for"}, "disconnects"));
      OUTPOST_RETURN_IF_ERROR(Duration(n["disconnects"], "every", &l->disconnect_every));
      OUTPOST_RETURN_IF_ERROR(Duration(n["disconnects"], "for", &l->disconnect_for));
    }
    if (l->drop < 0 || l->drop > 0.5) return Error(n, "drop must be 0-0.5");
    return Status::Ok();
  }

 private:
  std::string file_;
};

}  // namespace

Result<Scenario> ParseScenario(const std::string& yaml, const std::string& file) {
  return Parser(file).Parse(yaml);
}

Result<Scenario> LoadScenario(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read scenario " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseScenario(ss.str(), path);
}

Scenario DrawSwarm(const Scenario& b, uint64_t seed, std::string* summary) {
  Rng rng(seed ^ 0x5ca1ab1e0ddba11ULL);
  Scenario s = b;
  std::string on;
  // Rng::Uniform(n) draws from 0..n inclusive.
  auto coin = [&] { return rng.Uniform(1) == 0; };
  auto scale = [&] { return 0.25 + static_cast<double>(rng.Uniform(1750)) / 1000.0; };  // 0.25-2
  auto keep = [&](const char* name) {
    const bool k = coin();
    if (k) on += std::string(on.empty() ? "" : ", ") + name;
    return k;
  };
  auto every = [&](DurationMs e) { return static_cast<DurationMs>(static_cast<double>(e) / scale()); };
  auto prob = [&](double p, double cap) { return std::min(cap, p * scale()); };
  std::string fleet;
  for (auto& g : s.sites) {
    g.count = 1 + static_cast<int>(rng.Uniform(static_cast<uint64_t>(g.count - 1)));
    fleet += (fleet.empty() ? "" : " ") + g.prefix + "x" + std::to_string(g.count);
  }
  // Loss and resets are switched for the whole network (every link override at once).
  const bool loss = keep("loss"), resets = keep("resets");
  for (auto& l : s.links) {
    l.drop = loss ? prob(l.drop, 0.5) : 0;
    if (l.disconnect_every > 0) l.disconnect_every = resets ? every(l.disconnect_every) : 0;
  }
  // Fresh windows: as many as the bounds list, anywhere in the run, up to their length.
  auto windows = [&](std::vector<Window>* ws, const char* name) {
    if (ws->empty()) return;
    if (!keep(name)) {
      ws->clear();
      return;
    }
    for (auto& w : *ws) {
      w.duration = 1 + static_cast<DurationMs>(rng.Uniform(static_cast<uint64_t>(std::max<DurationMs>(w.duration, 1))));
      w.at = static_cast<TimeMs>(rng.Uniform(static_cast<uint64_t>(std::max<DurationMs>(s.duration - w.duration, 1))));
      static const char* kDirections[] = {"both", "both", "up", "down"};
      if (w.period == 0) w.direction = kDirections[rng.Uniform(3)];
    }
  };
  windows(&s.partitions, "partitions");
  windows(&s.hub_outages, "hub outages");
  windows(&s.flapping, "flapping");
  if (s.agent_crashes.every > 0) s.agent_crashes.every = keep("agent crashes") ? every(s.agent_crashes.every) : 0;
  if (s.hub_crashes.every > 0) s.hub_crashes.every = keep("hub crashes") ? every(s.hub_crashes.every) : 0;
  if (s.max_clock_skew > 0 && !keep("clock skew")) s.max_clock_skew = 0;
  StorageSpec& st = s.storage;
  if (st.power_cuts > 0) st.power_cuts = keep("power cuts") ? prob(st.power_cuts, 1) : 0;
  if (st.crash_points > 0) st.crash_points = keep("crash points") ? prob(st.crash_points, 1) : 0;
  if (st.write_error > 0) st.write_error = keep("write errors") ? prob(st.write_error, 0.2) : 0;
  if (st.sync_error > 0) st.sync_error = keep("fsync errors") ? prob(st.sync_error, 0.2) : 0;
  if (st.corrupt_read > 0) st.corrupt_read = keep("bad reads") ? prob(st.corrupt_read, 0.2) : 0;
  if (st.full_every > 0) st.full_every = keep("full disks") ? every(st.full_every) : 0;
  if (st.lost_every > 0) st.lost_every = keep("lost disks") ? every(st.lost_every) : 0;
  if (s.duplicate_requests > 0) s.duplicate_requests = keep("duplicate requests") ? prob(s.duplicate_requests, 1) : 0;
  if (s.operators_every > 0) s.operators_every = keep("operator actions") ? every(s.operators_every) : 0;
  auto subset = [&](std::vector<Periodic>* ps) {
    std::vector<Periodic> kept;
    for (auto& p : *ps) {
      if (rng.Uniform(3) != 0) kept.push_back(p);
    }
    *ps = std::move(kept);
  };
  subset(&s.local_runs);
  subset(&s.requests);
  // Drawn last, so the draws above stay what they were for every seed.
  if (st.hub_restores > 0) st.hub_restores = keep("hub restores") ? prob(st.hub_restores, 1) : 0;
  s.swarm = false;
  s.drawn = true;
  if (summary) *summary = fleet + "; " + (on.empty() ? "no faults" : on);
  return s;
}

}  // namespace outpost::sim
