#include "common/log_format.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>

namespace outpost {

namespace {

bool KeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    nlohmann::json j = nlohmann::json::object();
    const auto since = msg.time.time_since_epoch();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(since).count();
    const std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char stamp[40];
    const size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof stamp - n, ".%03dZ", static_cast<int>(ms % 1000));
    j["time"] = stamp;
    const auto level = spdlog::level::to_string_view(msg.level);
    j["level"] = std::string(level.data(), level.size());
    nlohmann::json fields = LogLineJson(std::string(msg.payload.data(), msg.payload.size()));
    for (auto it = fields.begin(); it != fields.end(); ++it) {
      if (it.key() != "time" && it.key() != "level") j[it.key()] = std::move(it.value());
    }
    // Text from peers may not be UTF-8: replaced, never thrown on.
    const std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(line.data(), line.data() + line.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

}  // namespace

nlohmann::json LogLineJson(const std::string& m) {
  nlohmann::json j = nlohmann::json::object();
  size_t i = 0;
  // The event: the first word, when it looks like one (hub.started, agent.commit_failed).
  size_t end = m.find(' ');
  if (end == std::string::npos) end = m.size();
  const std::string first = m.substr(0, end);
  if (!first.empty() && first.find('=') == std::string::npos && first.find('.') != std::string::npos &&
      first.back() != ':') {
    j["event"] = first;
    i = end;
  }
  std::string text;
  while (i < m.size()) {
    while (i < m.size() && m[i] == ' ') ++i;
    if (i >= m.size()) break;
    size_t k = i;
    while (k < m.size() && KeyChar(m[k])) ++k;
    if (k > i && k < m.size() && m[k] == '=') {
      const std::string key = m.substr(i, k - i);
      std::string value;
      size_t v = k + 1;
      if (v < m.size() && m[v] == '"') {
        // A quoted value: up to the next unescaped quote (\" and \\ unescaped).
        ++v;
        while (v < m.size() && m[v] != '"') {
          if (m[v] == '\\' && v + 1 < m.size()) ++v;
          value += m[v++];
        }
        if (v < m.size()) ++v;  // the closing quote
      } else {
        while (v < m.size() && m[v] != ' ') value += m[v++];
      }
      if (key != "event" && !j.contains(key)) {
        j[key] = std::move(value);
      } else {
        text += (text.empty() ? "" : " ") + m.substr(i, v - i);
      }
      i = v;
      continue;
    }
    // Not key=value: the rest of the line is text.
    text += (text.empty() ? "" : " ") + m.substr(i);
    break;
  }
  if (!text.empty()) j["text"] = text;
  return j;
}

Status SetLogFormat(const std::string& format) {
  if (format == "text") return Status::Ok();
  if (format != "json") {
    return Status::InvalidArgument("log-format must be text or json, not '" + format + "'");
  }
  spdlog::set_formatter(std::make_unique<JsonFormatter>());
  return Status::Ok();
}

}  // namespace outpost
