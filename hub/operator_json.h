// The operator API's error replies (requests are read by hub/operator_request.h).
//
// Every reply is a JSON object with "ok"; an error reply adds "error" (a sentence for the
// operator) and "code" (invalid, not_found, conflict, internal).
//
// Thread-safety: free functions, no state.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace outpost {

nlohmann::json Error(const std::string& message, const char* code = "invalid");
// The code follows the status: NotFound -> not_found, AlreadyExists and
// FailedPrecondition -> conflict, storage failures -> internal, the rest invalid.
nlohmann::json Error(const Status& s);
}  // namespace outpost
