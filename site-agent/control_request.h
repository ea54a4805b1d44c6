// ControlRequest: one request on the agent's local control socket, decoded once at the
// edge and type-checked (the protocol is in common/protocol/control.h and
// docs/architecture.md, "Local control").
//
// Every field keeps one type whatever the op; DecodeControlRequest checks each field it
// knows for type and range, and the fields the op requires for presence, and its error
// names the field. Unknown fields are ignored, unknown ops refused. The handlers in
// site-agent/control_server.cpp read only this struct.
//
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace outpost {

struct ControlRequest {
  std::string op;
  std::string id, task, source, file, workflow, by;
  std::map<std::string, std::string> params;
  std::optional<int> priority;
  bool reject = false;
  size_t limit = 100;
  int attempt = 0;
};

const std::vector<std::string>& ControlOps();

Result<ControlRequest> DecodeControlRequest(const nlohmann::json& request);

}  // namespace outpost
