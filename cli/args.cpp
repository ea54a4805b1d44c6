// Args: parsing outpostctl's options (see args.h).
#include "cli/args.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string_view>

namespace outpost::cli {
namespace {

using json = nlohmann::json;

// Options that are set by being there.
struct FlagOption {
  std::string_view name;
  bool Args::*field;
};
constexpr FlagOption kFlagOptions[] = {
    {"--local", &Args::local},
    {"--json", &Args::as_json},
    {"--wait", &Args::wait},
    {"--reject", &Args::reject},
    {"--purge", &Args::purge},
};

// Options that take one string, and what to say when it is missing.
struct StringOption {
  std::string_view name;
  std::string Args::*field;
  const char* missing;
};
constexpr StringOption kStringOptions[] = {
    {"--data-dir", &Args::data_dir, "--data-dir needs a value"},
    {"--socket", &Args::socket, "--socket needs a value"},
    {"--hub-dir", &Args::hub_dir, "--hub-dir needs a value"},
    {"--hub", &Args::hub, "--hub needs an endpoint"},
    {"--hub-key", &Args::hub_key, "--hub-key needs a key or file"},
    {"--site", &Args::site, "--site needs a name"},
    {"--workflow", &Args::workflow, "--workflow needs a name"},
    {"--state", &Args::state, "--state needs a value"},
    {"--after", &Args::after, "--after needs a run id"},
    {"--target", &Args::target, "--target needs k=v[,k=v]"},
    {"--request", &Args::request, "--request needs an id"},
    {"--as", &Args::as, "--as needs a name"},
    {"--from", &Args::from, "--from needs an ISO-8601 time"},
    {"--signing-key", &Args::signing_key, "--signing-key needs a key file"},
    {"--expires", &Args::expires, "--expires needs a duration (e.g. 7d)"},
    {"--root-key", &Args::root_key, "--root-key needs a key file"},
    {"--out", &Args::out, "--out needs a file"},
    {"--name", &Args::name, "--name needs a name"},
    {"--volume-size", &Args::volume_size, "--volume-size needs a size (e.g. 700M)"},
};

// Options that take a number from 0 to 1e9; missing or not one: "NAME needs a number".
struct NumberOption {
  std::string_view name;
  int Args::*field;
};
constexpr NumberOption kNumberOptions[] = {
    {"--timeout-ms", &Args::timeout_ms},
    {"--timeout", &Args::wait_timeout_s},
    {"--attempt", &Args::attempt},
    {"--limit", &Args::limit},
};

bool ParseInt(const std::string& s, int* out) {
  char* end = nullptr;
  long v = strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || v < 0 || v > 1'000'000'000) return false;
  *out = static_cast<int>(v);
  return true;
}

// Walks argv from argv[1]; an option takes its value from the word after it.
class ArgReader {
 public:
  ArgReader(int argc, char** argv) : argc_(argc), argv_(argv) {}
  bool Done() const { return i_ >= argc_; }
  std::string Word() { return argv_[i_++]; }
  // The current option's value; false when argv has run out.
  bool Value(std::string* out) {
    if (i_ >= argc_) return false;
    *out = argv_[i_++];
    return true;
  }
  bool ValueStartsWithDash() const { return i_ < argc_ && argv_[i_][0] == '-'; }

