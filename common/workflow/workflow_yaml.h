// YAML value readers for the workflow parser (workflow_parse.cpp, which alone includes this
// header): scalars, integers, numbers, durations, string lists and spellings, each read or
// reported as a problem at its FILE:LINE:COL, and unknown keys of a map.
#pragma once

#include <yaml-cpp/yaml.h>

#include <initializer_list>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/workflow/workflow_internal.h"

namespace outpost::workflow_internal {

inline SourcePos At(const YAML::Mark& m) {
  if (m.is_null()) return {};
  return {m.line + 1, m.column + 1};
}
inline SourcePos At(const YAML::Node& n) { return At(n.Mark()); }

inline const char* KindName(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: return "a scalar";
    case YAML::NodeType::Null: return "empty";
    default: return "undefined";
  }
}

// The spellings a key accepts and what each means.
template <typename T>
using Options = std::initializer_list<std::pair<const char*, T>>;

template <typename T>
bool Lookup(Options<T> options, const std::string& s, T* out) {
  for (const auto& [name, value] : options) {
    if (s == name) {
      *out = value;
      return true;
    }
  }
  return false;
}

// "a, b or c"
template <typename T>
std::string Alternatives(Options<T> options) {
  std::string list;
  size_t i = 0;
  for (const auto& option : options) {
    if (i > 0) list += i + 1 == options.size() ? " or " : ", ";
    list += option.first;
    ++i;
  }
  return list;
}

// Reads values, reporting a problem against `task` (empty: outside any task) for each one
// it cannot read; each returns whether it read one.
struct Reader {
  Problems* problems;
  std::string task;

  void Add(const YAML::Node& n, const std::string& reason) { problems->Add(At(n), task, reason); }

  bool Scalar(const YAML::Node& n, const std::string& key, std::string* out) {
    if (!n.IsScalar()) {
      Add(n, "'" + key + "' must be a string, got " + KindName(n));
      return false;
    }
    *out = n.Scalar();
    return true;
  }
  bool Int(const YAML::Node& n, const std::string& key, int lo, int hi, int* out) {
    long long v = 0;
    if (!n.IsScalar() || !YAML::convert<long long>::decode(n, v) || v < lo || v > hi) {
      Add(n, "'" + key + "' must be an integer from " + std::to_string(lo) + " to " +
                 std::to_string(hi) + ", got '" + (n.IsScalar() ? n.Scalar() : KindName(n)) + "'");
      return false;
    }
    *out = static_cast<int>(v);
    return true;
  }
  bool Number(const YAML::Node& n, const std::string& key, double lo, double hi, double* out) {
    double v = 0;
    if (!n.IsScalar() || !YAML::convert<double>::decode(n, v) || !(v >= lo && v <= hi)) {
      Add(n, "'" + key + "' must be a number from " + std::to_string(lo) + " to " +
                 std::to_string(hi));
      return false;
    }
    *out = v;
    return true;
  }
  bool Duration(const YAML::Node& n, const std::string& key, DurationMs* out) {
    std::string s;
    if (!Scalar(n, key, &s)) return false;
    auto d = ParseDuration(s);
    if (!d.ok()) {
      Add(n, "'" + key + "': " + d.status().message());
      return false;
    }
    *out = *d;
    return true;
  }
  bool StringList(const YAML::Node& n, const std::string& key, std::vector<std::string>* out) {
    if (!n.IsSequence()) {
      Add(n, "'" + key + "' must be a list of strings, got " + KindName(n));
      return false;
    }
    for (const auto& item : n) {
      std::string s;
      if (!Scalar(item, key + "[]", &s)) return false;
      out->push_back(s);
    }
    return true;
  }
  template <typename T>
  bool Choice(const YAML::Node& n, const std::string& key, Options<T> options, T* out) {
    std::string s;
    if (!Scalar(n, key, &s)) return false;
    if (Lookup(options, s, out)) return true;
    Add(n, "'" + key + "' must be " + Alternatives(options) + ", got '" + s + "'");
    return false;
  }
  // Checks every key of map `n` is in `allowed`.
  void KnownKeys(const YAML::Node& n, const std::set<std::string>& allowed,
                 const std::string& where) {
    for (const auto& kv : n) {
      const std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "?";
      if (!allowed.count(k)) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        problems->Add(At(kv.first), task,
                      "unknown key '" + k + "' in " + where + " (expected one of: " + list + ")");
      }
    }
  }
};

}  // namespace outpost::workflow_internal
