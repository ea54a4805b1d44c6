// outpostctl site ...: enrolling, revoking and labelling sites at the hub.
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/keys.h"

namespace outpost::cli {
namespace {

using json = nlohmann::json;

// The --label k=v options as an object.
json LabelOptions(const Args& a) {
  json labels = json::object();
  for (const auto& l : a.labels) labels[l.substr(0, l.find('='))] = l.substr(l.find('=') + 1);
  return labels;
}

// `site label NAME k=v... k-...`: the words from `first` on, as labels to set and remove.
std::string ParseLabelEdits(const std::vector<std::string>& w, size_t first, json* set,
                            json* remove) {
  *set = json::object();
  *remove = json::array();
  for (size_t i = first; i < w.size(); ++i) {
    auto eq = w[i].find('=');
    if (eq != std::string::npos && eq > 0) {
      (*set)[w[i].substr(0, eq)] = w[i].substr(eq + 1);
    } else if (w[i].size() > 1 && w[i].back() == '-') {
      remove->push_back(w[i].substr(0, w[i].size() - 1));
    } else {
      return "label '" + w[i] + "' is neither k=v nor k-";
    }
  }
  return "";
}

int SiteList(const Args& a, HubClient& hub) {
  Reply r = hub.Call({{"op", "site.list"}});
  if (!r.ok()) return r.code;
  PrintResult(a.as_json, r.body["sites"], PrintSites);
  return kExitOk;
}

// The request for `site show|add|accept|revoke|label NAME ...`; kExitOk or a usage error.
int SiteRequest(const Args& a, json* req) {
  const auto& w = a.words;
  if (w[1] == "show" && w.size() == 3) {
    *req = {{"op", "site.show"}, {"name", w[2]}};
  } else if (w[1] == "add" && w.size() == 3) {
    if (a.key_arg.empty()) {
      return Usage("site add needs --key PUB (the agent's public key or its file)");
    }
    auto key = ReadPublicKey(a.key_arg);
    if (!key.ok()) return Usage(key.status().message());
    *req = {{"op", "site.add"}, {"name", w[2]}, {"key", *key}, {"labels", LabelOptions(a)}};
  } else if (w[1] == "accept" && w.size() == 3) {
    *req = {{"op", "site.accept"}, {"name", w[2]}, {"labels", LabelOptions(a)}};
    if (!a.as.empty()) (*req)["as"] = a.as;
  } else if (w[1] == "events" && w.size() == 3) {
    *req = {{"op", "site.events"}, {"name", w[2]}, {"limit", a.limit}};
  } else if (w[1] == "revoke" && w.size() == 3) {
    *req = {{"op", "site.revoke"}, {"name", w[2]}};
  } else if (w[1] == "remove" && w.size() == 3) {
    *req = {{"op", "site.remove"}, {"name", w[2]}, {"purge", a.purge}};
  } else if (w[1] == "label" && w.size() >= 4) {
    json set, remove;
    if (std::string err = ParseLabelEdits(w, 3, &set, &remove); !err.empty()) return Usage(err);
    *req = {{"op", "site.label"}, {"name", w[2]}, {"set", set}, {"remove", remove}};
  } else {
    return Usage("unknown site command");
  }
  return kExitOk;
}

}  // namespace

int SiteCommand(const Args& a, HubClient& hub) {
  const auto& w = a.words;
  if (w[1] == "list" && w.size() == 2) return SiteList(a, hub);
  if (w.size() < 3) return Usage("site " + w[1] + " needs NAME");
  json req;
  if (int code = SiteRequest(a, &req); code != kExitOk) return code;
  Reply r = hub.Call(req);
  if (!r.ok()) return r.code;
  if (w[1] == "remove") {
    if (a.as_json) {
      PrintJson(r.body);
    } else {
      printf("site %s removed%s\n", w[2].c_str(),
             a.purge ? (" with its history (" + Cell(r.body["runs_purged"]) + " runs)").c_str()
                     : "; its history stays at the hub");
    }
    return kExitOk;
  }
  if (w[1] == "events") {
    if (a.as_json) {
      PrintJson(r.body["events"]);
      return kExitOk;
    }
    printf("%-8s %-24s %-22s %s\n", "SEQ", "TIME", "TYPE", "WHAT");
    for (const auto& e : r.body["events"]) {
      // Reads only what is there: the reply comes over the network.
      auto field = [&e](const char* k) {
        return e.is_object() && e.contains(k) ? Cell(e[k]) : std::string("-");
      };
      std::string what;
      for (const char* k : {"workflow", "run", "task", "state"}) {
        if (e.is_object() && e.contains(k)) what += std::string(k) + "=" + field(k) + " ";
      }
      if (e.is_object() && e.contains("message")) what += field("message");
      printf("%-8s %-24s %-22s %s\n", field("seq").c_str(), field("time").c_str(),
             field("type").c_str(), what.c_str());
    }
    return kExitOk;
  }
  if (a.as_json) {
    PrintJson(r.body["site"]);
  } else {
    PrintSites(json::array({r.body["site"]}));
    const json& site = r.body["site"];
    if (site.contains("policy") && site["policy"].is_string()) {
      printf("policy: %s\n", site["policy"].get<std::string>().c_str());
    }
    if (site.contains("refused_workflows") && site["refused_workflows"].is_object()) {
      for (const auto& [wf, why] : site["refused_workflows"].items()) {
        printf("refused workflow %s: %s\n", wf.c_str(), Cell(why).c_str());
      }
    }
  }
  return kExitOk;
}

}  // namespace outpost::cli
