#include "common/trust.h"

#include <sodium.h>
#include <sys/stat.h>
#include <zmq.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "common/json_fields.h"
#include "common/keys.h"
#include "common/labels.h"

namespace outpost {

using json = nlohmann::json;

namespace {

// Bounds on what a statement may hold (a statement rides in one command or request).
constexpr size_t kMaxStatement = 256 * 1024;
constexpr size_t kMaxPolicyOperators = 1000;
constexpr size_t kMaxListEntries = 10000;

bool SodiumReady() {
  static const bool ready = sodium_init() >= 0;
  return ready;
}


std::optional<std::string> DecodePublic(const std::string& text) {
  if (text.rfind(kPublicKeyPrefix, 0) != 0) return std::nullopt;
  auto raw = FromBase64(std::string_view(text).substr(sizeof kPublicKeyPrefix - 1));
  if (!raw || raw->size() != crypto_sign_PUBLICKEYBYTES) return std::nullopt;
  return raw;
}

bool ValidHex64(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// A JSON array of bounded strings, read without anything that can throw.
Status StrArray(const json& obj, const char* key, std::vector<std::string>* out, bool required) {
  JsonFields f(obj);
  Status s = f.StrList(key, out, required);
  if (!s.ok()) return s;
  if (out->size() > kMaxListEntries) {
    return Status::InvalidArgument(std::string("'") + key + "' holds more than " +
                                   std::to_string(kMaxListEntries) + " entries");
  }
  return Status::Ok();
}

Result<json> ParseBody(const std::string& body, const char* what) {
  if (body.size() > kMaxStatement) {
    return Status::InvalidArgument(std::string(what) + " is larger than " +
                                   std::to_string(kMaxStatement) + " bytes");
  }
  if (!JsonDepthWithin(body, kMaxRequestDepth)) {
    return Status::InvalidArgument(std::string(what) + " nests too deep");
  }
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::InvalidArgument(std::string(what) + " is not a JSON object");
  }
  return j;
}

}  // namespace

std::string ToBase64(std::string_view bytes) {
  SodiumReady();
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

std::optional<std::string> FromBase64(std::string_view text) {
  SodiumReady();
  std::string out(text.size() / 4 * 3 + 3, '\0');
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &len, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != text.data() + text.size()) {
    return std::nullopt;
  }
  out.resize(len);
  return out;
}

Result<SigningKey> GenerateSigningKey() {
  if (!SodiumReady()) return Status::Internal("libsodium did not initialise");
  unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
  crypto_sign_keypair(pk, sk);
  SigningKey k;
  k.public_key = kPublicKeyPrefix + ToBase64({reinterpret_cast<char*>(pk), sizeof pk});
  k.secret.assign(reinterpret_cast<char*>(sk), sizeof sk);
  sodium_memzero(sk, sizeof sk);
  return k;
}

Status WriteSigningKey(const std::string& path, const SigningKey& key) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec) || std::filesystem::exists(path + ".pub", ec)) {
    return Status::AlreadyExists(path + " or " + path + ".pub already exists; a signing key is "
                                 "never overwritten");
  }
  OUTPOST_RETURN_IF_ERROR(WriteSecretFile(path, kSecretKeyPrefix + ToBase64(key.secret) + "\n"));
  std::ofstream pub(path + ".pub", std::ios::trunc);
  pub << key.public_key << "\n";
  if (!pub) return Status::IoError("cannot write " + path + ".pub");
  return Status::Ok();
}

Result<SigningKey> LoadSigningKey(const std::string& path) {
  if (!SodiumReady()) return Status::Internal("libsodium did not initialise");
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    return Status::NotFound("signing key " + path + " does not exist");
  }
  if ((st.st_mode & 077) != 0) {
    return Status::FailedPrecondition(path + " is readable by others; chmod 600 it");
  }
  const std::string line = ReadFirstLine(path);
  std::optional<std::string> raw;
  if (line.rfind(kSecretKeyPrefix, 0) == 0) {
    raw = FromBase64(std::string_view(line).substr(sizeof kSecretKeyPrefix - 1));
  }
  if (!raw || raw->size() != crypto_sign_SECRETKEYBYTES) {
    return Status::InvalidArgument(path + " does not hold an Ed25519 secret key (" +
                                   kSecretKeyPrefix + "BASE64)");
  }
  SigningKey k;
  k.secret = *raw;
  unsigned char pk[crypto_sign_PUBLICKEYBYTES];
  crypto_sign_ed25519_sk_to_pk(pk, reinterpret_cast<const unsigned char*>(k.secret.data()));
  k.public_key = kPublicKeyPrefix + ToBase64({reinterpret_cast<char*>(pk), sizeof pk});
  return k;
}

