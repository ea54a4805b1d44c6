// Args: outpostctl's command line, parsed. Options may come anywhere among the command's
// words; the words themselves (`run show ID`) are left for the command groups (main.cpp).
//
// Defaults come from the environment: $OUTPOST_DATA_DIR for the agent's data directory
// (else /var/lib/outpost-agent), and $OUTPOST_HUB_DIR, $OUTPOST_HUB, $OUTPOST_HUB_KEY and
// $OUTPOST_KEY for the hub, and $OUTPOST_SIGNING_KEY for the operator's signing key, when the options are not given.
//
// Thread-safety: plain values and functions; getenv is read while parsing.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace outpost::cli {

struct Args {
  bool help = false;  // -h or --help: print the help text, ignore everything after it
  bool local = false, as_json = false, wait = false, reject = false, purge = false;
  std::string data_dir, socket;            // --local: the agent's control socket
  std::string hub_dir, hub, hub_key, key;  // otherwise: where the hub is, who we are
  std::string site, workflow, state, target, request, as;
  std::string after;  // run list: the page after this run id
  std::string key_arg;              // `site add NAME --key PUB`: the site's key, not ours
  std::vector<std::string> labels;  // --label k=v, in order
  int timeout_ms = 30000;
  int wait_timeout_s = 0;  // --timeout: how long --wait waits at most (0: until final)
  int attempt = 0;
  int limit = 100;
  int count = 10;
  std::optional<int> priority;
  std::string from;
  // Trust (docs/security.md): the operator's Ed25519 signing key ($OUTPOST_SIGNING_KEY);
  // set, workflow apply, run start, cancel and approve are signed. --expires: how long a
  // signed start, cancel or approval (or a policy) stays valid. --root-key and --out for
  // `trust sign-policy`.
  std::string signing_key, expires, root_key, out;
  // Artifacts and bundles: `artifact push --name`, `bundle export --volume-size` (bytes,
  // suffix K, M or G).
  std::string name, volume_size;
  std::map<std::string, std::string> params;
  std::vector<std::string> words;  // the command: everything that is not an option
};

// Parses argv into *a and fills in the defaults. Returns "" or what was wrong. Stops at
// -h/--help (a->help), leaving the rest unread.
std::string ParseArgs(int argc, char** argv, Args* a);

// A selector "k=v[,k=v]" (--target) as a JSON object; "" is the empty selector.
bool ToSelector(const std::string& text, nlohmann::json* out, std::string* err);

}  // namespace outpost::cli
