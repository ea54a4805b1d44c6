// outpostctl workflow ...: checking a workflow file and its schedule (no agent or hub
// needed), placing definitions on the fleet through the hub, and listing what runs where.
#include <iostream>
#include <string>

#include "cli/commands.h"
#include "cli/signing.h"
#include "common/trust.h"
#include "common/clock.h"
#include "common/workflow/cron.h"
#include "common/workflow/workflow.h"

namespace outpost::cli {
namespace {

using json = nlohmann::json;

// Where `workflow schedule` starts counting: now, or just before --from (a tick exactly
// at --from is included). False (printed) if --from is not a time.
bool ScheduleStart(const Args& a, TimeMs* from) {
  *from = SystemClock().Now();
  if (a.from.empty()) return true;
  auto t = ParseIsoTime(a.from);
  if (!t.ok()) {
    PrintError("--from: " + t.status().message());
    return false;
  }
  *from = *t - 1;
  return true;
}

// Up to `count` fire times after `from`, as local ISO-8601 times.
json NextFireTimes(const CronSpec& spec, const TimeZone& tz, TimeMs from, int count) {
  json times = json::array();
  TimeMs t = from;
  for (int i = 0; i < count; ++i) {
    t = NextFire(spec, tz, t);
    if (t == 0) break;
    times.push_back(FormatLocal(t, tz));
  }
  return times;
}

int Apply(const Args& a, HubClient& hub, const std::string& file) {
  auto def = LoadWorkflowFile(file);
  if (!def.ok()) {
    PrintWorkflowErrors(def.status());
    return kExitUsage;
  }
  json target;
  std::string err;
  if (!ToSelector(a.target, &target, &err)) return Usage(err);
  json req = {{"op", "workflow.apply"}, {"source", def->source}, {"file", file}, {"target", target}};
  int code = kExitOk;
  if (auto key = LoadOperatorSigningKey(a, &code)) {
    json signed_json;
    if (int c = SignApply(*key, def->name, def->source, &signed_json); c != kExitOk) return c;
    req["signed"] = signed_json;
  } else if (code != kExitOk) {
    return code;
  }
  Reply r = hub.Call(req);
  if (!r.ok()) return r.code;
  if (a.as_json) {
    PrintJson(r.body);
    return kExitOk;
  }
  std::cout << "workflow " << Cell(r.body["workflow"]) << " (" << Cell(r.body["hash"]).substr(0, 12)
            << ") placed on " << r.body["sites"].size() << " site(s): ";
  for (const auto& s : r.body["sites"]) std::cout << s.get<std::string>() << " ";
  std::cout << "\n";
  return kExitOk;
}

int HubList(const Args& a, HubClient& hub) {
  Reply r = hub.Call({{"op", "workflow.list"}});
  if (!r.ok()) return r.code;
  PrintResult(a.as_json, r.body["workflows"], PrintHubWorkflows);
  return kExitOk;
}

int Remove(const Args& a, HubClient& hub, const std::string& name) {
  Reply r = hub.Call({{"op", "workflow.remove"}, {"name", name}});
  if (!r.ok()) return r.code;
  if (a.as_json) {
    PrintJson(r.body);
  } else {
    std::cout << "workflow " << name << " removed from " << r.body["sites"].size() << " site(s)\n";
  }
  return kExitOk;
}

}  // namespace

int WorkflowValidate(const Args& a, const std::string& file) {
  auto def = LoadWorkflowFile(file);
  if (!def.ok()) {
    if (a.as_json) {
      PrintJson({{"valid", false}, {"errors", def.status().message()}});
    } else {
      PrintWorkflowErrors(def.status());
    }
    return kExitUsage;
  }
  if (a.as_json) {
    PrintJson({{"valid", true},
               {"name", def->name},
               {"hash", def->hash},
               {"digest", ContentDigest(def->source)},
               {"tasks", def->tasks.size()}});
  } else {
    std::cout << file << ": ok (workflow '" << def->name << "', " << def->tasks.size()
              << " tasks, hash " << def->hash << ")\n"
              << "digest " << ContentDigest(def->source)
              << " (what signatures bind to; a policy may name it as digest:HEX)\n";
  }
  return kExitOk;
}

// The next fire times of FILE's schedule, so a schedule can be checked before it is
// deployed.
int WorkflowSchedule(const Args& a, const std::string& file) {
  auto def = LoadWorkflowFile(file);
  if (!def.ok()) {
    PrintWorkflowErrors(def.status());
    return kExitUsage;
  }
  if (!def->schedule) {
    PrintError(file + ": workflow '" + def->name + "' has no schedule");
    return kExitUsage;
  }
  auto tz = TimeZone::Load(def->schedule->timezone);
  if (!tz.ok()) {
    PrintError(file + ": " + tz.status().message());
    return kExitUsage;
  }
  auto spec = ParseCron(def->schedule->cron);
  if (!spec.ok()) {
    PrintError(file + ": " + spec.status().message());
    return kExitUsage;
  }
  TimeMs from = 0;
  if (!ScheduleStart(a, &from)) return kExitUsage;
  json times = NextFireTimes(*spec, *tz, from, a.count);
  if (a.as_json) {
    PrintJson({{"workflow", def->name},
               {"cron", def->schedule->cron},
               {"timezone", tz->name()},
               {"catch_up", CatchUpName(def->schedule->catch_up)},
               {"overlap", OverlapName(def->schedule->overlap)},
               {"next", times}});
  } else {
    for (const auto& s : times) std::cout << s.get<std::string>() << "\n";
  }
  return kExitOk;
}

int HubWorkflowCommand(const Args& a, HubClient& hub) {
  const auto& w = a.words;
  if (w[1] == "apply" && w.size() == 3) return Apply(a, hub, w[2]);
  if (w[1] == "list" && w.size() == 2) return HubList(a, hub);
  if (w[1] == "remove" && w.size() == 3) return Remove(a, hub, w[2]);
  return Usage("unknown workflow command");
}

int LocalWorkflowList(const Args& a, const LocalClient& agent) {
  Reply r = agent.Call({{"op", "workflow.list"}});
  if (!r.ok()) return r.code;
  PrintResult(a.as_json, r.body["workflows"], PrintLocalWorkflows);
  return kExitOk;
}

}  // namespace outpost::cli