 private:
  int argc_;
  char** argv_;
  int i_ = 1;
};

// --priority N, where N may be negative (-1000 to 1000).
std::string ParsePriority(ArgReader& r, Args* a) {
  int p = 0;
  std::string v;
  const bool neg = r.ValueStartsWithDash();
  if (!r.Value(&v) || !ParseInt(neg ? v.substr(1) : v, &p) || p > 1000) {
    return "--priority needs an integer from -1000 to 1000";
  }
  a->priority = neg ? -p : p;
  return "";
}

// Options that are not in the tables above. Returns "" or what was wrong.
std::string ParseSpecial(const std::string& w, ArgReader& r, Args* a) {
  std::string v;
  if (w == "--key") {
    // `site add NAME --key PUB` names the site's key; elsewhere --key is ours.
    if (!r.Value(&v)) return "--key needs a value";
    (a->words.size() >= 2 && a->words[0] == "site" ? a->key_arg : a->key) = v;
  } else if (w == "--label") {
    if (!r.Value(&v) || v.find('=') == std::string::npos) return "--label needs k=v";
    a->labels.push_back(v);
  } else if (w == "--count") {
    if (!r.Value(&v) || !ParseInt(v, &a->count) || a->count < 1 || a->count > 10000) {
      return "--count needs a number from 1 to 10000";
    }
  } else if (w == "--priority") {
    return ParsePriority(r, a);
  } else if (w == "--param-file") {
    // The value from a file (one trailing newline dropped): secrets stay off command lines.
    if (!r.Value(&v)) return "--param-file needs NAME=FILE";
    const auto eq = v.find('=');
    if (eq == std::string::npos || eq == 0) return "--param-file needs NAME=FILE, got '" + v + "'";
    std::ifstream in(v.substr(eq + 1), std::ios::binary);
    if (!in) return "--param-file: cannot read " + v.substr(eq + 1);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string value = ss.str();
    if (value.size() > 65536) return "--param-file: " + v.substr(eq + 1) + " is larger than 64 KiB";
    if (!value.empty() && value.back() == '\n') value.pop_back();
    if (!value.empty() && value.back() == '\r') value.pop_back();
    a->params[v.substr(0, eq)] = value;
  } else if (w == "--param") {
    if (!r.Value(&v)) return "--param needs k=v";
    auto eq = v.find('=');
    if (eq == std::string::npos || eq == 0) return "--param needs k=v, got '" + v + "'";
    a->params[v.substr(0, eq)] = v.substr(eq + 1);
  } else if (w == "-h" || w == "--help") {
    a->help = true;
  } else if (w.size() > 1 && w[0] == '-') {
    return "unknown option '" + w + "'";
  } else {
    a->words.push_back(w);
  }
  return "";
}

// One option (with its value) or one word of the command.
std::string ParseOne(const std::string& w, ArgReader& r, Args* a) {
  for (const auto& o : kFlagOptions) {
    if (w == o.name) {
      a->*o.field = true;
      return "";
    }
  }
  for (const auto& o : kStringOptions) {
    if (w == o.name) return r.Value(&(a->*o.field)) ? "" : o.missing;
  }
  for (const auto& o : kNumberOptions) {
    if (w != o.name) continue;
    std::string v;
    if (!r.Value(&v) || !ParseInt(v, &(a->*o.field))) return w + " needs a number";
    return "";
  }
  return ParseSpecial(w, r, a);
}

void ApplyDefaults(Args* a) {
  if (a->socket.empty()) {
    if (a->data_dir.empty()) {
      const char* env = getenv("OUTPOST_DATA_DIR");
      a->data_dir = env ? env : "/var/lib/outpost-agent";
    }
    a->socket = a->data_dir + "/agent.sock";
  }
  auto env = [](const char* name, std::string* out) {
    if (const char* e = getenv(name); e && out->empty()) *out = e;
  };
  env("OUTPOST_HUB_DIR", &a->hub_dir);
  env("OUTPOST_HUB", &a->hub);
  env("OUTPOST_HUB_KEY", &a->hub_key);
  env("OUTPOST_KEY", &a->key);
  env("OUTPOST_SIGNING_KEY", &a->signing_key);
}

}  // namespace

std::string ParseArgs(int argc, char** argv, Args* a) {
  ArgReader r(argc, argv);
  while (!r.Done()) {
    if (std::string err = ParseOne(r.Word(), r, a); !err.empty()) return err;
    if (a->help) return "";
  }
  ApplyDefaults(a);
  return "";
}

bool ToSelector(const std::string& text, json* out, std::string* err) {
  *out = json::object();
  if (text.empty()) return true;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string part =
        text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    size_t eq = part.find('=');
    if (eq == std::string::npos || eq == 0) {
      *err = "selector part '" + part + "' is not k=v";
      return false;
    }
    (*out)[part.substr(0, eq)] = part.substr(eq + 1);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return true;
}

}  // namespace outpost::cli
