// Trust: Ed25519 signing keys, signed statements, the fleet policy and operator grants.
//
// The fleet root (an Ed25519 key kept offline) signs a policy; operators' keys, named in
// that policy, sign what they ask sites to do. A signed statement is the canonical JSON of
// its body (object keys sorted, no spaces, integers only, UTF-8) with an Ed25519
// signature over "outpost-signed-v1\n" + those bytes. Verification runs over the bytes as
// carried, then the body is parsed with the typed reader: a signer never has to be trusted
// to canonicalise, and nothing unsigned is ever parsed for meaning.
//
// Every body names its kind ("policy", "apply", "start", "cancel", "approve"), so a
// signature over one kind can never be passed off as another. docs/security.md describes
// the statements field by field.
//
// Thread-safety: free functions and value types; no shared state.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/status.h"

namespace outpost {

inline constexpr char kSignDomain[] = "outpost-signed-v1\n";
inline constexpr char kPublicKeyPrefix[] = "ed25519:";
inline constexpr char kSecretKeyPrefix[] = "ed25519-secret:";

// An Ed25519 keypair. public_key is "ed25519:" + base64 of 32 bytes; secret is the raw
// 64-byte libsodium secret key (it embeds the public key).
struct SigningKey {
  std::string public_key;
  std::string secret;
};

Result<SigningKey> GenerateSigningKey();
// Writes PATH (secret, mode 0600, never overwritten) and PATH.pub.
Status WriteSigningKey(const std::string& path, const SigningKey& key);
// Reads a secret key file; refused when group or others can read it.
Result<SigningKey> LoadSigningKey(const std::string& path);
// "ed25519:..." given inline, or the first line of a file holding it.
Result<std::string> ReadSigningPublicKey(const std::string& text_or_path);
// Whether `text` is "ed25519:" + base64 of exactly 32 bytes.
bool IsSigningPublicKey(const std::string& text);

// The canonical JSON of a body: refused if it holds a float or invalid UTF-8.
Result<std::string> CanonicalJson(const nlohmann::json& body);

// A 256-bit BLAKE2b digest of content, as 64 hex digits: what statements bind to.
std::string ContentDigest(std::string_view content);
// BLAKE2b of `bytes` bytes (16 to 64) as hex.
std::string Blake2bHex(std::string_view content, size_t bytes);

struct Signed {
  std::string body;    // canonical JSON bytes, exactly as signed
  std::string signer;  // "ed25519:..."
  std::string sig;     // base64 of the 64-byte signature
  bool empty() const { return body.empty(); }
};

Result<Signed> Sign(const nlohmann::json& body, const SigningKey& key);
// Ok when `sig` is a valid signature by `signer` over `body`; the error says which part
// is wrong (malformed key, malformed signature, signature does not verify).
Status VerifySignature(const Signed& s);
// {"body": "...", "signer": "...", "sig": "..."}: the form files and requests carry.
nlohmann::json SignedToJson(const Signed& s);
// Typed: every field a bounded string; the error names the field under `where`.
Result<Signed> SignedFromJson(const nlohmann::json& j, const std::string& where);

// ---------------------------------------------------------------------------------------
// The policy (signed by the fleet root).
//
// {"kind": "policy", "fleet": "acme", "version": 3, "issued": MS, "expires": MS,
//  "operators": [{"name": "alice", "key": "ed25519:...",
//                 "may": ["apply", "start", "cancel", "approve"],
//                 "workflows": ["backup", "digest:<64 hex>", "*"],
//                 "sites": {"role": "edge"}}]}
struct PolicyRule {
  std::string name;
  std::string key;
  std::set<std::string> may;
  std::vector<std::string> workflows;       // names, "digest:HEX", or "*"
  std::map<std::string, std::string> sites;  // label selector; empty: every site
};

struct Policy {
  std::string fleet;
  int64_t version = 0;
  TimeMs issued = 0;
  TimeMs expires = 0;
  std::vector<PolicyRule> operators;

  // Ok when the operator whose key is `signer` may do `action` with workflow `workflow`
  // (whose content digest is `digest`) at a site labelled `labels`; otherwise
  // PermissionDenied naming the policy version and what is missing.
  Status Allows(const std::string& signer, const std::string& action, const std::string& workflow,
                const std::string& digest, const std::map<std::string, std::string>& labels) const;
  const PolicyRule* FindOperator(const std::string& key) const;
};

inline constexpr const char* kActions[] = {"apply", "start", "cancel", "approve"};

Result<Policy> ParsePolicy(const std::string& body);

// ---------------------------------------------------------------------------------------
// Grants: what an operator signs.
//
// apply   {"kind":"apply","workflow":W,"digest":HEX,"signed":MS}
// start   {"kind":"start","request":ID,"workflow":W,"digest":HEX,"params":{...},
//          "priority":N (optional),"sites":[SITE_CURVE_KEY,...],"expires":MS,
//          "secrets":{PARAM:{SITE_CURVE_KEY: BASE64_SEALED}} (optional)}
// cancel  {"kind":"cancel","run":ID,"site":SITE_CURVE_KEY,"expires":MS}
// approve {"kind":"approve","run":ID,"task":T,"decision":"approve"|"reject",
//          "site":SITE_CURVE_KEY,"expires":MS}
struct Grant {
  std::string kind;
  std::string workflow, digest, request, run, task, decision;
  std::map<std::string, std::string> params;
  std::optional<int64_t> priority;
  std::vector<std::string> sites;  // start: the sites (CURVE public keys) it is for
  std::string site;                // cancel/approve
  TimeMs expires = 0;
  TimeMs signed_at = 0;            // apply
  std::map<std::string, std::map<std::string, std::string>> secrets;
};

Result<Grant> ParseGrant(const std::string& body);

// Sealed secrets: crypto_box_seal to a site's CURVE (X25519) public key, base64.
Result<std::string> SealToSite(const std::string& plaintext, const std::string& site_key_z85);
Result<std::string> OpenSealed(const std::string& sealed_b64, const std::string& site_public_z85,
                               const std::string& site_secret_z85);

std::string ToBase64(std::string_view bytes);
std::optional<std::string> FromBase64(std::string_view text);

}  // namespace outpost
