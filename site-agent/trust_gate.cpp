#include "site-agent/trust_gate.h"

#include <algorithm>

#include "common/codec.h"

namespace outpost {

namespace {

struct SignedRecord {
  std::string body;
  std::string signer;
  std::string sig;
  MSGPACK_DEFINE_MAP(body, signer, sig);
};

}  // namespace

std::string EncodeSigned(const Signed& s) { return Encode(SignedRecord{s.body, s.signer, s.sig}); }

Result<Signed> DecodeSigned(std::string_view bytes) {
  SignedRecord r;
  OUTPOST_RETURN_IF_ERROR(Decode(bytes, &r));
  return Signed{r.body, r.signer, r.sig};
}

Result<Policy> TrustGate::CheckPolicy(const Signed& s, bool* newer) const {
  *newer = false;
  if (s.signer != root_) {
    return Status::PermissionDenied("policy signed by " + s.signer + ", not by the fleet root " + root_);
  }
  OUTPOST_RETURN_IF_ERROR(VerifySignature(s).WithContext("policy"));
  OUTPOST_ASSIGN_OR_RETURN(Policy p, ParsePolicy(s.body));
  if (policy_) {
    if (p.version < policy_->version) {
      return Status::PermissionDenied("policy v" + std::to_string(p.version) + " is older than v" +
                                      std::to_string(policy_->version) + " in force (no rollback)");
    }
    if (p.version == policy_->version) {
      if (s.body != policy_signed_.body) {
        return Status::PermissionDenied("policy v" + std::to_string(p.version) +
                                        " differs from the v" + std::to_string(p.version) +
                                        " in force (a version is signed once)");
      }
      return p;  // the same policy again
    }
  }
  *newer = true;
  return p;
}

void TrustGate::Adopt(const Signed& s, Policy p) {
  policy_signed_ = s;
  policy_ = std::move(p);
}

Status TrustGate::CheckPolicyInForce(TimeMs now) const {
  if (!policy_) {
    return Status::PermissionDenied("the site holds no policy signed by the fleet root yet");
  }
  if (now >= policy_->expires) {
    return Status::PermissionDenied("policy v" + std::to_string(policy_->version) + " expired at " +
                                    FormatTime(policy_->expires) + "; a newer one must be signed");
  }
  return Status::Ok();
}

Status TrustGate::Check(const Command& c, TimeMs now, const std::optional<Command>& placed,
                        const std::string& run_workflow, Grant* out) const {
  const CommandType type = c.command_type();
  if (type == CommandType::kRemoveWorkflow) return Status::Ok();  // stops work; never starts it
  if (type == CommandType::kSetPolicy) {
    return Status::PermissionDenied("a policy is checked against the root, not as a command");
  }
  if (c.grant.empty()) return Status::PermissionDenied("unsigned: no operator signed it");
  OUTPOST_RETURN_IF_ERROR(CheckPolicyInForce(now));
  Signed s{c.grant, c.signer, c.sig};
  OUTPOST_RETURN_IF_ERROR(VerifySignature(s));
  auto parsed = ParseGrant(c.grant);
  if (!parsed.ok()) {
    return Status::PermissionDenied("the signed statement is malformed: " + parsed.status().message());
  }
  Grant g = std::move(parsed).value();
  auto expect_kind = [&](const char* kind) -> Status {
    if (g.kind != kind) {
      return Status::PermissionDenied(std::string("the signed statement is a '") + g.kind +
                                      "', not a '" + kind + "'");
    }
    return Status::Ok();
  };
  auto not_expired = [&]() -> Status {
    if (now >= g.expires) {
      return Status::PermissionDenied("expired at " + FormatTime(g.expires) + " (signed by " +
                                      c.signer + ")");
    }
    return Status::Ok();
  };
  auto for_this_site = [&](bool listed) -> Status {
    if (!listed) return Status::PermissionDenied("meant for another site (this site's key is not in it)");
    return Status::Ok();
  };
  auto mismatch = [&](const std::string& what) {
    return Status::PermissionDenied("altered: the command's " + what + " is not the signed one");
  };
  std::string placed_digest;
  if (placed) placed_digest = ContentDigest(placed->source);

  switch (type) {
    case CommandType::kPlaceWorkflow: {
      OUTPOST_RETURN_IF_ERROR(expect_kind("apply"));
      if (g.workflow != c.workflow) return mismatch("workflow name");
      if (g.digest != ContentDigest(c.source)) return mismatch("workflow definition");
      OUTPOST_RETURN_IF_ERROR(policy_->Allows(c.signer, "apply", g.workflow, g.digest, labels_));
      if (placed && !placed->grant.empty()) {
        auto prev = ParseGrant(placed->grant);
        if (prev.ok() && prev->signed_at > g.signed_at) {
          return Status::PermissionDenied("rollback: the placed definition was signed at " +
                                          FormatTime(prev->signed_at) + ", after this one (" +
                                          FormatTime(g.signed_at) + ")");
        }
      }
      break;
    }
    case CommandType::kStartRun: {
      OUTPOST_RETURN_IF_ERROR(expect_kind("start"));
      OUTPOST_RETURN_IF_ERROR(
          for_this_site(std::find(g.sites.begin(), g.sites.end(), site_key_) != g.sites.end()));
      OUTPOST_RETURN_IF_ERROR(not_expired());
      if (g.request != c.request) return mismatch("request id");
      if (g.workflow != c.workflow) return mismatch("workflow name");
      if (g.digest != ContentDigest(c.source)) return mismatch("workflow definition");
      if (g.params != c.params) return mismatch("params");
      {
        // The secrets sealed to this site are the signed ones (the hub could seal others).
        std::map<std::string, std::string> mine;
        for (const auto& [param, per_site] : g.secrets) {
          auto it = per_site.find(site_key_);
          if (it != per_site.end()) mine[param] = it->second;
        }
        if (mine != c.secrets) return mismatch("secrets");
      }
      if (g.priority.has_value() != c.has_priority || (c.has_priority && *g.priority != c.priority)) {
        return mismatch("priority");
      }
      if (!placed || placed_digest != g.digest) {
        return Status::PermissionDenied("workflow '" + g.workflow + "' with digest " +
                                        g.digest.substr(0, 16) +
                                        "... is not the definition placed on this site");
      }
      OUTPOST_RETURN_IF_ERROR(policy_->Allows(c.signer, "start", g.workflow, g.digest, labels_));
      break;
    }
    case CommandType::kCancelRun:
    case CommandType::kApprove: {
      const bool cancel = type == CommandType::kCancelRun;
      OUTPOST_RETURN_IF_ERROR(expect_kind(cancel ? "cancel" : "approve"));
      OUTPOST_RETURN_IF_ERROR(for_this_site(g.site == site_key_));
      OUTPOST_RETURN_IF_ERROR(not_expired());
      if (g.run != c.run) return mismatch("run id");
      if (!cancel) {
        if (g.task != c.task) return mismatch("task");
        if ((g.decision == "reject") != (c.reason == "reject")) return mismatch("decision");
      }
      // A run unknown here needs no permission: applying the command does nothing.
      if (!run_workflow.empty()) {
        OUTPOST_RETURN_IF_ERROR(
            policy_->Allows(c.signer, cancel ? "cancel" : "approve", run_workflow, "", labels_));
      }
      break;
    }
    case CommandType::kSetPolicy:
    case CommandType::kRemoveWorkflow:
      break;
  }
  *out = std::move(g);
  return Status::Ok();
}

}  // namespace outpost
