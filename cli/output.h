// Output: everything outpostctl prints, and the exit codes it returns.
//
// Results go to stdout: tables for people or, with --json, indented JSON. Errors go to
// stderr as "outpostctl: MESSAGE"; a usage error adds the help text. The exit codes
// below are the contract scripts rely on; the help text (output.cpp) lists them too.
//
// Thread-safety: writes the process's stdout and stderr; one thread.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/status.h"

namespace outpost::cli {

// Exit codes.
inline constexpr int kExitOk = 0;
// The operation failed, or (with --wait) a run did not succeed.
inline constexpr int kExitFailed = 1;
// Usage or invalid input: bad arguments, an invalid workflow file, the hub said "invalid".
inline constexpr int kExitUsage = 2;
// The agent or hub could not be reached or did not answer in time, or refused our key.
inline constexpr int kExitUnreachable = 3;
// No such site, workflow or run (the hub said "not_found").
inline constexpr int kExitNotFound = 4;
// Conflict with the current state (the hub said "conflict"; a key file already exists).
inline constexpr int kExitConflict = 5;
// --wait gave up after --timeout; the run goes on.
inline constexpr int kExitTimeout = 6;
// The operator's role at the hub does not allow the operation.
inline constexpr int kExitForbidden = 7;

// The exit code for the "code" of the hub's error reply.
int ExitCodeForHubError(const std::string& code);

// Errors, to stderr.
//
// "outpostctl: MESSAGE" on stderr; with SetJsonErrors(true) (--json) a JSON object
// {"ok": false, "error": MESSAGE} on stdout instead.
void PrintError(std::string_view message);
// Text PrintError puts before every message until reset with "" (the file a command of
// several files is working on, e.g. "to-ship.003: ").
void SetErrorContext(std::string context);
void SetJsonErrors(bool on);
// A workflow file's errors as the loader words them (they name the file and line).
void PrintWorkflowErrors(const Status& status);
// "outpostctl: WHY", a blank line and the help text; returns kExitUsage.
int Usage(const std::string& why);

// Results, to stdout.
//
// The help text (-h, --help).
void PrintHelp();
// --json output: indented, invalid UTF-8 replaced.
void PrintJson(const nlohmann::json& j);
// With --json (`as_json`) `j` as PrintJson prints it, else as the table `table`.
using TablePrinter = void (*)(const nlohmann::json&);
void PrintResult(bool as_json, const nlohmann::json& j, TablePrinter table);

// A table cell: a string as it is, null as "-", anything else as JSON.
std::string Cell(const nlohmann::json& j);
// Labels or a selector as "k=v,k=v", or "-" when there are none.
std::string Labels(const nlohmann::json& labels);

// Tables.
//
// A run (as the agent reports it) and its tasks.
void PrintRunTable(const nlohmann::json& run);
// A run as the hub sees it: its site and request, then PrintRunTable.
void PrintHubRun(const nlohmann::json& run);
// The runs of the agent here / of the fleet, one a line.
void PrintLocalRunList(const nlohmann::json& runs);
void PrintHubRunList(const nlohmann::json& runs);
// Sites: state, online, last seen, backlog, labels.
void PrintSites(const nlohmann::json& sites);
// The workflows the agent here runs by name / the hub has placed.
void PrintLocalWorkflows(const nlohmann::json& workflows);
void PrintHubWorkflows(const nlohmann::json& workflows);
// The hub's fleet overview (`status`).
void PrintHubStatus(const nlohmann::json& status);

}  // namespace outpost::cli
