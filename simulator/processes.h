// Real processes for the drivers that start the daemons (outpost-sim --real, the
// benchmarks): spawn with output to a log, stop and reap, poll a condition with a bound,
// read a small file. Not for the cores: these block and read the real clock.
//
// Thread-safety: stateless functions.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

namespace outpost::sim {

// The whole file ("" if it cannot be read).
std::string ReadAll(const std::string& path);
// fork + execv of argv[0] with stdout and stderr appended to `log`, signals unblocked and
// `env` (NAME=VALUE) added to the environment.
pid_t Spawn(const std::vector<std::string>& argv, const std::string& log,
            const std::vector<std::string>& env = {});
// Sends `sig` and reaps the process; *pid becomes -1.
void Kill(pid_t* pid, int sig);
// Polls `cond` every `every_ms` until it holds or `ms` passed; its last answer.
bool Eventually(const std::function<bool()>& cond, int ms, int every_ms = 100);

}  // namespace outpost::sim
