// outpostctl's signing and trust commands (signing.h).
#include "cli/signing.h"

#include <sodium.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/output.h"
#include "common/json_fields.h"
#include "common/labels.h"
#include "common/random.h"
#include "common/ulid.h"
#include "common/workflow/workflow.h"

namespace outpost::cli {

using json = nlohmann::json;

namespace {

constexpr size_t kMaxFile = 1 << 20;

TimeMs Now() { return SystemClock().Now(); }

// A JSON file of at most 1 MiB, or a printed error.
std::optional<json> ReadJsonFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec) || std::filesystem::file_size(path, ec) > kMaxFile) {
    PrintError(path + " is not a readable file of at most 1 MiB");
    return std::nullopt;
  }
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!JsonDepthWithin(ss.str(), kMaxRequestDepth)) {
    PrintError(path + " nests too deep");
    return std::nullopt;
  }
  json j = json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) {
    PrintError(path + " is not valid JSON");
    return std::nullopt;
  }
  return j;
}

std::string NewRequestId() {
  uint64_t seed = 0;
  randombytes_buf(&seed, sizeof seed);
  Rng rng(seed);
  return MakeUlid(Now(), &rng);
}

// The site's key from the hub's site.show; "" (printed) when unknown.
std::string SiteKey(HubClient& hub, const std::string& site, int* code) {
  Reply r = hub.Call({{"op", "site.show"}, {"name", site}});
  if (!r.ok()) {
    *code = r.code;
    return "";
  }
  const json* key = r.body.contains("site") && r.body["site"].is_object() &&
                            r.body["site"].contains("key") && r.body["site"]["key"].is_string()
                        ? &r.body["site"]["key"]
                        : nullptr;
  if (!key) {
    PrintError("the hub's answer for site " + site + " has no key");
    *code = kExitFailed;
    return "";
  }
  return key->get<std::string>();
}

int Keygen(const std::string& path) {
  auto k = GenerateSigningKey();
  if (!k.ok()) {
    PrintError(k.status().message());
    return kExitFailed;
  }
  if (Status s = WriteSigningKey(path, *k); !s.ok()) {
    PrintError(s.message());
    return s.code() == Code::kAlreadyExists ? kExitConflict : kExitFailed;
  }
  std::cout << k->public_key << "\n";
  std::cerr << "outpostctl: secret key in " << path << " (mode 0600), public key in " << path
            << ".pub\n";
  return kExitOk;
}

// The policy file an operator writes: fleet, version, operators (and optionally issued,
// expires); the root's signature is added over its canonical form.
int SignPolicy(const Args& a, const std::string& path) {
  if (a.root_key.empty()) return Usage("trust sign-policy needs --root-key FILE (the fleet root)");
  auto root = LoadSigningKey(a.root_key);
  if (!root.ok()) {
    PrintError(root.status().message());
    return kExitUsage;
  }
  auto body = ReadJsonFile(path);
  if (!body) return kExitUsage;
  if (!body->is_object()) {
    PrintError(path + " is not a JSON object");
    return kExitUsage;
  }
  (*body)["kind"] = "policy";
  const TimeMs now = Now();
  if (!body->contains("issued")) (*body)["issued"] = now;
  if (!body->contains("expires") || !a.expires.empty()) {
    const TimeMs until = ExpiryFrom(a, "365d");
    if (until == 0) return kExitUsage;
    (*body)["expires"] = until;
  }
  auto canon = CanonicalJson(*body);
  if (!canon.ok()) {
    PrintError(path + ": " + canon.status().message());
    return kExitUsage;
  }
  // Refuse to sign what no site would accept.
  auto p = ParsePolicy(*canon);
  if (!p.ok()) {
    PrintError(path + ": " + p.status().message());
    return kExitUsage;
  }
  auto s = Sign(*body, *root);
  if (!s.ok()) {
    PrintError(s.status().message());
    return kExitFailed;
  }
  const std::string text = SafeDump(SignedToJson(*s), 2) + "\n";
  if (a.out.empty()) {
    std::cout << text;
  } else {
    std::ofstream out(a.out, std::ios::trunc);
    out << text;
    if (!out) {
      PrintError("cannot write " + a.out);
      return kExitFailed;
    }
    std::cerr << "outpostctl: fleet " << p->fleet << " policy v" << p->version << " signed by "
              << root->public_key << " -> " << a.out << "\n";
  }
  return kExitOk;
}

