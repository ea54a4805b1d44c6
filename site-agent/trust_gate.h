// TrustGate: what a site checks before it applies a hub command, when it has a trust root.
//
// With a fleet root configured (--trust-root), the site applies a command only if it
// carries a statement signed by an operator whom the site's current policy (signed by that
// root) allows to do exactly this, here, now: the signature verifies, the statement is of
// the command's kind and says what the command says (workflow, content digest, params,
// request, run, task), it names this site's key, it has not expired, and the policy rule
// for its signer covers the action, the workflow and this site's labels. Policies only
// move forward (a higher version; an older or equal-but-different one is refused) and an
// expired policy allows nothing. Without a root the gate is absent and the site trusts its
// hub absolutely (labs; said in `status` and at start).
//
// Sans-I/O: pure checks over values; the caller looks up state (placed workflows, used
// requests) and records the outcome. docs/security.md is the reference.
//
// Thread-safety: one owner thread.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/protocol/command.h"
#include "common/status.h"
#include "common/trust.h"

namespace outpost {

// State key of the adopted policy (its Signed form, msgpack [body, signer, sig]).
constexpr char kPolicyStateKey[] = "trust/policy";
// State key prefix of used start requests: "trust/used/<request>" -> expiry (u64).
constexpr char kUsedRequestPrefix[] = "trust/used/";

class TrustGate {
 public:
  TrustGate(std::string root_key, std::string site_key_z85, std::map<std::string, std::string> labels)
      : root_(std::move(root_key)), site_key_(std::move(site_key_z85)), labels_(std::move(labels)) {}

  // Verifies a policy statement against the root and the policy in force. Ok with
  // *newer = false when it is the policy already in force (a harmless repeat).
  Result<Policy> CheckPolicy(const Signed& s, bool* newer) const;
  // Makes a checked policy the one in force.
  void Adopt(const Signed& s, Policy p);

  // What `c` may do here. `placed` is the site's current placement of c.workflow (the
  // encoded kPlaceWorkflow command) for starts and placements; `run_workflow` the workflow
  // of the run a cancel or approval names (empty if the run is unknown here).
  Status Check(const Command& c, TimeMs now, const std::optional<Command>& placed,
               const std::string& run_workflow, Grant* grant) const;

  const Policy* policy() const { return policy_ ? &*policy_ : nullptr; }
  const std::string& root() const { return root_; }

 private:
  Status CheckPolicyInForce(TimeMs now) const;

  std::string root_;
  std::string site_key_;
  std::map<std::string, std::string> labels_;
  std::optional<Policy> policy_;
  Signed policy_signed_;
};

std::string EncodeSigned(const Signed& s);
Result<Signed> DecodeSigned(std::string_view bytes);

}  // namespace outpost
