// The dashboard's sessions, CSRF rules and queries, over a real HubCore on an in-memory
// store under a manual clock. (tests/integration/dashboard_test.py drives the pages in
// a real browser.)
#include "hub/dashboard.h"

#include <gtest/gtest.h>
#include <rocksdb/env.h>

#include "common/keys.h"
#include "hub/rocks_hub_store.h"

namespace outpost {
namespace {

using json = nlohmann::json;

const char* kWf = R"(
name: deploy
tasks:
  - id: fetch
    run: [true]
  - id: gate
    type: approval
    needs: [fetch]
)";

class DashboardTest : public ::testing::Test {
 protected:
  DashboardTest() : env_(rocksdb::NewMemEnv(rocksdb::Env::Default())), rng_(7) {
    RocksHubStore::Options so;
    so.env = env_.get();
    auto s = RocksHubStore::Open("/hub", so);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
    auto c = HubCore::Open(store_.get(), clock_, &rng_, HubOptions{});
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    core_ = std::move(c).value();
    roles_ = {{"alice", OperatorRole::kOperator}, {"victor", OperatorRole::kViewer}};
    dash_ = std::make_unique<Dashboard>(
        Dashboard::Options{},
        [this](const std::string& n) -> std::optional<OperatorRole> {
          auto it = roles_.find(n);
          if (it == roles_.end()) return std::nullopt;
          return it->second;
        },
        [this] { return "token" + std::to_string(++tokens_); });
  }

  json Op(const json& req) {
    HubOutput out;
    return core_->OnOperator("admin", req, &out);
  }
  void AddSite(const std::string& name, const std::string& role) {
    auto keys = GenerateCurveKeys();
    ASSERT_TRUE(keys.ok());
    json r = Op({{"op", "site.add"}, {"name", name}, {"key", keys->public_z85}, {"labels", {{"role", role}}}});
    ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  }
  HttpReply Get(const std::string& path, const std::map<std::string, std::string>& query = {},
                const std::string& cookie = "") {
    HttpRequest r;
    r.method = "GET";
    r.path = path;
    r.query = query;
    if (!cookie.empty()) r.headers["cookie"] = "theme=dark; outpost_session=" + cookie;
    HubOutput out;
    return dash_->Handle(r, *core_, clock_.Now(), &out);
  }
  HttpReply Post(const std::string& path, const json& body, const std::string& cookie,
                 std::map<std::string, std::string> headers) {
    HttpRequest r;
    r.method = "POST";
    r.path = path;
    r.body = body.dump();
    r.headers = std::move(headers);
    r.headers["cookie"] = "outpost_session=" + cookie;
    HubOutput out;
    return dash_->Handle(r, *core_, clock_.Now(), &out);
  }
  // Logs `who` in; returns the session id (from Set-Cookie) and the CSRF token.
  std::pair<std::string, std::string> Login(const std::string& who) {
    const std::string link = dash_->IssueLink(who, clock_.Now());
    const std::string token = link.substr(link.find('=') + 1);
    HttpReply r = Get("/login", {{"token", token}});
    EXPECT_EQ(r.status, 303);
    std::string cookie;
    for (const auto& [k, v] : r.headers) {
      if (k == "Set-Cookie") cookie = v;
    }
    EXPECT_NE(cookie.find("HttpOnly"), std::string::npos) << cookie;
    EXPECT_NE(cookie.find("SameSite=Strict"), std::string::npos) << cookie;
    const std::string id = cookie.substr(cookie.find('=') + 1, cookie.find(';') - cookie.find('=') - 1);
    json s = json::parse(Get("/api/session", {}, id).body);
    return {id, s.value("csrf", "")};
  }
  std::map<std::string, std::string> Same(const std::string& csrf) {
    return {{"x-outpost-csrf", csrf}, {"content-type", "application/json"}, {"host", "127.0.0.1:7480"},
            {"origin", "http://127.0.0.1:7480"}, {"sec-fetch-site", "same-origin"}};
  }
  // A run of kWf on `site`, waiting at its gate once the site reports (here: never).
  std::string StartRun(const std::string& site) {
    json a = Op({{"op", "workflow.apply"}, {"source", kWf}, {"target", json::object()}});
    EXPECT_TRUE(a["ok"].get<bool>()) << a.dump();
    json r = Op({{"op", "run.start"}, {"workflow", "deploy"}, {"site", site}});
    EXPECT_TRUE(r["ok"].get<bool>()) << r.dump();
    return r["runs"][0].get<std::string>();
  }

