// The daemons' log lines: "EVENT key=value key=\"quoted value\" ..." as text (the default),
// or with --log-format json one JSON object per line for journald and log shippers:
//   {"time":"2026-11-30T12:00:00.123Z","level":"info","event":"hub.started","sites":"tcp://..."}
// The keys are the line's own (site, run, task, error, ...), the names the events use.
// A part of a line that is not key=value is kept under "text".
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace outpost {

// "text" or "json"; applies to spdlog's default logger.
Status SetLogFormat(const std::string& format);

// One log message as the JSON object written for it (without time and level).
nlohmann::json LogLineJson(const std::string& message);

}  // namespace outpost