bool IsSigningPublicKey(const std::string& text) { return DecodePublic(text).has_value(); }

Result<std::string> ReadSigningPublicKey(const std::string& text_or_path) {
  if (IsSigningPublicKey(text_or_path)) return text_or_path;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(text_or_path, ec)) {
    return Status::InvalidArgument("'" + text_or_path + "' is neither an " + kPublicKeyPrefix +
                                   " key nor a readable file");
  }
  std::string line = ReadFirstLine(text_or_path);
  if (!IsSigningPublicKey(line)) {
    return Status::InvalidArgument(text_or_path + " does not hold an " + kPublicKeyPrefix +
                                   "BASE64 public key");
  }
  return line;
}

Result<std::string> CanonicalJson(const json& body) {
  // Floats have no one spelling; statements use integers (milliseconds, versions).
  std::vector<const json*> stack{&body};
  while (!stack.empty()) {
    const json* v = stack.back();
    stack.pop_back();
    if (v->is_number_float()) return Status::InvalidArgument("a signed statement holds a float");
    if (v->is_structured()) {
      for (const auto& child : *v) stack.push_back(&child);
    }
  }
  try {
    return body.dump(-1, ' ', false, json::error_handler_t::strict);
  } catch (const std::exception&) {
    return Status::InvalidArgument("a signed statement holds invalid UTF-8");
  }
}

std::string Blake2bHex(std::string_view content, size_t bytes) {
  SodiumReady();
  unsigned char out[crypto_generichash_BYTES_MAX];
  bytes = std::min<size_t>(std::max<size_t>(bytes, crypto_generichash_BYTES_MIN), sizeof out);
  crypto_generichash(out, bytes, reinterpret_cast<const unsigned char*>(content.data()),
                     content.size(), nullptr, 0);
  static const char* kHex = "0123456789abcdef";
  std::string hex;
  for (size_t i = 0; i < bytes; ++i) {
    hex += kHex[out[i] >> 4];
    hex += kHex[out[i] & 15];
  }
  return hex;
}

std::string ContentDigest(std::string_view content) { return Blake2bHex(content, 32); }

Result<Signed> Sign(const json& body, const SigningKey& key) {
  if (!SodiumReady()) return Status::Internal("libsodium did not initialise");
  if (key.secret.size() != crypto_sign_SECRETKEYBYTES) {
    return Status::InvalidArgument("not an Ed25519 secret key");
  }
  OUTPOST_ASSIGN_OR_RETURN(std::string canon, CanonicalJson(body));
  const std::string msg = kSignDomain + canon;
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(msg.data()),
                       msg.size(), reinterpret_cast<const unsigned char*>(key.secret.data()));
  return Signed{canon, key.public_key, ToBase64({reinterpret_cast<char*>(sig), sizeof sig})};
}

Status VerifySignature(const Signed& s) {
  if (!SodiumReady()) return Status::Internal("libsodium did not initialise");
  auto pk = DecodePublic(s.signer);
  if (!pk) return Status::PermissionDenied("the signer is not an ed25519 public key");
  auto sig = FromBase64(s.sig);
  if (!sig || sig->size() != crypto_sign_BYTES) {
    return Status::PermissionDenied("the signature is not 64 bytes of base64");
  }
  const std::string msg = kSignDomain + s.body;
  if (crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(sig->data()),
                                  reinterpret_cast<const unsigned char*>(msg.data()), msg.size(),
                                  reinterpret_cast<const unsigned char*>(pk->data())) != 0) {
    return Status::PermissionDenied("bad signature: the statement was not signed by " + s.signer +
                                    " or was altered");
  }
  return Status::Ok();
}

json SignedToJson(const Signed& s) {
  return {{"body", s.body}, {"signer", s.signer}, {"sig", s.sig}};
}

Result<Signed> SignedFromJson(const json& j, const std::string& where) {
  if (!j.is_object()) return Status::InvalidArgument("'" + where + "' must be an object");
  JsonFields f(j);
  Signed s;
  Status st = f.Str("body", &s.body, kRequired, kMaxStatement)
                  .And(f.Str("signer", &s.signer, kRequired, 64))
                  .And(f.Str("sig", &s.sig, kRequired, 128));
  if (!st.ok()) return st.WithContext(where);
  return s;
}

// ---------------------------------------------------------------------------------------