  std::unique_ptr<rocksdb::Env> env_;
  ManualClock clock_;
  Rng rng_;
  std::unique_ptr<RocksHubStore> store_;
  std::unique_ptr<HubCore> core_;
  std::map<std::string, OperatorRole> roles_;
  int tokens_ = 0;
  std::unique_ptr<Dashboard> dash_;
};

TEST_F(DashboardTest, NothingAnswersWithoutASession) {
  AddSite("plant-1", "gw");
  for (const char* p : {"/ui/", "/ui/app.js", "/ui/app.css", "/api/session", "/api/fleet", "/api/audit",
                        "/api/site", "/api/run"}) {
    HttpReply r = Get(p, {{"name", "plant-1"}});
    EXPECT_EQ(r.status, 401) << p;
    EXPECT_EQ(r.body.find("plant-1"), std::string::npos) << p;
    EXPECT_EQ(Get(p, {}, "forged-session").status, 401) << p;
  }
  EXPECT_EQ(Post("/api/cancel", {{"id", "x"}}, "forged", Same("x")).status, 401);
  EXPECT_EQ(dash_->counters().unauthenticated, 17u);
}

TEST_F(DashboardTest, ALoginLinkWorksOnceAndNotLate) {
  const std::string link = dash_->IssueLink("alice", clock_.Now());
  const std::string token = link.substr(link.find('=') + 1);
  EXPECT_EQ(Get("/login", {{"token", token}}).status, 303);
  EXPECT_EQ(Get("/login", {{"token", token}}).status, 403);  // used
  const std::string late = dash_->IssueLink("alice", clock_.Now());
  clock_.Advance(121'000);
  EXPECT_EQ(Get("/login", {{"token", late.substr(late.find('=') + 1)}}).status, 403);
  EXPECT_EQ(Get("/login", {{"token", ""}}).status, 403);
  EXPECT_EQ(dash_->counters().logins, 1u);
  EXPECT_EQ(dash_->counters().logins_refused, 3u);
}

TEST_F(DashboardTest, ASessionEndsWhenIdleOrWhenTheKeyIsRemoved) {
  auto [id, csrf] = Login("alice");
  EXPECT_EQ(Get("/ui/", {}, id).status, 200);
  HttpReply missing = Get("/ui/<img src=x>", {}, id);  // the path is echoed as text
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.body.find("<img"), std::string::npos) << missing.body;
  EXPECT_NE(missing.body.find("&lt;img"), std::string::npos) << missing.body;
  clock_.Advance(7LL * 3600 * 1000);
  EXPECT_EQ(Get("/api/session", {}, id).status, 200);  // used: the idle time restarts
  clock_.Advance(8LL * 3600 * 1000 + 1);
  EXPECT_EQ(Get("/api/session", {}, id).status, 401);
  auto [id2, csrf2] = Login("alice");
  roles_.erase("alice");
  EXPECT_EQ(Get("/api/session", {}, id2).status, 401);
  roles_["alice"] = OperatorRole::kOperator;
  EXPECT_EQ(Get("/api/session", {}, id2).status, 401);  // gone for good
}

TEST_F(DashboardTest, AnActionNeedsTheTokenTheOriginAndARole) {
  AddSite("plant-1", "gw");
  const std::string run = StartRun("plant-1");
  auto [id, csrf] = Login("alice");
  const json body = {{"id", run}};
  auto h = Same(csrf);
  auto without = [&](const char* k) {
    auto m = h;
    m.erase(k);
    return m;
  };
  EXPECT_EQ(Post("/api/cancel", body, id, without("x-outpost-csrf")).status, 403);
  EXPECT_EQ(Post("/api/cancel", body, id, without("content-type")).status, 403);
  auto wrong = h;
  wrong["x-outpost-csrf"] = csrf + "x";
  EXPECT_EQ(Post("/api/cancel", body, id, wrong).status, 403);
  auto foreign = h;
  foreign["origin"] = "http://attacker.example";
  EXPECT_EQ(Post("/api/cancel", body, id, foreign).status, 403);
  auto cross = h;
  cross["sec-fetch-site"] = "cross-site";
  EXPECT_EQ(Post("/api/cancel", body, id, cross).status, 403);
  auto referred = without("origin");
  referred["referer"] = "http://attacker.example/page";
  EXPECT_EQ(Post("/api/cancel", body, id, referred).status, 403);
  EXPECT_EQ(dash_->counters().csrf_refused, 6u);
  json shown = Op({{"op", "run.show"}, {"id", run}});
  EXPECT_FALSE(shown["run"]["cancel_requested"].get<bool>());

  // A viewer passes the CSRF checks and is still refused by its role.
  auto [vid, vcsrf] = Login("victor");
  HttpReply v = Post("/api/cancel", body, vid, Same(vcsrf));
  EXPECT_EQ(v.status, 403) << v.body;
  EXPECT_NE(v.body.find("viewer"), std::string::npos) << v.body;

  // Malformed bodies are refused with the field named.
  HttpReply bad = Post("/api/approve", {{"id", run}, {"task", 7}}, id, h);
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("task"), std::string::npos) << bad.body;