int ShowSigned(const Args& a, const std::string& path) {
  auto j = ReadJsonFile(path);
  if (!j) return kExitUsage;
  if (j->is_object() && !j->contains("body") && (j->contains("operators") || j->contains("fleet"))) {
    PrintError(path + " is an unsigned policy: sign it with `outpostctl trust sign-policy " + path +
               " --root-key ROOT.key --out FILE`");
    return kExitUsage;
  }
  auto s = SignedFromJson(*j, path);
  if (!s.ok()) {
    PrintError(s.status().message() + " (not a signed file from outpostctl trust sign-policy)");
    return kExitUsage;
  }
  Status v = VerifySignature(*s);
  json body = json::parse(s->body, nullptr, false);
  json out = {{"signer", s->signer},
              {"signature_valid", v.ok()},
              {"body", body.is_discarded() ? json(s->body) : body}};
  if (!v.ok()) out["error"] = v.message();
  bool root_ok = true;
  if (!a.root_key.empty()) {
    auto root = ReadSigningPublicKey(a.root_key);
    if (!root.ok()) {
      auto secret = LoadSigningKey(a.root_key);
      if (!secret.ok()) {
        PrintError("--root-key: " + root.status().message());
        return kExitUsage;
      }
      root = secret->public_key;
    }
    root_ok = s->signer == *root;
    out["signed_by_root"] = root_ok;
  }
  const TimeMs now = Now();
  if (body.is_object() && body.contains("expires") && body["expires"].is_number_integer()) {
    const TimeMs expires = body["expires"].get<TimeMs>();
    out["expires"] = FormatTime(expires);
    out["expired"] = expires <= now;
  }
  if (body.is_object() && body.contains("issued") && body["issued"].is_number_integer()) {
    out["issued"] = FormatTime(body["issued"].get<TimeMs>());
  }
  if (a.as_json) {
    PrintJson(out);
  } else {
    std::cout << "signer     " << s->signer;
    if (out.contains("signed_by_root")) std::cout << (root_ok ? " (the root)" : " (NOT the root)");
    std::cout << "\nsignature  " << (v.ok() ? "valid" : v.message()) << "\n";
    if (out.contains("issued")) std::cout << "issued     " << Cell(out["issued"]) << "\n";
    if (out.contains("expires")) {
      std::cout << "expires    " << Cell(out["expires"]) << (out["expired"] == true ? " (EXPIRED)" : "")
                << "\n";
    }
    std::cout << SafeDump(out["body"], 2) << "\n";
  }
  const bool expired = out.contains("expired") && out["expired"] == true;
  return v.ok() && root_ok && !expired ? kExitOk : kExitFailed;
}

}  // namespace

std::optional<SigningKey> LoadOperatorSigningKey(const Args& a, int* code) {
  *code = kExitOk;
  if (a.signing_key.empty()) return std::nullopt;
  auto k = LoadSigningKey(a.signing_key);
  if (!k.ok()) {
    PrintError("signing key: " + k.status().message());
    *code = kExitUsage;
    return std::nullopt;
  }
  return *k;
}

TimeMs ExpiryFrom(const Args& a, const char* fallback) {
  auto d = ParseDuration(a.expires.empty() ? fallback : a.expires);
  if (!d.ok() || *d <= 0) {
    PrintError("--expires: " + (d.ok() ? std::string("must be positive") : d.status().message()));
    return 0;
  }
  return Now() + *d;
}

int SignApply(const SigningKey& key, const std::string& workflow, const std::string& source,
              json* signed_json) {
  auto s = Sign({{"kind", "apply"},
                 {"workflow", workflow},
                 {"digest", ContentDigest(source)},
                 {"signed", Now()}},
                key);
  if (!s.ok()) {
    PrintError(s.status().message());
    return kExitFailed;
  }
  *signed_json = SignedToJson(*s);
  return kExitOk;
}

