// The local control protocol: newline-delimited JSON over a unix stream socket.
//
// A client sends one request object per line and reads one response object per line:
//   {"op": "run.show", "id": "..."}  ->  {"ok": true, "run": {...}}
//                                    or  {"ok": false, "error": "..."}
// The socket lives in the agent's data directory with mode 0600; file permissions are
// the access control (docs/security.md). Lines are bounded (kMaxControlLine).
//
// Thread-safety: stateless functions.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "common/protocol/limits.h"
#include "common/status.h"

namespace outpost {


// Connects to the unix socket at `path`.
Result<int> ConnectUnix(const std::string& path);
// Creates, binds (mode 0600) and listens on a unix socket at `path`, replacing a stale one.
Result<int> ListenUnix(const std::string& path);

// Sends `request` and waits up to `timeout_ms` (-1: forever) for the response line.
// `pass_fd` >= 0 goes with the request's first bytes (SCM_RIGHTS): a file the caller
// opened with its own rights (bundle.import, bundle.export).
Result<nlohmann::json> ControlCall(const std::string& socket_path, const nlohmann::json& request,
                                   int timeout_ms, int pass_fd = -1);

}  // namespace outpost
