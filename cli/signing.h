// Signing what an operator asks for (docs/security.md): with a signing key (--signing-key
// or $OUTPOST_SIGNING_KEY), outpostctl adds a "signed" statement to workflow.apply,
// run.start, run.cancel and run.approve. Sites with a trust root run only signed work.
//
// The statements bind to what the operator means, not to what the hub says: an apply to
// the file's own bytes; a start to the digest of the definition and to the keys of the
// sites it is for (looked up at the hub, but a wrong key only makes the start useless:
// the site checks its own key and its own placed, signed definition).
//
// Thread-safety: one thread, as the clients.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "cli/client.h"
#include "common/trust.h"

namespace outpost::cli {

// The operator's signing key, or nullopt when none is configured. On a bad key file it
// prints the error and sets *code.
std::optional<SigningKey> LoadOperatorSigningKey(const Args& a, int* code);

// --expires (default `fallback`) from now, in ms since the epoch; 0 (printed) when invalid.
TimeMs ExpiryFrom(const Args& a, const char* fallback);

// Each returns kExitOk and sets *signed_json, or prints the error and returns the code.
int SignApply(const SigningKey& key, const std::string& workflow, const std::string& source,
              nlohmann::json* signed_json);
// A hub run.start before it is sent: secret params are taken out of "params" and sealed to
// each target site's key ("secrets"); with a signing key, the start is signed (its
// request id chosen here when none was given). Resolves the target sites at the hub.
int PrepareStart(const Args& a, const std::optional<SigningKey>& key, HubClient& hub,
                 nlohmann::json* req);
int SignRunDecision(const Args& a, const SigningKey& key, HubClient& hub, const std::string& kind,
                    const std::string& run, const std::string& task, nlohmann::json* req);

// trust keygen FILE | trust sign-policy FILE | trust show FILE (no hub needed).
int TrustCommand(const Args& a);
// policy push FILE | policy show (the hub).
int PolicyCommand(const Args& a, HubClient& hub);

}  // namespace outpost::cli
