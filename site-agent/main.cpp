// outpost-agent: parses options, blocks the signals the agent reads through signalfd,
// builds the real clock and runs the Agent.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <boost/program_options.hpp>
#include <iostream>

#include "site-agent/agent.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  // Block before anything (RocksDB) starts a thread, so every thread inherits the mask.
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGCHLD, SIGTERM, SIGINT}) sigaddset(&mask, s);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);

  outpost::AgentConfig c;
  std::string config_file, log_level;
  int64_t kill_grace_ms = c.kill_grace;
  // The one option table: drives --help, the config file and validation.
  po::options_description opts("outpost-agent options (also valid as key = value in --config)");
  opts.add_options()
      ("help,h", "print this help and exit")
      ("config", po::value(&config_file), "INI file with any of these options; flags win")
      ("check-config", "validate the options and exit")
      ("data-dir", po::value(&c.data_dir)->required(),
       "directory for the event log, keys and the control socket (agent.sock)")
      ("site", po::value(&c.site)->default_value("local"),
       "this site's name; prefixes every run id")
      ("max-parallel", po::value(&c.max_parallel)->default_value(4),
       "task attempts running at once (1-1024)")
      ("kill-grace-ms", po::value(&kill_grace_ms)->default_value(5000),
       "time between SIGTERM and SIGKILL when a task times out or is cancelled")
      ("output-cap", po::value(&c.output_cap)->default_value(64 * 1024),
       "bytes of each attempt's output kept (the tail)")
      ("log-level", po::value(&log_level)->default_value("info"),
       "trace, debug, info, warn, error");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, opts), vm);
    if (vm.count("help")) {
      std::cout << "usage: outpost-agent --data-dir DIR [options]\n\n" << opts << "\n";
      return 0;
    }
    if (vm.count("config")) {
      po::store(po::parse_config_file<char>(vm["config"].as<std::string>().c_str(), opts, false),
                vm);
    }
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "outpost-agent: " << e.what() << "\n(see outpost-agent --help)\n";
    return 2;
  }
  std::string bad;
  if (c.max_parallel < 1 || c.max_parallel > 1024) bad = "max-parallel must be 1-1024";
  if (kill_grace_ms < 0) bad = "kill-grace-ms must not be negative";
  if (c.output_cap < 1024) bad = "output-cap must be at least 1024";
  if (c.site.empty()) bad = "site must not be empty";
  auto level = spdlog::level::from_str(log_level);
  if (level == spdlog::level::off && log_level != "off") bad = "unknown log-level '" + log_level + "'";
  if (!bad.empty()) {
    std::cerr << "outpost-agent: " << bad << " (see --help)\n";
    return 2;
  }
  if (vm.count("check-config")) {
    std::cout << "outpost-agent: configuration ok\n";
    return 0;
  }
  c.kill_grace = kill_grace_ms;
  spdlog::set_level(level);

  outpost::SystemClock clock;
  auto agent = outpost::Agent::Open(c, clock, outpost::SeedFromOs());
  if (!agent.ok()) {
    spdlog::critical("agent.open_failed error=\"{}\"", agent.status().ToString());
    return 1;
  }
  outpost::Status s = (*agent)->Run();
  if (!s.ok()) {
    spdlog::critical("agent.failed error=\"{}\"", s.ToString());
    return 1;
  }
  return 0;
}