int PrepareStart(const Args& a, const std::optional<SigningKey>& key, HubClient& hub, json* req) {
  const std::string workflow = (*req)["workflow"];
  // The definition as applied at the hub: which params are secret, and the digest the
  // site compares with the signed definition placed there.
  Reply w = hub.Call({{"op", "workflow.show"}, {"name", workflow}});
  if (!w.ok()) return w.code;
  const json& wf = w.body["workflow"];
  if (!wf.is_object() || !wf.contains("source") || !wf["source"].is_string()) {
    PrintError("the hub's answer for workflow " + workflow + " has no source");
    return kExitFailed;
  }
  const std::string source = wf["source"].get<std::string>();
  auto def = ParseWorkflow(source, "hub:" + workflow);
  if (!def.ok()) {
    PrintError(def.status().message());
    return kExitFailed;
  }
  std::map<std::string, std::string> secrets;  // param -> clear value, sealed below
  for (const auto& pd : def->params) {
    if (!pd.secret) continue;
    auto v = a.params.find(pd.name);
    if (v == a.params.end()) {
      PrintError("workflow '" + workflow + "' needs secret param '" + pd.name + "': --param-file " +
                 pd.name + "=FILE (kept off command lines; --param works too). It is sealed to "
                 "each site; the hub never sees it");
      return kExitUsage;
    }
    secrets[pd.name] = v->second;
    (*req)["params"].erase(pd.name);
  }
  if (!key && secrets.empty()) return kExitOk;
  // The sites it is for: those the hub would start it on, by key.
  std::map<std::string, std::string> selector;
  for (const auto& [k, v] : (*req)["target"].items()) {
    if (v.is_string()) selector[k] = v.get<std::string>();
  }
  json keys = json::array();
  Reply sites = hub.Call({{"op", "site.list"}});
  if (!sites.ok()) return sites.code;
  for (const auto& s : sites.body["sites"]) {
    if (!s.is_object() || !s.contains("name") || !s["name"].is_string() || !s.contains("key") ||
        !s["key"].is_string() || !s.contains("state") || s["state"] != "enrolled") {
      continue;
    }
    std::map<std::string, std::string> labels;
    if (s.contains("labels") && s["labels"].is_object()) {
      for (const auto& [k, v] : s["labels"].items()) {
        if (v.is_string()) labels[k] = v.get<std::string>();
      }
    }
    bool placed = false;
    if (s.contains("workflows") && s["workflows"].is_array()) {
      for (const auto& n : s["workflows"]) placed = placed || (n.is_string() && n == workflow);
    }
    const std::string name = s["name"];
    const bool chosen = a.site.empty() ? SelectorMatches(selector, labels) : name == a.site;
    if (chosen && placed) keys.push_back(s["key"]);
  }
  if (keys.empty()) {
    PrintError("no enrolled site with workflow '" + workflow + "' placed matches the target");
    return kExitNotFound;
  }
  json sealed = json::object();
  for (const auto& [param, value] : secrets) {
    for (const auto& k : keys) {
      auto box = SealToSite(value, k.get<std::string>());
      if (!box.ok()) {
        PrintError("sealing '" + param + "': " + box.status().message());
        return kExitFailed;
      }
      sealed[param][k.get<std::string>()] = *box;
    }
  }
  if (!secrets.empty()) (*req)["secrets"] = sealed;
  if (!key) return kExitOk;
  if (!req->contains("request")) (*req)["request"] = NewRequestId();
  const TimeMs expires = ExpiryFrom(a, "7d");
  if (expires == 0) return kExitUsage;
  json body = {{"kind", "start"},
               {"request", (*req)["request"]},
               {"workflow", workflow},
               {"digest", ContentDigest(source)},
               {"params", (*req)["params"]},
               {"sites", keys},
               {"expires", expires}};
  if (req->contains("priority")) body["priority"] = (*req)["priority"];
  if (!secrets.empty()) body["secrets"] = sealed;
  auto s = Sign(body, *key);
  if (!s.ok()) {
    PrintError(s.status().message());
    return kExitFailed;
  }
  (*req)["signed"] = SignedToJson(*s);
  return kExitOk;
}

int SignRunDecision(const Args& a, const SigningKey& key, HubClient& hub, const std::string& kind,
                    const std::string& run, const std::string& task, json* req) {
  Reply r = hub.Call({{"op", "run.show"}, {"id", run}});
  if (!r.ok()) return r.code;
  const json& rv = r.body["run"];
  if (!rv.is_object() || !rv.contains("site") || !rv["site"].is_string()) {
    PrintError("the hub's answer for run " + run + " names no site");
    return kExitFailed;
  }
  int code = kExitOk;
  const std::string site_key = SiteKey(hub, rv["site"].get<std::string>(), &code);
  if (site_key.empty()) return code;
  const TimeMs expires = ExpiryFrom(a, "1d");
  if (expires == 0) return kExitUsage;
  json body = {{"kind", kind}, {"run", run}, {"site", site_key}, {"expires", expires}};
  if (kind == "approve") {
    body["task"] = task;
    body["decision"] = a.reject ? "reject" : "approve";
  }
  auto s = Sign(body, key);
  if (!s.ok()) {
    PrintError(s.status().message());
    return kExitFailed;
  }
  (*req)["signed"] = SignedToJson(*s);
  return kExitOk;
}

int TrustCommand(const Args& a) {
  const auto& w = a.words;
  if (w.size() == 3 && w[1] == "keygen") return Keygen(w[2]);
  if (w.size() == 3 && w[1] == "sign-policy") return SignPolicy(a, w[2]);
  if (w.size() == 3 && w[1] == "show") return ShowSigned(a, w[2]);
  return Usage("trust keygen FILE | trust sign-policy FILE --root-key KEY [--out F] | trust show FILE");
}

int PolicyCommand(const Args& a, HubClient& hub) {
  const auto& w = a.words;
  if (w.size() == 3 && w[1] == "push") {
    auto j = ReadJsonFile(w[2]);
    if (!j) return kExitUsage;
    Reply r = hub.Call({{"op", "policy.push"}, {"policy", *j}});
    if (!r.ok()) return r.code;
    if (a.as_json) {
      PrintJson(r.body);
    } else if (r.body["unchanged"] == true) {
      std::cout << "policy v" << r.body["version"] << " is already the hub's policy\n";
    } else {
      std::cout << "fleet " << Cell(r.body["fleet"]) << " policy v" << r.body["version"]
                << " pushed; queued for " << r.body["sites"] << " site(s)\n";
    }
    return kExitOk;
  }
  if (w.size() == 2 && w[1] == "show") {
    Reply r = hub.Call({{"op", "policy.show"}});
    if (!r.ok()) return r.code;
    PrintJson(r.body);
    return kExitOk;
  }
  return Usage("policy push FILE | policy show");
}

}  // namespace outpost::cli