  HttpReply ok = Post("/api/cancel", body, id, h);
  EXPECT_EQ(ok.status, 200) << ok.body;
  shown = Op({{"op", "run.show"}, {"id", run}});
  EXPECT_TRUE(shown["run"]["cancel_requested"].get<bool>());
  json audit = Op({{"op", "events"}, {"limit", 10}});
  EXPECT_NE(audit.dump().find("\"author\":\"alice\""), std::string::npos) << audit.dump();
}

TEST_F(DashboardTest, TheFleetIsFilteredAndPagedAtTheHub) {
  for (int i = 0; i < 250; ++i) {
    char name[32];
    snprintf(name, sizeof name, "site-%03d", i);
    AddSite(name, i % 5 == 0 ? "camera" : "gw");
  }
  auto [id, csrf] = Login("victor");
  json p = json::parse(Get("/api/fleet", {{"offset", "100"}, {"limit", "100"}}, id).body);
  EXPECT_EQ(p["matched"], 250);
  ASSERT_EQ(p["sites"].size(), 100u);
  EXPECT_EQ(p["sites"][0]["name"], "site-100");
  EXPECT_EQ(p["totals"]["offline"], 250);
  p = json::parse(Get("/api/fleet", {{"q", "role=camera"}, {"offset", "40"}}, id).body);
  EXPECT_EQ(p["matched"], 50);
  ASSERT_EQ(p["sites"].size(), 10u);
  EXPECT_EQ(p["sites"][0]["name"], "site-200");
  p = json::parse(Get("/api/fleet", {{"state", "online"}}, id).body);
  EXPECT_EQ(p["matched"], 0);
  EXPECT_EQ(Get("/api/fleet", {{"state", "asleep"}}, id).status, 400);
  EXPECT_EQ(Get("/api/fleet", {{"limit", "-1"}}, id).status, 400);
  EXPECT_EQ(Get("/api/fleet", {{"offset", "1e3"}}, id).status, 400);
  p = json::parse(Get("/api/fleet", {{"limit", "100000"}}, id).body);
  EXPECT_EQ(p["sites"].size(), 250u);
  EXPECT_EQ(p["limit"], 500);  // capped
}

TEST_F(DashboardTest, ARunShowsItsGraphWhileItsDefinitionHolds) {
  AddSite("plant-1", "gw");
  const std::string run = StartRun("plant-1");
  auto [id, csrf] = Login("victor");
  json r = json::parse(Get("/api/run", {{"id", run}}, id).body);
  ASSERT_TRUE(r["graph"].is_object()) << r.dump();
  EXPECT_EQ(r["graph"]["tasks"][1]["id"], "gate");
  EXPECT_EQ(r["graph"]["tasks"][1]["needs"], json::array({"fetch"}));
  EXPECT_TRUE(r["graph"]["tasks"][1]["approval"].get<bool>());
  json a = Op({{"op", "workflow.apply"}, {"source", std::string(kWf) + "  - id: more\n    run: [true]\n"},
               {"target", json::object()}});
  ASSERT_TRUE(a["ok"].get<bool>()) << a.dump();
  r = json::parse(Get("/api/run", {{"id", run}}, id).body);
  EXPECT_TRUE(r["graph"].is_null());
  EXPECT_EQ(Get("/api/run", {{"id", "no-such-run"}}, id).status, 404);
}

}  // namespace
}  // namespace outpost
