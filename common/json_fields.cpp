#include "common/json_fields.h"

namespace outpost {

using json = nlohmann::json;

namespace {

Status Bad(const char* key, const std::string& want, const json& got) {
  return Status::InvalidArgument(std::string("'") + key + "' must be " + want + ", not " +
                                 JsonTypeName(got));
}

Status Missing(const char* key) {
  return Status::InvalidArgument(std::string("'") + key + "' is required");
}

}  // namespace

json Error(const std::string& message, const char* code) {
  return {{"ok", false}, {"error", message}, {"code", code}};
}

json Error(const Status& s) {
  const char* code = "invalid";
  if (s.code() == Code::kNotFound) code = "not_found";
  if (s.code() == Code::kAlreadyExists || s.code() == Code::kFailedPrecondition) code = "conflict";
  if (s.code() == Code::kIoError || s.code() == Code::kResourceExhausted ||
      s.code() == Code::kCorruption || s.code() == Code::kInternal) {
    code = "internal";
  }
  if (s.code() == Code::kPermissionDenied) code = "forbidden";
  if (s.code() == Code::kAborted || s.code() == Code::kUnavailable) code = "retry";
  return Error(s.message(), code);
}

const char* JsonTypeName(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number with a fraction";
    case json::value_t::binary: return "binary";
    case json::value_t::discarded: return "invalid JSON";
  }
  return "unknown";
}

const json* JsonFields::Find(const char* key) const {
  if (!j_.is_object()) return nullptr;
  auto it = j_.find(key);
  if (it == j_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool JsonFields::Has(const char* key) const { return Find(key) != nullptr; }

Status JsonFields::Str(const char* key, std::string* out, bool required, size_t max_len) const {
  const json* v = Find(key);
  if (!v) return required ? Missing(key) : Status::Ok();
  if (!v->is_string()) return Bad(key, "a string", *v);
  const auto& s = v->get_ref<const std::string&>();
  if (s.size() > max_len) {
    return Status::InvalidArgument(std::string("'") + key + "' is longer than " +
                                   std::to_string(max_len) + " bytes");
  }
  if (required && s.empty()) return Missing(key);
  *out = s;
  return Status::Ok();
}

Status JsonFields::Int(const char* key, int64_t* out, int64_t lo, int64_t hi,
                       bool required) const {
  const json* v = Find(key);
  if (!v) return required ? Missing(key) : Status::Ok();
  const std::string want =
      "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX) || static_cast<int64_t>(u) > hi ||
        static_cast<int64_t>(u) < lo) {
      return Status::InvalidArgument(std::string("'") + key + "' must be " + want);
    }
    *out = static_cast<int64_t>(u);
    return Status::Ok();
  }
  if (!v->is_number_integer()) return Bad(key, want, *v);
  const int64_t i = v->get<int64_t>();
  if (i < lo || i > hi) return Status::InvalidArgument(std::string("'") + key + "' must be " + want);
  *out = i;
  return Status::Ok();
}

Status JsonFields::Bool(const char* key, bool* out, bool required) const {
  const json* v = Find(key);
  if (!v) return required ? Missing(key) : Status::Ok();
  if (!v->is_boolean()) return Bad(key, "true or false", *v);
  *out = v->get<bool>();
  return Status::Ok();
}

Status JsonFields::StrMap(const char* key, std::map<std::string, std::string>* out,
                          bool required) const {
  const json* v = Find(key);
  if (!v) return required ? Missing(key) : Status::Ok();
  if (!v->is_object()) return Bad(key, "an object of strings", *v);
  if (v->size() > kMaxMapEntries) {
    return Status::InvalidArgument(std::string("'") + key + "' has more than " +
                                   std::to_string(kMaxMapEntries) + " entries");
  }
  std::map<std::string, std::string> m;
  for (auto it = v->begin(); it != v->end(); ++it) {
    if (!it->is_string()) {
      return Status::InvalidArgument(std::string("'") + key + "." + SafeText(it.key(), 64) +
                                     "' must be a string, not " + JsonTypeName(*it));
    }
    m[it.key()] = it->get<std::string>();
  }
  *out = std::move(m);
  return Status::Ok();
}

Status JsonFields::StrList(const char* key, std::vector<std::string>* out, bool required) const {
  const json* v = Find(key);
  if (!v) return required ? Missing(key) : Status::Ok();
  if (!v->is_array()) return Bad(key, "an array of strings", *v);
  if (v->size() > kMaxMapEntries) {
    return Status::InvalidArgument(std::string("'") + key + "' has more than " +
                                   std::to_string(kMaxMapEntries) + " elements");
  }
  std::vector<std::string> l;
  for (const auto& e : *v) {
    if (!e.is_string()) {
      return Status::InvalidArgument(std::string("'") + key + "' must hold only strings, not " +
                                     JsonTypeName(e));
    }
    l.push_back(e.get<std::string>());
  }
  *out = std::move(l);
  return Status::Ok();
}

bool JsonDepthWithin(std::string_view text, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}

std::string SafeDump(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

}  // namespace outpost