const PolicyRule* Policy::FindOperator(const std::string& key) const {
  for (const auto& r : operators) {
    if (r.key == key) return &r;
  }
  return nullptr;
}

Status Policy::Allows(const std::string& signer, const std::string& action,
                      const std::string& workflow, const std::string& digest,
                      const std::map<std::string, std::string>& labels) const {
  const std::string v = "policy v" + std::to_string(version);
  const PolicyRule* r = FindOperator(signer);
  if (!r) return Status::PermissionDenied("not allowed by " + v + ": " + signer + " is not an operator in it");
  if (!r->may.count(action)) {
    return Status::PermissionDenied("not allowed by " + v + ": operator " + r->name + " may not " +
                                    action);
  }
  const bool workflow_ok = std::any_of(r->workflows.begin(), r->workflows.end(), [&](const auto& w) {
    return w == "*" || w == workflow || (!digest.empty() && w == "digest:" + digest);
  });
  if (!workflow_ok) {
    return Status::PermissionDenied("not allowed by " + v + ": operator " + r->name + " may not " +
                                    action + " workflow '" + workflow + "'");
  }
  if (!SelectorMatches(r->sites, labels)) {
    return Status::PermissionDenied("not allowed by " + v + ": operator " + r->name + " may not " +
                                    action + " on this site (its labels do not match the rule)");
  }
  return Status::Ok();
}

Result<Policy> ParsePolicy(const std::string& body) {
  OUTPOST_ASSIGN_OR_RETURN(json j, ParseBody(body, "the policy"));
  JsonFields f(j);
  std::string kind;
  Policy p;
  Status s = f.Str("kind", &kind, kRequired)
                 .And(f.Str("fleet", &p.fleet, kRequired, 256))
                 .And(f.Int("version", &p.version, 1, INT64_MAX, kRequired))
                 .And(f.Int("issued", &p.issued, 0, INT64_MAX, kRequired))
                 .And(f.Int("expires", &p.expires, 0, INT64_MAX, kRequired));
  if (!s.ok()) return s.WithContext("policy");
  if (kind != "policy") return Status::InvalidArgument("the statement is a '" + kind + "', not a policy");
  auto ops = j.find("operators");
  if (ops == j.end() || !ops->is_array()) {
    return Status::InvalidArgument("policy: 'operators' must be an array");
  }
  if (ops->size() > kMaxPolicyOperators) {
    return Status::InvalidArgument("policy: more than " + std::to_string(kMaxPolicyOperators) +
                                   " operators");
  }
  size_t i = 0;
  for (const auto& o : *ops) {
    const std::string where = "policy: operators[" + std::to_string(i++) + "]";
    if (!o.is_object()) return Status::InvalidArgument(where + " must be an object");
    JsonFields of(o);
    PolicyRule r;
    std::vector<std::string> may;
    Status os = of.Str("name", &r.name, kRequired, 128)
                    .And(of.Str("key", &r.key, kRequired, 64))
                    .And(StrArray(o, "may", &may, kRequired))
                    .And(StrArray(o, "workflows", &r.workflows, kRequired))
                    .And(of.StrMap("sites", &r.sites));
    if (!os.ok()) return os.WithContext(where);
    if (!IsSigningPublicKey(r.key)) {
      return Status::InvalidArgument(where + ": 'key' is not an " + kPublicKeyPrefix + " key");
    }
    for (const auto& a : may) {
      if (std::find(std::begin(kActions), std::end(kActions), a) == std::end(kActions)) {
        return Status::InvalidArgument(where + ": unknown action '" + a +
                                       "' (apply, start, cancel, approve)");
      }
      r.may.insert(a);
    }
    for (const auto& w : r.workflows) {
      if (w.rfind("digest:", 0) == 0 && !ValidHex64(w.substr(7))) {
        return Status::InvalidArgument(where + ": '" + w + "' is not digest: and 64 hex digits");
      }
    }
    p.operators.push_back(std::move(r));
  }
  if (p.expires <= p.issued) return Status::InvalidArgument("policy: 'expires' is not after 'issued'");
  return p;
}

