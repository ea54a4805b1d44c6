#include "hub/operator_json.h"

namespace outpost {

using json = nlohmann::json;

json Error(const std::string& message, const char* code) {
  return {{"ok", false}, {"error", message}, {"code", code}};
}
json Error(const Status& s) {
  const char* code = "invalid";
  if (s.code() == Code::kNotFound) code = "not_found";
  if (s.code() == Code::kAlreadyExists) code = "conflict";
  if (s.code() == Code::kFailedPrecondition) code = "conflict";
  if (s.code() == Code::kIoError || s.code() == Code::kResourceExhausted ||
      s.code() == Code::kCorruption || s.code() == Code::kInternal) {
    code = "internal";
  }
  return Error(s.message(), code);
}

}  // namespace outpost
