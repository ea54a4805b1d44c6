// JsonFields: the one typed reader for JSON requests (operator API, local control socket).
//
// A request is decoded once, at the edge, into a struct whose fields were checked for type
// and range; handlers never touch raw JSON. Each read names the field in its error
// ("'limit' must be an integer from 1 to 1000, not a string"), absent optional fields keep
// the caller's default, and nothing here throws: every nlohmann call used is one that
// cannot (type checked before get<>, no value(), no at()).
//
//   JsonFields f(request);                      // request must be an object (check ok())
//   std::string id;  int64_t limit = 50;  bool reject = false;
//   Status s = f.Str("id", &id, kRequired)
//                .And(f.Int("limit", &limit, 1, 1000))
//                .And(f.Bool("reject", &reject));
//
// SafeDump() writes JSON that may hold text from the network (invalid UTF-8 is replaced,
// never thrown on); SafeText() (common/text.h) makes such text safe for a log line.
//
// Thread-safety: a JsonFields reads one object it does not own; no shared state.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "common/text.h"

namespace outpost {

inline constexpr bool kRequired = true;

// Bounds for strings read from requests (a request frame is itself bounded).
inline constexpr size_t kMaxFieldString = 1 << 20;  // 1 MiB: a workflow source fits
inline constexpr size_t kMaxMapEntries = 1024;

class JsonFields {
 public:
  explicit JsonFields(const nlohmann::json& object) : j_(object) {}

  bool is_object() const { return j_.is_object(); }

  Status Str(const char* key, std::string* out, bool required = false,
             size_t max_len = kMaxFieldString) const;
  Status Int(const char* key, int64_t* out, int64_t lo, int64_t hi, bool required = false) const;
  Status Bool(const char* key, bool* out, bool required = false) const;
  // {"k": "v", ...}: every value a string.
  Status StrMap(const char* key, std::map<std::string, std::string>* out,
                bool required = false) const;
  // ["a", "b"]: every element a string.
  Status StrList(const char* key, std::vector<std::string>* out, bool required = false) const;
  bool Has(const char* key) const;
  // The raw value of `key` (nullptr when absent), for a nested object a caller decodes
  // with its own typed reader.
  const nlohmann::json* Get(const char* key) const { return Find(key); }

 private:
  const nlohmann::json* Find(const char* key) const;
  const nlohmann::json& j_;
};

// Whether `text` nests arrays and objects at most `max_depth` deep (strings are skipped).
// Checked before parsing a request: nlohmann::json copies, compares and destroys values
// recursively, so a 100,000-deep array would exhaust the stack after it parsed.
bool JsonDepthWithin(std::string_view text, size_t max_depth);
inline constexpr size_t kMaxRequestDepth = 32;

// The error reply of the operator API and the control socket: {"ok": false, "error":
// SENTENCE, "code": CODE}. Codes: invalid, not_found, conflict, forbidden, internal.
nlohmann::json Error(const std::string& message, const char* code = "invalid");
// The code follows the status: NotFound -> not_found, AlreadyExists and
// FailedPrecondition -> conflict, PermissionDenied -> forbidden, storage failures ->
// internal, the rest invalid.
nlohmann::json Error(const Status& s);

// The JSON type's name as an operator would say it ("a string", "an integer", "null", ...).
const char* JsonTypeName(const nlohmann::json& v);

// dump() that never throws: invalid UTF-8 becomes U+FFFD.
std::string SafeDump(const nlohmann::json& j, int indent = -1);

}  // namespace outpost
