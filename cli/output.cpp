// Output: the help text, errors, --json output and the tables (see output.h).
#include "cli/output.h"

#include <cstdio>
#include <iostream>

namespace outpost::cli {
namespace {

using json = nlohmann::json;

// Printed by -h and --help, and after a usage error. Some lines pass the column limit:
// they are printed as they are.
constexpr char kHelp[] =
    R"(usage: outpostctl [--hub-dir DIR | --hub ENDPOINT --hub-key KEY --key FILE] [--json] COMMAND
       outpostctl --local [--data-dir DIR | --socket PATH] [--json] COMMAND

fleet commands (through the hub's operator endpoint):
  site list                                   every site: state, online, labels, backlog
  site show NAME                              a site, with placements it refused and its policy
  site events NAME [--limit N]                its newest events as the hub has them (refusals say why)
  site add NAME --key PUB [--label k=v]...    enroll an agent's public key (or a file holding it)
  site accept NAME [--as NEW] [--label k=v]...  enroll a pending site (hub --accept-unknown)
  site revoke NAME                            refuse the site from now on; cuts its open link
  site remove NAME [--purge]                  forget a revoked or pending site (its name and key can
                                              be enrolled again); --purge drops its history too
  site label NAME k=v... [k-]...              set (k=v) or remove (k-) labels; placement follows
  workflow apply FILE [--target k=v[,k=v]] [--signing-key KEY]
                                              place a definition on every site matching the target
  workflow list | workflow remove NAME
  run start WORKFLOW [--site NAME | --target SELECTOR] [--param k=v | --param-file k=FILE]...
                  [--priority N] [--request ID] [--signing-key KEY [--expires 7d]]
                  [--wait [--timeout SECONDS]]   with --wait: progress on stderr; exit 6 at the timeout
  run list [--site S] [--workflow W] [--state X] [--limit N] [--after ID]
  run show ID | run logs ID TASK | run cancel ID
  run approve ID TASK [--reject]              decide an approval gate (delivered when the site is reachable)
                                              (cancel and approve take --signing-key KEY [--expires 1d])
  status                                      fleet overview: online/offline, last seen, backlog
  events [--limit N]                          the hub's audit log (enrollments, online/offline...)
  dashboard login                             a one-time link to the hub's web dashboard
  key create FILE                             make an operator keypair FILE.key / FILE.pub
  policy push FILE | policy show              hand a root-signed fleet policy to every site (admin)
  artifact push FILE [--name NAME]            store a file at the hub by content; prints its digest
                                              (workflows name it under artifacts:) (admin)
  artifact list                               artifacts at the hub and, per site, cached/transferring
  bundle export --site NAME --out FILE [--volume-size 700M]
                                              the site's commands and missing artifacts for carried
                                              media (FILE, or FILE.001... when split into volumes)
  bundle import FILE...                       a site's return bundle: its events and acknowledgements

bundles (docs/operations.md, "An air-gapped site"):
  bundle show FILE...                         what a volume holds and whether it is whole (no keys needed)

trust (docs/security.md; no agent or hub needed):
  trust keygen FILE                           make an Ed25519 signing key FILE (0600) and FILE.pub
  trust sign-policy FILE --root-key KEY [--out F] [--expires 365d]
                                              sign a fleet policy with the root key (offline)
  trust show FILE [--root-key PUB]            what a signed file holds, whether it verifies (and, with
                                              --root-key, whether that key signed it), when it expires
  With --signing-key FILE ($OUTPOST_SIGNING_KEY), workflow apply, run start, cancel and
  approve are signed (--expires: how long a start (7d), cancel or approval (1d) is valid).
  --param-file NAME=FILE gives a param's value from a file, its last newline dropped (for
  secrets: off the command line);
  secret params are sealed to each target site, the hub never sees them.

local commands (--local, the agent on this machine, no hub needed):
  run start FILE|NAME [--param k=v]... [--priority N] [--wait]
                                              start a run of a file, or by name of a workflow
                                              placed here or in the agent's --workflows; print its id
  workflow list                               workflows this site runs by name, their schedules
  run list [--limit N] | run show ID | run logs ID TASK [--attempt N] | run cancel ID
  run approve ID TASK [--reject]              decide an approval gate on this site
  status
  bundle import FILE...                       apply bundle volumes from the hub (any order, any number
                                              of times); artifacts they carry go into the cache
  bundle export --out FILE                    the return bundle for the hub: events it lacks and the
                                              commands' watermark
  artifact list                               the site's artifact cache: cached, transferring, missing
  workflow validate FILE                      check a workflow file (no agent or hub needed)
  retention trim                              remove finished runs' output now, by the agent's
                                              retain-output and output-budget
  workflow schedule FILE [--from ISO-8601] [--count N]
                                              the next N (10) fire times of its schedule, one
                                              ISO-8601 time with offset a line

options:
  --hub-dir DIR    a hub's data directory on this machine: endpoint, hub key and admin key
                   are read from it (default $OUTPOST_HUB_DIR)
  --hub ENDPOINT   the hub's operator endpoint (default $OUTPOST_HUB), e.g. tcp://hub:7401
  --hub-key KEY    the hub's public key or a file holding it (default $OUTPOST_HUB_KEY)
  --key FILE       this operator's secret key file NAME.key, NAME.pub beside it ($OUTPOST_KEY)
  --local          talk to the agent on this machine
  --data-dir DIR   the agent's data directory (default $OUTPOST_DATA_DIR or /var/lib/outpost-agent)
  --socket PATH    the agent's control socket (default DIR/agent.sock)
  --json           machine-readable output
  --timeout-ms N   how long to wait for the agent or hub (default 30000)
exit codes (hub and --local alike): 0 ok; 1 the operation failed (or, with --wait, a run
            did not succeed); 2 usage or invalid input; 3 agent or hub unreachable, or
            our key refused; 4 no such site, workflow or run; 5 conflict with the current
            state; 6 --wait gave up after --timeout; 7 our role at the hub does not allow it
with --json, errors are printed as {"ok": false, "error": ...} on stdout
)";

std::string OrDash(const json& j) { return j.is_string() ? j.get<std::string>() : "-"; }

}  // namespace