Result<Grant> ParseGrant(const std::string& body) {
  OUTPOST_ASSIGN_OR_RETURN(json j, ParseBody(body, "the signed statement"));
  JsonFields f(j);
  Grant g;
  Status s = f.Str("kind", &g.kind, kRequired, 16);
  if (!s.ok()) return s;
  if (g.kind == "apply") {
    s = f.Str("workflow", &g.workflow, kRequired, 256)
            .And(f.Str("digest", &g.digest, kRequired, 64))
            .And(f.Int("signed", &g.signed_at, 0, INT64_MAX, kRequired));
  } else if (g.kind == "start") {
    int64_t priority = 0;
    s = f.Str("request", &g.request, kRequired, 128)
            .And(f.Str("workflow", &g.workflow, kRequired, 256))
            .And(f.Str("digest", &g.digest, kRequired, 64))
            .And(f.StrMap("params", &g.params))
            .And(f.Int("priority", &priority, INT32_MIN, INT32_MAX))
            .And(StrArray(j, "sites", &g.sites, kRequired))
            .And(f.Int("expires", &g.expires, 0, INT64_MAX, kRequired));
    if (s.ok() && f.Has("priority")) g.priority = priority;
    auto sec = j.find("secrets");
    if (s.ok() && sec != j.end()) {
      if (!sec->is_object()) return Status::InvalidArgument("'secrets' must be an object");
      JsonFields pf(*sec);
      for (const auto& [param, per_site] : sec->items()) {
        std::map<std::string, std::string> m;
        if (Status ps = pf.StrMap(param.c_str(), &m, kRequired); !ps.ok()) {
          return ps.WithContext("secrets");
        }
        g.secrets[param] = std::move(m);
      }
    }
  } else if (g.kind == "cancel") {
    s = f.Str("run", &g.run, kRequired, 256)
            .And(f.Str("site", &g.site, kRequired, 64))
            .And(f.Int("expires", &g.expires, 0, INT64_MAX, kRequired));
  } else if (g.kind == "approve") {
    s = f.Str("run", &g.run, kRequired, 256)
            .And(f.Str("task", &g.task, kRequired, 256))
            .And(f.Str("decision", &g.decision, kRequired, 16))
            .And(f.Str("site", &g.site, kRequired, 64))
            .And(f.Int("expires", &g.expires, 0, INT64_MAX, kRequired));
    if (s.ok() && g.decision != "approve" && g.decision != "reject") {
      return Status::InvalidArgument("'decision' must be approve or reject");
    }
  } else {
    return Status::InvalidArgument("unknown statement kind '" + g.kind + "'");
  }
  if (!s.ok()) return s.WithContext(g.kind + " statement");
  if (!g.digest.empty() && !ValidHex64(g.digest)) {
    return Status::InvalidArgument("'digest' is not 64 hex digits");
  }
  return g;
}

Result<std::string> SealToSite(const std::string& plaintext, const std::string& site_key_z85) {
  if (!SodiumReady()) return Status::Internal("libsodium did not initialise");
  uint8_t pk[32];
  if (site_key_z85.size() != 40 || !zmq_z85_decode(pk, site_key_z85.c_str())) {
    return Status::InvalidArgument("the site key is not a 40-character Z85 key");
  }
  std::string ct(plaintext.size() + crypto_box_SEALBYTES, '\0');
  crypto_box_seal(reinterpret_cast<unsigned char*>(ct.data()),
                  reinterpret_cast<const unsigned char*>(plaintext.data()), plaintext.size(), pk);
  return ToBase64(ct);
}

Result<std::string> OpenSealed(const std::string& sealed_b64, const std::string& site_public_z85,
                               const std::string& site_secret_z85) {
  if (!SodiumReady()) return Status::Internal("libsodium did not initialise");
  uint8_t pk[32], sk[32];
  if (site_public_z85.size() != 40 || site_secret_z85.size() != 40 ||
      !zmq_z85_decode(pk, site_public_z85.c_str()) || !zmq_z85_decode(sk, site_secret_z85.c_str())) {
    return Status::InvalidArgument("the site's keys are not Z85");
  }
  auto ct = FromBase64(sealed_b64);
  if (!ct || ct->size() < crypto_box_SEALBYTES) {
    sodium_memzero(sk, sizeof sk);
    return Status::InvalidArgument("the sealed value is not base64 of a sealed box");
  }
  std::string pt(ct->size() - crypto_box_SEALBYTES, '\0');
  const int rc = crypto_box_seal_open(reinterpret_cast<unsigned char*>(pt.data()),
                                      reinterpret_cast<const unsigned char*>(ct->data()),
                                      ct->size(), pk, sk);
  sodium_memzero(sk, sizeof sk);
  if (rc != 0) {
    return Status::PermissionDenied("the sealed value does not open with this site's key (sealed "
                                    "to another site, or altered)");
  }
  return pt;
}

}  // namespace outpost
