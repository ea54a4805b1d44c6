// The agent's trust set-up: the fleet root it was configured with, the policy in force
// (from its store, or a newer policy file), and how `status` reports them.
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/json_fields.h"
#include "site-agent/agent.h"

namespace outpost {

using json = nlohmann::json;

namespace {

constexpr size_t kMaxPolicyFile = 1 << 20;

// A policy file: {"body": "...", "signer": "ed25519:...", "sig": "..."} as written by
// `outpostctl trust sign-policy`.
Result<Signed> ReadPolicyFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Status::InvalidArgument("policy file " + path + " is not a readable file");
  }
  if (std::filesystem::file_size(path, ec) > kMaxPolicyFile) {
    return Status::InvalidArgument("policy file " + path + " is larger than 1 MiB");
  }
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (!JsonDepthWithin(text, kMaxRequestDepth)) {
    return Status::InvalidArgument("policy file " + path + " nests too deep");
  }
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return Status::InvalidArgument("policy file " + path + " is not JSON");
  return SignedFromJson(j, "policy file " + path);
}

}  // namespace

Status Agent::OpenTrust() {
  if (config_.trust_root.empty()) {
    if (!config_.policy_file.empty()) {
      return Status::InvalidArgument("--policy-file needs --trust-root (the key that signed it)");
    }
    spdlog::warn("agent.trust mode=hub-trusted: no --trust-root is configured, so this site "
                 "runs whatever its hub sends (see docs/security.md)");
    return Status::Ok();
  }
  auto root = ReadSigningPublicKey(config_.trust_root);
  if (!root.ok()) return root.status().WithContext("trust-root");
  gate_.emplace(*root, keys_.public_z85, config_.labels);

  OUTPOST_ASSIGN_OR_RETURN(auto stored, store_->log().GetState(kPolicyStateKey));
  if (stored) {
    auto s = DecodeSigned(*stored);
    bool newer = false;
    auto p = s.ok() ? gate_->CheckPolicy(*s, &newer) : Result<Policy>(s.status());
    if (!p.ok()) {
      // Stored under another root (the root was changed): the site holds no policy now.
      spdlog::error("agent.policy_stored_refused error=\"{}\"", p.status().message());
    } else {
      gate_->Adopt(*s, std::move(p).value());
    }
  }
  if (!config_.policy_file.empty()) {
    OUTPOST_ASSIGN_OR_RETURN(Signed s, ReadPolicyFile(config_.policy_file));
    bool newer = false;
    auto p = gate_->CheckPolicy(s, &newer);
    if (!p.ok()) {
      // An old file left in place after the hub delivered newer policies is normal.
      spdlog::warn("agent.policy_file_not_adopted file={} reason=\"{}\"", config_.policy_file,
                   p.status().message());
    } else if (newer) {
      Event e;
      e.time = clock_.Now();
      e.type = static_cast<uint8_t>(EventType::kPolicyApplied);
      e.message = "fleet " + p->fleet + " policy v" + std::to_string(p->version) + " from " +
                  config_.policy_file + ", " + std::to_string(p->operators.size()) + " operator(s)";
      pending_.events.push_back(std::move(e));
      OUTPOST_RETURN_IF_ERROR(CommitPending({{kPolicyStateKey, EncodeSigned(s)}}));
      gate_->Adopt(s, std::move(p).value());
    }
  }
  if (const Policy* p = gate_->policy()) {
    spdlog::info("agent.trust mode=signed root={} fleet={} policy_version={} expires={}", *root,
                 p->fleet, p->version, FormatTime(p->expires));
  } else {
    spdlog::warn("agent.trust mode=signed root={} policy=none: hub commands are refused until a "
                 "policy signed by the root arrives", *root);
  }
  return Status::Ok();
}

json Agent::TrustJson() const {
  if (!gate_) {
    return {{"mode", "hub-trusted"},
            {"warning", "no trust root is configured: this site runs whatever its hub sends"}};
  }
  json j = {{"mode", "signed"},
            {"root", gate_->root()},
            {"refused", counters_.commands_refused_by_policy}};
  if (const Policy* p = gate_->policy()) {
    j["policy"] = {{"fleet", p->fleet},
                   {"version", p->version},
                   {"expires", FormatTime(p->expires)},
                   {"expired", clock_.Now() >= p->expires},
                   {"operators", p->operators.size()}};
  } else {
    j["policy"] = nullptr;
  }
  return j;
}

}  // namespace outpost