int ExitCodeForHubError(const std::string& code) {
  if (code == "not_found") return kExitNotFound;
  if (code == "conflict") return kExitConflict;
  if (code == "invalid") return kExitUsage;
  if (code == "forbidden") return kExitForbidden;
  return kExitFailed;
}

namespace {
bool json_errors = false;
}  // namespace

void SetJsonErrors(bool on) { json_errors = on; }

namespace {
std::string error_context;
}  // namespace

void SetErrorContext(std::string context) { error_context = std::move(context); }

void PrintError(std::string_view bare) {
  const std::string message = error_context + std::string(bare);
  if (json_errors) {
    // With --json a script reads stdout: the error is a JSON object there too.
    std::cout << nlohmann::json{{"ok", false}, {"error", std::string(message)}}.dump(
                     -1, ' ', false, nlohmann::json::error_handler_t::replace)
              << "\n";
    return;
  }
  std::cerr << "outpostctl: " << message << "\n";
}

void PrintWorkflowErrors(const Status& status) {
  if (json_errors) {
    PrintError(status.message());
    return;
  }
  std::cerr << status.message() << "\n";
}

int Usage(const std::string& why) {
  if (json_errors) {
    PrintError(why);  // a script gets the reason as JSON, not the help text
    return kExitUsage;
  }
  std::cerr << "outpostctl: " << why << "\n\n" << kHelp;
  return kExitUsage;
}

void PrintHelp() { std::cout << kHelp; }

void PrintJson(const json& j) {
  std::cout << j.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
}

void PrintResult(bool as_json, const json& j, TablePrinter table) {
  if (as_json) {
    PrintJson(j);
  } else {
    table(j);
  }
}

std::string Cell(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_null()) return "-";
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string Labels(const json& labels) {
  std::string out;
  for (const auto& [k, v] : labels.items()) out += (out.empty() ? "" : ",") + k + "=" + Cell(v);
  return out.empty() ? "-" : out;
}

void PrintRunTable(const json& run) {
  printf("run       %s\n", run["id"].get<std::string>().c_str());
  printf("workflow  %s\n", run["workflow"].get<std::string>().c_str());
  printf("state     %s\n", run["state"].get<std::string>().c_str());
  printf("created   %s\n", OrDash(run["created"]).c_str());
  printf("finished  %s\n", OrDash(run["finished"]).c_str());
  if (!run["message"].get<std::string>().empty()) {
    printf("message   %s\n", run["message"].get<std::string>().c_str());
  }
  if (run.contains("trigger") && !run["trigger"].get<std::string>().empty()) {
    printf("trigger   %s\n", run["trigger"].get<std::string>().c_str());
  }
  if (run.contains("outcome") && !run["outcome"].get<std::string>().empty()) {
    printf("outcome   %s before compensation\n", run["outcome"].get<std::string>().c_str());
  }
  printf("\n%-24s %-10s %-8s %-5s %s\n", "TASK", "STATE", "ATTEMPTS", "EXIT", "MESSAGE");
  for (const auto& t : run["tasks"]) {
    std::string exit = t["exit_code"].is_number() ? std::to_string(t["exit_code"].get<int>()) : "-";
    if (t["signal"].get<int>() != 0) exit = "sig" + std::to_string(t["signal"].get<int>());
    printf("%-24s %-10s %-8d %-5s %s\n", t["id"].get<std::string>().c_str(),
           t["state"].get<std::string>().c_str(), t["attempts"].get<int>(), exit.c_str(),
           t["message"].get<std::string>().c_str());
  }
}

