// OperatorRequest: one operator API request, decoded once at the edge and type-checked.
//
// The operator API (docs/protocol.md, "Operator API") is one JSON object per request with
// an "op" and fields that keep one type whatever the op (a "name" is always a string,
// "params" always an object of strings). DecodeOperatorRequest checks every field it knows
// for type and range, and the fields the op requires for presence; an error names the
// field. Unknown fields are ignored (a newer outpostctl may send more), unknown ops refused.
// The handlers in HubCore read only this struct, never the raw JSON.
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
#include "common/trust.h"

namespace outpost {

// Longest request id an operator may choose.
inline constexpr size_t kMaxRequestIdBytes = 128;

struct OperatorRequest {
  std::string op;
  // Sites.
  std::string name, key, as;
  std::map<std::string, std::string> labels, set;
  std::vector<std::string> remove;
  bool purge = false;
  // Workflows.
  std::string source, file;
  std::map<std::string, std::string> target;
  // Runs.
  std::string workflow, request, site, id, task, reason, state;
  std::map<std::string, std::string> params;
  std::optional<int> priority;
  bool reject = false;
  std::optional<size_t> limit;
  // run.list: the page after this run id ("next" of the page before).
  std::string after;
  // Trust (docs/security.md): the operator's signed statement for this request
  // ("signed"), and a root-signed fleet policy ("policy", policy.push).
  std::optional<Signed> signed_stmt;
  std::optional<Signed> policy;
  // Artifacts and bundles (docs/protocol.md): base64 bytes ("data"; a bundle volume's
  // head in "head" and its records in "records"), digests, sizes and positions.
  std::string data, head, digest;
  std::vector<std::string> records, chunks;
  uint64_t size = 0;
  uint32_t volume = 0, index = 0;
  // run.start: secret params, each sealed to each target site: param -> site key -> box.
  std::map<std::string, std::map<std::string, std::string>> secrets;
};

// What an operator may do at the hub (defence in depth: sites check signatures).
// viewer: status, lists, shows, logs, events; operator: also run start, cancel and
// approve; admin: everything (sites, workflows, policies).
enum class OperatorRole : uint8_t { kViewer = 0, kOperator = 1, kAdmin = 2 };
const char* OperatorRoleName(OperatorRole r);
std::optional<OperatorRole> ParseOperatorRole(const std::string& s);
OperatorRole RequiredRole(const std::string& op);

// The ops the hub knows, for the fuzzer and the docs test.
const std::vector<std::string>& OperatorOps();

// `max_list` bounds "limit".
Result<OperatorRequest> DecodeOperatorRequest(const nlohmann::json& request, size_t max_list);

}  // namespace outpost
