#include "hub/dashboard.h"

#include <algorithm>
#include <charconv>

#include "common/json_fields.h"
#include "common/text.h"
#include "common/workflow/cron.h"
#include "common/workflow/tz.h"
#include "common/workflow/workflow.h"
#include "hub/run_view.h"

namespace outpost {

using json = nlohmann::json;

namespace {

constexpr char kCookie[] = "outpost_session";
constexpr size_t kLogTail = 16 * 1024;

// A reply's "ok", and a string field of a JSON object, read without a way to throw.
bool IsOk(const json& j) {
  auto it = j.is_object() ? j.find("ok") : j.end();
  return it != j.end() && it->is_boolean() && it->get<bool>();
}
std::string StrField(const json& j, const char* key) {
  auto it = j.is_object() ? j.find(key) : j.end();
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Text for an HTML page: the five characters markup gives meaning to, escaped.
std::string HtmlText(const std::string& t) {
  std::string out;
  for (char c : t) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

void SecurityHeaders(HttpReply* r) {
  r->headers.emplace_back("Cache-Control", "no-store");
  r->headers.emplace_back("X-Content-Type-Options", "nosniff");
  r->headers.emplace_back("Referrer-Policy", "no-referrer");
  r->headers.emplace_back("X-Frame-Options", "DENY");
  r->headers.emplace_back("Content-Security-Policy",
                          "default-src 'none'; script-src 'self'; style-src 'self'; "
                          "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                          "form-action 'self'; base-uri 'none'");
}

HttpReply Json(const json& body, int status = 200) {
  HttpReply r;
  r.status = status;
  r.content_type = "application/json";
  r.body = SafeDump(body);
  SecurityHeaders(&r);
  return r;
}

HttpReply Page(int status, const std::string& title, const std::string& text) {
  HttpReply r;
  r.status = status;
  r.content_type = "text/html; charset=utf-8";
  r.body = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Outpost: " + title +
           "</title></head><body><h1>" + title + "</h1><p>" + text + "</p></body></html>\n";
  SecurityHeaders(&r);
  return r;
}

HttpReply NeedLogin(bool api) {
  const std::string text =
      "This hub's dashboard needs a login. Run <code>outpostctl dashboard login</code> and "
      "open the link it prints.";
  if (api) return Json(Error("no valid dashboard session; run outpostctl dashboard login", "denied"), 401);
  return Page(401, "log in first", text);
}

std::string CookieValue(const HttpRequest& r, const std::string& name) {
  auto it = r.headers.find("cookie");
  if (it == r.headers.end()) return "";
  const std::string& c = it->second;
  size_t at = 0;
  while (at < c.size()) {
    size_t end = c.find(';', at);
    if (end == std::string::npos) end = c.size();
    std::string part = c.substr(at, end - at);
    const size_t b = part.find_first_not_of(' ');
    part = b == std::string::npos ? "" : part.substr(b);
    if (part.size() > name.size() && part.compare(0, name.size(), name) == 0 && part[name.size()] == '=') {
      return part.substr(name.size() + 1);
    }
    at = end + 1;
  }
  return "";
}

std::string Query(const HttpRequest& r, const std::string& key) {
  auto it = r.query.find(key);
  return it == r.query.end() ? "" : it->second;
}

// A non-negative count from the query; `fallback` when absent, nullopt when malformed.
std::optional<size_t> QueryCount(const HttpRequest& r, const std::string& key, size_t fallback) {
  const std::string v = Query(r, key);
  if (v.empty()) return fallback;
  size_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size()) return std::nullopt;
  return n;
}

bool SameText(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char d = 0;
  for (size_t i = 0; i < a.size(); ++i) d |= static_cast<unsigned char>(a[i] ^ b[i]);
  return d == 0;
}

std::string SiteStateOf(const HubCore& core, const SiteRecord& s) {
  switch (s.site_state()) {
    case SiteState::kPending: return "pending";
    case SiteState::kRevoked: return "revoked";
    default: return core.online(s.name) ? "online" : "offline";
  }
}

}  // namespace

json FleetPage(const HubCore& core, const std::string& q, const std::string& state, size_t offset,
               size_t limit) {
  std::map<std::string, uint64_t> totals = {{"online", 0}, {"offline", 0}, {"pending", 0}, {"revoked", 0}};
  json rows = json::array();
  size_t matched = 0;
  for (const auto& [name, s] : core.sites()) {
    const std::string st = SiteStateOf(core, s);
    ++totals[st];
    if (!state.empty() && st != state) continue;
    bool hit = q.empty() || name.find(q) != std::string::npos;
    for (auto it = s.labels.begin(); !hit && it != s.labels.end(); ++it) {
      hit = (it->first + "=" + it->second).find(q) != std::string::npos;
    }
    if (!hit) continue;
    if (matched++ < offset || rows.size() >= limit) continue;
    json placed = json::array();
    for (const auto& [w, hash] : s.placed) placed.push_back(w);
    rows.push_back({{"name", name},
                    {"state", st},
                    {"last_seen", TimeJson(s.last_seen)},
                    {"labels", s.labels},
                    {"events_behind", s.up_head > s.up_applied ? s.up_head - s.up_applied : 0},
                    {"commands_pending", s.down_head - s.down_acked},
                    {"workflows", placed},
                    {"refused_workflows", s.refused.size()},
                    {"health_at", TimeJson(s.health_at)}});
  }
  return {{"totals", totals}, {"sites_total", core.sites().size()}, {"matched", matched},
          {"offset", offset}, {"limit", limit}, {"sites", rows}};
}

json RunGraph(const HubCore& core, const std::string& workflow, const std::string& hash) {
  const WorkflowRecord* w = core.workflow(workflow);
  if (!w || w->hash != hash) return nullptr;
  auto def = ParseWorkflow(w->source, workflow);
  if (!def.ok()) return nullptr;
  json tasks = json::array();
  for (const auto& t : def->tasks) {
    tasks.push_back({{"id", t.id},
                     {"needs", t.needs},
                     {"fan_out", t.for_each.present},
                     {"compensates", t.has_compensate()},
                     {"approval", t.approval}});
  }
  return {{"tasks", tasks}};
}

json SiteSchedules(const HubCore& core, const std::string& site, TimeMs now) {
  json list = json::array();
  const SiteRecord* s = core.site(site);
  if (!s) return list;
  for (const auto& [name, hash] : s->placed) {
    const WorkflowRecord* w = core.workflow(name);
    if (!w || w->hash != hash) continue;
    auto def = ParseWorkflow(w->source, name);
    if (!def.ok() || !def->schedule) continue;
    json row = {{"workflow", name}, {"cron", def->schedule->cron}, {"timezone", def->schedule->timezone}};
    auto spec = ParseCron(def->schedule->cron);
    auto tz = TimeZone::Load(def->schedule->timezone);
    json next = json::array();
    if (spec.ok() && tz.ok()) {
      TimeMs t = now;
      for (int i = 0; i < 3; ++i) {
        t = NextFire(*spec, *tz, t);
        if (t == 0) break;
        next.push_back(FormatLocal(t, *tz));
      }
    } else {
      row["error"] = !spec.ok() ? spec.status().message() : tz.status().message();
    }
    row["next"] = next;
    list.push_back(std::move(row));
  }
  return list;
}

Dashboard::Dashboard(Options options, RoleOf role_of, Token token)
    : options_(options), role_of_(std::move(role_of)), token_(std::move(token)) {}

bool Dashboard::Serves(const std::string& path) {
  return path == "/login" || path == "/logout" || path == "/ui" || path.rfind("/ui/", 0) == 0 ||
         path.rfind("/api/", 0) == 0;
}

std::string Dashboard::IssueLink(const std::string& operator_name, TimeMs now) {
  Expire(now);
  while (links_.size() >= options_.max_links) {
    auto oldest = std::min_element(links_.begin(), links_.end(), [](const auto& a, const auto& b) {
      return a.second.expires < b.second.expires;
    });
    links_.erase(oldest);
  }
  const std::string token = token_();
  links_[token] = Link{operator_name, now + options_.link_valid};
  return "/login?token=" + token;
}

void Dashboard::Expire(TimeMs now) {
  for (auto it = links_.begin(); it != links_.end();) {
    it = it->second.expires <= now ? links_.erase(it) : std::next(it);
  }
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    const Session& s = it->second;
    const bool over = now - s.used >= options_.idle || now - s.started >= options_.lifetime;
    it = over ? sessions_.erase(it) : std::next(it);
  }
}

Dashboard::Session* Dashboard::SessionOf(const HttpRequest& r, TimeMs now) {
  const std::string id = CookieValue(r, kCookie);
  if (id.empty()) return nullptr;
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return nullptr;
  it->second.used = now;
  return &it->second;
}

HttpReply Dashboard::Login(const HttpRequest& r, TimeMs now) {
  auto it = links_.find(Query(r, "token"));
  if (r.method != "GET" || it == links_.end() || !role_of_(it->second.operator_name)) {
    ++counters_.logins_refused;
    if (it != links_.end()) links_.erase(it);
    return Page(403, "login link refused",
                "This login link is unknown, used or expired (a link works once, within two "
                "minutes). Run <code>outpostctl dashboard login</code> for a new one.");
  }
  const std::string who = it->second.operator_name;
  links_.erase(it);
  while (sessions_.size() >= options_.max_sessions) {
    auto oldest = std::min_element(sessions_.begin(), sessions_.end(), [](const auto& a, const auto& b) {
      return a.second.used < b.second.used;
    });
    sessions_.erase(oldest);
  }
  const std::string id = token_();
  sessions_[id] = Session{who, token_(), now, now};
  ++counters_.logins;
  HttpReply reply;
  reply.status = 303;
  reply.body = "logged in as " + who + "\n";
  reply.headers.emplace_back("Location", "/ui/");
  reply.headers.emplace_back("Set-Cookie", std::string(kCookie) + "=" + id +
                                               "; Path=/; HttpOnly; SameSite=Strict; Max-Age=" +
                                               std::to_string(options_.lifetime / 1000));
  SecurityHeaders(&reply);
  return reply;
}

HttpReply Dashboard::Handle(const HttpRequest& r, HubCore& core, TimeMs now, HubOutput* out) {
  Expire(now);
  if (r.path == "/login") return Login(r, now);
  const bool api = r.path.rfind("/api/", 0) == 0;
  Session* s = SessionOf(r, now);
  std::optional<OperatorRole> role = s ? role_of_(s->operator_name) : std::nullopt;
  if (!s || !role) {
    if (s) sessions_.erase(CookieValue(r, kCookie));  // the operator's key is gone
    ++counters_.unauthenticated;
    return NeedLogin(api);
  }
  const Session session = *s;
  if (r.path == "/logout") {
    if (r.method != "POST" || !SameText(Query(r, "csrf"), session.csrf)) {
      ++counters_.csrf_refused;
      return Page(403, "refused", "Log out from the dashboard's own button.");
    }
    sessions_.erase(CookieValue(r, kCookie));
    return Page(200, "logged out", "The session has ended.");
  }
  if (api) return Api(r, session.operator_name, *role, session, core, now, out);
  if (r.method != "GET") return Page(405, "method not allowed", "Pages are read with GET.");
  if (r.path == "/ui") {
    HttpReply reply;
    reply.status = 301;
    reply.headers.emplace_back("Location", "/ui/");
    return reply;
  }
  const DashboardAsset* a = FindDashboardAsset(r.path);
  if (!a) return Page(404, "not found", "No such page: " + HtmlText(SafeText(r.path, 100)));
  HttpReply reply;
  reply.content_type = a->content_type;
  reply.body = a->body;
  SecurityHeaders(&reply);
  return reply;
}

HttpReply Dashboard::Api(const HttpRequest& r, const std::string& who, OperatorRole role,
                         const Session& s, HubCore& core, TimeMs now, HubOutput* out) {
  if (r.method == "POST") return Action(r, who, role, s, core, out);
  if (r.method != "GET") return Json(Error("the dashboard's API answers GET and POST"), 405);
  const std::string& p = r.path;
  auto limit = QueryCount(r, "limit", 50);
  auto offset = QueryCount(r, "offset", 0);
  if (!limit || !offset) return Json(Error("limit and offset must be non-negative integers"), 400);
  const size_t lim = std::min(*limit, options_.page_max);
  auto call = [&](json req) { return core.OnOperator(who, req, out, role); };
  auto reply = [](const json& j) {
    const bool ok = IsOk(j);
    const std::string code = ok ? "" : StrField(j, "code");
    return Json(j, ok ? 200 : code == "not_found" ? 404 : code == "forbidden" ? 403 : 400);
  };
  if (p == "/api/session") {
    return Json({{"ok", true},
                 {"operator", who},
                 {"role", OperatorRoleName(role)},
                 {"csrf", s.csrf},
                 {"hub_epoch", core.hub_epoch()}});
  }
  if (p == "/api/fleet") {
    const std::string state = Query(r, "state");
    if (!state.empty() && state != "online" && state != "offline" && state != "pending" &&
        state != "revoked") {
      return Json(Error("state must be online, offline, pending or revoked"), 400);
    }
    json page = FleetPage(core, Query(r, "q"), state, *offset, lim);
    page["ok"] = true;
    return Json(page);
  }
  if (p == "/api/site") {
    json site = call({{"op", "site.show"}, {"name", Query(r, "name")}});
    if (!IsOk(site)) return reply(site);
    json runs = call({{"op", "run.list"}, {"site", Query(r, "name")}, {"limit", lim}});
    if (!IsOk(runs)) return reply(runs);
    site["runs"] = runs["runs"];
    site["schedules"] = SiteSchedules(core, Query(r, "name"), now);
    return Json(site);
  }
  if (p == "/api/runs") {
    json req = {{"op", "run.list"}, {"limit", lim}};
    for (const char* k : {"site", "workflow", "state"}) {
      if (!Query(r, k).empty()) req[k] = Query(r, k);
    }
    return reply(call(req));
  }
  if (p == "/api/run") {
    json run = call({{"op", "run.show"}, {"id", Query(r, "id")}});
    if (!IsOk(run)) return reply(run);
    const json& rv = run["run"];
    run["graph"] = RunGraph(core, StrField(rv, "workflow"), StrField(rv, "hash"));
    const SiteRecord* site = core.site(StrField(rv, "site"));
    run["site_policy"] = site && !site->policy_status.empty() ? json(site->policy_status) : json(nullptr);
    return Json(run);
  }
  if (p == "/api/logs") {
    json logs = call({{"op", "run.logs"}, {"id", Query(r, "id")}, {"task", Query(r, "task")}});
    if (IsOk(logs) && logs["output"].is_string()) {
      const std::string& text = logs["output"].get_ref<const std::string&>();
      if (text.size() > kLogTail) {
        logs["output"] = text.substr(text.size() - kLogTail);
        logs["truncated"] = text.size() - kLogTail;
      }
    }
    return reply(logs);
  }
  if (p == "/api/audit") return reply(call({{"op", "events"}, {"limit", lim}}));
  if (p == "/api/workflows") return reply(call({{"op", "workflow.list"}}));
  return Json(Error("no such query: " + SafeText(p, 100), "not_found"), 404);
}

HttpReply Dashboard::Action(const HttpRequest& r, const std::string& who, OperatorRole role,
                            const Session& s, HubCore& core, HubOutput* out) {
  // CSRF: the session's token in a header a form cannot set, a JSON body (a cross-site
  // request with that type needs a preflight this listener never answers), and the
  // page's own origin when the browser says where the request comes from.
  auto header = [&](const char* k) {
    auto it = r.headers.find(k);
    return it == r.headers.end() ? std::string() : it->second;
  };
  // Browsers send Origin with every POST; without it, a Referer must name this page.
  const std::string origin = header("origin"), referer = header("referer"),
                    fetch_site = header("sec-fetch-site"), own = "http://" + header("host");
  const bool same_origin = (origin.empty() ? referer.empty() || referer.rfind(own + "/", 0) == 0
                                           : origin == own) &&
                           (fetch_site.empty() || fetch_site == "same-origin");
  if (!SameText(header("x-outpost-csrf"), s.csrf) || !same_origin ||
      header("content-type").rfind("application/json", 0) != 0) {
    ++counters_.csrf_refused;
    return Json(Error("refused: an action needs the dashboard session's token and must come "
                      "from the dashboard's own page",
                      "forbidden"),
                403);
  }
  if (!JsonDepthWithin(r.body, kMaxRequestDepth)) return Json(Error("request nests too deep"), 400);
  json body = json::parse(r.body, nullptr, false);
  if (!body.is_object()) return Json(Error("the body must be a JSON object"), 400);
  JsonFields f(body);
  std::string id, task;
  bool reject = false;
  json req;
  if (r.path == "/api/cancel") {
    if (Status st = f.Str("id", &id, kRequired, 64); !st.ok()) return Json(Error(st), 400);
    req = {{"op", "run.cancel"}, {"id", id}, {"reason", "cancelled by " + who + " from the dashboard"}};
  } else if (r.path == "/api/approve") {
    Status st = f.Str("id", &id, kRequired, 64)
                    .And(f.Str("task", &task, kRequired, 256))
                    .And(f.Bool("reject", &reject));
    if (!st.ok()) return Json(Error(st), 400);
    req = {{"op", "run.approve"}, {"id", id}, {"task", task}, {"reject", reject}};
  } else {
    return Json(Error("no such action: " + SafeText(r.path, 100), "not_found"), 404);
  }
  ++counters_.actions;
  json result = core.OnOperator(who, req, out, role);
  return Json(result, IsOk(result) ? 200 : StrField(result, "code") == "forbidden" ? 403 : 400);
}

}  // namespace outpost
