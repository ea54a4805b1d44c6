// Dashboard: the hub's web pages for operators (docs/operations.md, "The dashboard"),
// served on the hub's HTTP listener beside /metrics.
//
// Logging in: an operator runs `outpostctl dashboard login`, which asks the hub over the
// operator endpoint (CURVE, the operator's own key) for a one-time login link. Opening
// the link within two minutes starts a browser session as that operator, with the role
// the hub's operators/ directory gives them; it lasts 8 hours idle or 24 hours at most,
// and ends at once if the operator's key is removed. Nothing but /login answers without
// a session: every page, script and query gets 401.
//
// The pages are one application (hub/dashboard/: index.html, app.js, app.css, compiled
// into the binary; nothing is fetched from elsewhere) that reads JSON under /api/ and
// polls it every two seconds. Reads and the two actions go through HubCore::OnOperator
// as the logged-in operator, so roles, counters and the audit log apply as for
// outpostctl. Cancel and approve are POSTs that must carry the session's CSRF token in
// X-Outpost-CSRF and come from the page's own origin; the session cookie is HttpOnly and
// SameSite=Strict. Every other request is read-only.
//
// A site with a trust root (docs/security.md) applies only commands an operator signed;
// a browser holds no operator key (and the hub that serves the page is exactly what a
// trust root does not trust), so the page's cancel and approve reach such a site
// unsigned and it rejects them. The page says so and shows the outpostctl command.
//
// Sans-I/O: the daemon passes each request, the time, and a source of random tokens.
//
// Thread-safety: none; the hub's driver thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/transport/http_listener.h"
#include "hub/hub_core.h"

namespace outpost {

struct DashboardCounters {
  uint64_t logins = 0;           // login links used
  uint64_t logins_refused = 0;   // unknown, used or expired links
  uint64_t unauthenticated = 0;  // requests without a valid session (401)
  uint64_t csrf_refused = 0;     // actions without the session's token or from elsewhere
  uint64_t actions = 0;          // cancels and approvals passed to the core
};

class Dashboard {
 public:
  struct Options {
    DurationMs link_valid = 120'000;
    DurationMs idle = 8LL * 3600 * 1000;
    DurationMs lifetime = 24LL * 3600 * 1000;
    size_t max_sessions = 256;  // the oldest is dropped beyond this
    size_t max_links = 64;
    size_t page_max = 500;      // rows a page may ask for
  };
  // The operator's current role, or nullopt once their key is gone from operators/.
  using RoleOf = std::function<std::optional<OperatorRole>(const std::string& name)>;
  // 32 random bytes as 64 hex digits (the daemon uses libsodium).
  using Token = std::function<std::string()>;

  Dashboard(Options options, RoleOf role_of, Token token);

  // A one-time login path ("/login?token=...") for `operator_name`.
  std::string IssueLink(const std::string& operator_name, TimeMs now);

  // Answers a request under /login, /logout, /ui/ or /api/; `out` receives what the core
  // sends to sites for an action.
  HttpReply Handle(const HttpRequest& request, HubCore& core, TimeMs now, HubOutput* out);
  static bool Serves(const std::string& path);

  const DashboardCounters& counters() const { return counters_; }
  size_t sessions() const { return sessions_.size(); }

 private:
  struct Session {
    std::string operator_name;
    std::string csrf;
    TimeMs started = 0;
    TimeMs used = 0;
  };
  struct Link {
    std::string operator_name;
    TimeMs expires = 0;
  };

  HttpReply Login(const HttpRequest& r, TimeMs now);
  HttpReply Api(const HttpRequest& r, const std::string& who, OperatorRole role, const Session& s,
                HubCore& core, TimeMs now, HubOutput* out);
  HttpReply Action(const HttpRequest& r, const std::string& who, OperatorRole role,
                   const Session& s, HubCore& core, HubOutput* out);
  // The session a request's cookie names, if it is valid now (touches it).
  Session* SessionOf(const HttpRequest& r, TimeMs now);
  void Expire(TimeMs now);

  Options options_;
  RoleOf role_of_;
  Token token_;
  std::map<std::string, Session> sessions_;  // by session id
  std::map<std::string, Link> links_;        // by login token
  DashboardCounters counters_;
};

// The fleet page's rows (exposed for tests): sites whose name or a label contains `q`,
// in `state` ("" any, "online", "offline", "pending", "revoked"), `limit` from `offset`,
// by name; with the fleet's totals.
nlohmann::json FleetPage(const HubCore& core, const std::string& q, const std::string& state,
                         size_t offset, size_t limit);

// A run's task graph from its workflow's definition when the hub still holds the version
// it ran (same hash): each task's needs, and whether it fans out, compensates or is an
// approval gate. Null when the definition changed or is gone.
nlohmann::json RunGraph(const HubCore& core, const std::string& workflow, const std::string& hash);

// The schedules of the workflows placed on `site`, each with its next three ticks after
// `now` in the schedule's zone.
nlohmann::json SiteSchedules(const HubCore& core, const std::string& site, TimeMs now);

// The compiled-in page files: "/ui/" (index.html), "/ui/app.js", "/ui/app.css".
struct DashboardAsset {
  const char* path;
  const char* content_type;
  const char* body;
};
const DashboardAsset* FindDashboardAsset(const std::string& path);

}  // namespace outpost
