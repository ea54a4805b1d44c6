// outpostctl: the operator's command line. By default it talks to the hub's operator
// endpoint over CURVE (JSON requests, docs/protocol.md "Operator API"); with --local it
// talks to the agent on this machine through the control socket in its data directory.
//
// This file picks the command group by the command's words. Options: args.h; the round
// trip: client.h; the groups: commands.h; output and exit codes: output.h.
#include <string>
#include <string_view>

#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "cli/signing.h"

namespace outpost::cli {
namespace {

// The hub is resolved and dialled before the command is looked at.
int HubDispatch(const Args& a) {
  HubClient hub(a.timeout_ms);
  const HubAddress given = {
      .hub_dir = a.hub_dir, .endpoint = a.hub, .hub_key = a.hub_key, .key = a.key};
  if (int code = hub.Open(given); code != kExitOk) return code;
  const auto& w = a.words;
  if (w[0] == "status" && w.size() == 1) return HubStatus(a, hub);
  if (w[0] == "events" && w.size() == 1) return HubEvents(a, hub);
  if (w[0] == "dashboard" && w.size() == 2 && w[1] == "login") return DashboardLogin(a, hub);
  if (w[0] == "site" && w.size() >= 2) return SiteCommand(a, hub);
  if (w[0] == "workflow" && w.size() >= 2) return HubWorkflowCommand(a, hub);
  if (w[0] == "run" && w.size() >= 2) return HubRunCommand(a, hub);
  if (w[0] == "policy" && w.size() >= 2) return PolicyCommand(a, hub);
  if (w[0] == "bundle" && w.size() >= 2) return BundleCommand(a, &hub, nullptr);
  if (w[0] == "artifact" && w.size() >= 2) return ArtifactCommand(a, &hub, nullptr);
  return Usage("unknown command");
}

int LocalDispatch(const Args& a) {
  const LocalClient agent(a.socket, a.timeout_ms);
  const auto& w = a.words;
  if (w[0] == "status" && w.size() == 1) return LocalStatus(agent);
  if (w[0] == "workflow" && w.size() == 2 && w[1] == "list") return LocalWorkflowList(a, agent);
  if (w[0] == "retention" && w.size() == 2 && w[1] == "trim") return RetentionTrim(a, agent);
  if (w[0] == "run" && w.size() >= 2) return LocalRunCommand(a, agent);
  if (w[0] == "bundle" && w.size() >= 2) return BundleCommand(a, nullptr, &agent);
  if (w[0] == "artifact" && w.size() >= 2) return ArtifactCommand(a, nullptr, &agent);
  return Usage("unknown command");
}

int Dispatch(const Args& a) {
  const auto& w = a.words;
  if (w.empty()) return Usage("no command");
  // These need neither the agent nor the hub.
  if (w[0] == "workflow" && w.size() == 3 && w[1] == "validate") return WorkflowValidate(a, w[2]);
  if (w[0] == "workflow" && w.size() == 3 && w[1] == "schedule") return WorkflowSchedule(a, w[2]);
  if (w[0] == "key" && w.size() == 3 && w[1] == "create") return KeyCreate(a, w[2]);
  if (w[0] == "trust" && w.size() >= 2) return TrustCommand(a);
  if (w[0] == "bundle" && w.size() >= 3 && w[1] == "show") return BundleCommand(a, nullptr, nullptr);
  return a.local ? LocalDispatch(a) : HubDispatch(a);
}

}  // namespace

int Main(int argc, char** argv) {
  Args a;
  // --json anywhere makes even an argument error JSON.
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--json") SetJsonErrors(true);
  }
  if (std::string err = ParseArgs(argc, argv, &a); !err.empty()) return Usage(err);
  if (a.help) {
    PrintHelp();
    return kExitOk;
  }
  SetJsonErrors(a.as_json);
  return Dispatch(a);
}

}  // namespace outpost::cli

int main(int argc, char** argv) { return outpost::cli::Main(argc, argv); }