void PrintHubRun(const json& run) {
  printf("site      %s\n", run["site"].get<std::string>().c_str());
  printf("request   %s\n", Cell(run["request"]).c_str());
  if (!run["delivered"].get<bool>()) printf("delivered no (the site has not reported it yet)\n");
  PrintRunTable(run);
}

void PrintLocalRunList(const json& runs) {
  printf("%-40s %-20s %-10s %s\n", "RUN", "WORKFLOW", "STATE", "CREATED");
  for (const auto& r : runs) {
    printf("%-40s %-20s %-10s %s\n", r["id"].get<std::string>().c_str(),
           r["workflow"].get<std::string>().c_str(), r["state"].get<std::string>().c_str(),
           r["created"].get<std::string>().c_str());
  }
}

void PrintHubRunList(const json& runs) {
  printf("%-40s %-14s %-18s %-10s %-6s %s\n", "RUN", "SITE", "WORKFLOW", "STATE", "TASKS",
         "CREATED");
  for (const auto& r : runs) {
    std::string tasks = Cell(r["tasks_succeeded"]) + "/" + Cell(r["tasks_total"]);
    printf("%-40s %-14s %-18s %-10s %-6s %s\n", Cell(r["id"]).c_str(), Cell(r["site"]).c_str(),
           Cell(r["workflow"]).c_str(), Cell(r["state"]).c_str(), tasks.c_str(),
           Cell(r["created"]).c_str());
  }
}

void PrintSites(const json& sites) {
  printf("%-20s %-9s %-8s %-25s %-8s %-8s %s\n", "SITE", "STATE", "ONLINE", "LAST SEEN", "BEHIND",
         "PENDING", "LABELS");
  for (const auto& s : sites) {
    printf("%-20s %-9s %-8s %-25s %-8s %-8s %s\n", Cell(s["name"]).c_str(),
           Cell(s["state"]).c_str(), s["online"].get<bool>() ? "yes" : "no",
           Cell(s["last_seen"]).c_str(), Cell(s["events_behind"]).c_str(),
           Cell(s["commands_pending"]).c_str(), Labels(s["labels"]).c_str());
  }
}

void PrintLocalWorkflows(const json& workflows) {
  printf("%-24s %-14s %-7s %-20s %s\n", "WORKFLOW", "HASH", "SOURCE", "SCHEDULE", "NEXT");
  for (const auto& d : workflows) {
    std::string cron = "-", next = "-";
    if (d.contains("schedule")) {
      cron = d["schedule"]["cron"].get<std::string>();
      next = d["schedule"]["next"].get<std::string>();
    }
    printf("%-24s %-14s %-7s %-20s %s\n", d["name"].get<std::string>().c_str(),
           d["hash"].get<std::string>().substr(0, 12).c_str(),
           d.value("source", std::string("-")).c_str(), cron.c_str(), next.c_str());
  }
}

void PrintHubWorkflows(const json& workflows) {
  printf("%-24s %-14s %-24s %s\n", "WORKFLOW", "HASH", "TARGET", "SITES");
  for (const auto& d : workflows) {
    std::string sites;
    for (const auto& s : d["sites"]) sites += (sites.empty() ? "" : ",") + s.get<std::string>();
    printf("%-24s %-14s %-24s %s\n", Cell(d["name"]).c_str(), Cell(d["hash"]).substr(0, 12).c_str(),
           Labels(d["target"]).c_str(), sites.empty() ? "-" : sites.c_str());
  }
}

void PrintHubStatus(const json& status) {
  const json& s = status["sites"];
  printf("sites     %s enrolled: %s online, %s offline; %s pending, %s revoked\n",
         Cell(s["enrolled"]).c_str(), Cell(s["online"]).c_str(), Cell(s["offline"]).c_str(),
         Cell(s["pending"]).c_str(), Cell(s["revoked"]).c_str());
  printf("backlog   %s events not yet at the hub, %s commands not yet applied\n",
         Cell(status["events_behind"]).c_str(), Cell(status["commands_pending"]).c_str());
  printf("runs      %s\n", Labels(status["runs"]).c_str());
  printf("workflows %s\n\n", Cell(status["workflows"]).c_str());
  printf("%-20s %-8s %-25s %-8s %-8s %-8s %s\n", "SITE", "ONLINE", "LAST SEEN", "EVENTS", "BEHIND",
         "PENDING", "LABELS");
  for (const auto& r : status["site_rows"]) {
    printf("%-20s %-8s %-25s %-8s %-8s %-8s %s\n", Cell(r["name"]).c_str(),
           r["online"].get<bool>() ? "yes" : "no", Cell(r["last_seen"]).c_str(),
           Cell(r["events_received"]).c_str(), Cell(r["events_behind"]).c_str(),
           Cell(r["commands_pending"]).c_str(), Labels(r["labels"]).c_str());
  }
}

}  // namespace outpost::cli
