// Commands: outpostctl's command groups, one file each; main.cpp picks one by the words.
//
//  - cmd_site.cpp      site list|show|add|accept|revoke|label (the hub)
//  - cmd_workflow.cpp  workflow validate|schedule (no agent or hub), apply|list|remove
//                      (the hub), list (--local)
//  - cmd_run.cpp       run start|list|show|logs|approve|cancel, on the hub or --local
//  - cmd_misc.cpp      status, events, key create, retention trim
//  - cmd_bundle.cpp    bundle export|import|show, artifact push|list (hub or --local)
//
// Each takes the parsed Args and the client for the agent or the hub, prints the result
// (output.h) and returns the exit code. A group function gets words[0] == its group and
// at least two words; it answers a subcommand it does not know with a usage error.
//
// Thread-safety: one thread, as the clients.
#pragma once

#include <string>

#include "cli/args.h"
#include "cli/client.h"

namespace outpost::cli {

// Hub commands (without --local).
int SiteCommand(const Args& a, HubClient& hub);
int HubWorkflowCommand(const Args& a, HubClient& hub);
int HubRunCommand(const Args& a, HubClient& hub);
int HubStatus(const Args& a, HubClient& hub);
int HubEvents(const Args& a, HubClient& hub);
int DashboardLogin(const Args& a, HubClient& hub);

// The agent on this machine (--local).
int LocalRunCommand(const Args& a, const LocalClient& agent);
int LocalWorkflowList(const Args& a, const LocalClient& agent);
int LocalStatus(const LocalClient& agent);
int RetentionTrim(const Args& a, const LocalClient& agent);

// Bundles and artifacts (cmd_bundle.cpp): exactly one of hub and agent is set.
int BundleCommand(const Args& a, HubClient* hub, const LocalClient* agent);
int ArtifactCommand(const Args& a, HubClient* hub, const LocalClient* agent);

// Neither agent nor hub needed.
int WorkflowValidate(const Args& a, const std::string& file);
int WorkflowSchedule(const Args& a, const std::string& file);
int KeyCreate(const Args& a, const std::string& path);

}  // namespace outpost::cli
