// Signed statements (common/trust.h) and the site's trust gate (site-agent/trust_gate.h):
// every way a statement can be wrong is refused with a reason naming it.
#include "site-agent/trust_gate.h"

#include <gtest/gtest.h>

#include "common/keys.h"

namespace outpost {
namespace {

using json = nlohmann::json;

constexpr TimeMs kNow = 1'800'000'000'000;

class TrustGateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = *GenerateSigningKey();
    alice_ = *GenerateSigningKey();
    bob_ = *GenerateSigningKey();
    site_ = *GenerateCurveKeys();
    other_site_ = *GenerateCurveKeys();
  }

  json PolicyBody(int64_t version, TimeMs expires = kNow + 1000) const {
    return {{"kind", "policy"},
            {"fleet", "f"},
            {"version", version},
            {"issued", kNow - 1000},
            {"expires", expires},
            {"operators",
             {{{"name", "alice"},
               {"key", alice_.public_key},
               {"may", {"apply", "start", "cancel"}},
               {"workflows", {"deploy"}},
               {"sites", {{"role", "edge"}}}},
              {{"name", "bob"},
               {"key", bob_.public_key},
               {"may", {"start"}},
               {"workflows", {"*"}},
               {"sites", {{"role", "core"}}}}}}};
  }

  TrustGate Gate(const std::map<std::string, std::string>& labels = {{"role", "edge"}}) {
    TrustGate g(root_.public_key, site_.public_z85, labels);
    bool newer = false;
    Signed s = *Sign(PolicyBody(1), root_);
    auto p = g.CheckPolicy(s, &newer);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    g.Adopt(s, *p);
    return g;
  }

  Command Placed(const std::string& source, TimeMs signed_at = kNow - 10) {
    Command c;
    c.type = static_cast<uint8_t>(CommandType::kPlaceWorkflow);
    c.workflow = "deploy";
    c.source = source;
    Signed s = *Sign({{"kind", "apply"}, {"workflow", "deploy"}, {"digest", ContentDigest(source)},
                      {"signed", signed_at}},
                     alice_);
    c.grant = s.body;
    c.signer = s.signer;
    c.sig = s.sig;
    return c;
  }

  Command Start(const SigningKey& who, const json& overrides = json::object()) {
    json body = {{"kind", "start"},
                 {"request", "r1"},
                 {"workflow", "deploy"},
                 {"digest", ContentDigest(source_)},
                 {"params", {{"v", "1"}}},
                 {"sites", {site_.public_z85}},
                 {"expires", kNow + 100}};
    body.update(overrides);
    Signed s = *Sign(body, who);
    Command c;
    c.type = static_cast<uint8_t>(CommandType::kStartRun);
    c.request = "r1";
    c.run = "site-1";
    c.workflow = "deploy";
    c.source = source_;
    c.params = {{"v", "1"}};
    c.grant = s.body;
    c.signer = s.signer;
    c.sig = s.sig;
    return c;
  }

  std::string Why(const TrustGate& g, const Command& c, const std::optional<Command>& placed,
                  const std::string& run_workflow = "deploy") {
    Grant grant;
    Status s = g.Check(c, kNow, placed, run_workflow, &grant);
    return s.ok() ? "ok" : s.message();
  }

  SigningKey root_, alice_, bob_;
  CurveKeys site_, other_site_;
  std::string source_ = "name: deploy\ntasks:\n  - id: a\n    run: [true]\n";
};

TEST(CanonicalJson, SortsKeysHasNoSpacesAndRefusesFloatsAndBadUtf8) {
  EXPECT_EQ(*CanonicalJson(json::parse(R"({"b": 1, "a": {"d": [1, "x"], "c": true}})")),
            R"({"a":{"c":true,"d":[1,"x"]},"b":1})");
  EXPECT_FALSE(CanonicalJson(json::parse(R"({"a": 1.5})")).ok());
  EXPECT_FALSE(CanonicalJson(json{{"a", std::string("\xff\xfe")}}).ok());
}

TEST(Signatures, VerifyOnlyTheSignedBytesBySigner) {
  SigningKey k = *GenerateSigningKey(), other = *GenerateSigningKey();
  Signed s = *Sign({{"kind", "cancel"}, {"run", "x"}}, k);
  EXPECT_TRUE(VerifySignature(s).ok());
  Signed altered = s;
  altered.body[altered.body.size() - 3] ^= 1;
  EXPECT_NE(VerifySignature(altered).message().find("bad signature"), std::string::npos);
  Signed swapped = s;
  swapped.signer = other.public_key;
  EXPECT_FALSE(VerifySignature(swapped).ok());
  Signed garbage = s;
  garbage.sig = "not base64!";
  EXPECT_NE(VerifySignature(garbage).message().find("not 64 bytes"), std::string::npos);
  garbage.signer = "ed25519:AAAA";
  EXPECT_NE(VerifySignature(garbage).message().find("not an ed25519"), std::string::npos);
}

TEST(Sealing, OnlyTheSiteTheValueWasSealedToOpensIt) {
  CurveKeys a = *GenerateCurveKeys(), b = *GenerateCurveKeys();
  std::string sealed = *SealToSite("s3cret", a.public_z85);
  EXPECT_EQ(*OpenSealed(sealed, a.public_z85, a.secret_z85), "s3cret");
  EXPECT_FALSE(OpenSealed(sealed, b.public_z85, b.secret_z85).ok());
  std::string flipped = sealed;
  flipped[10] = flipped[10] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(OpenSealed(flipped, a.public_z85, a.secret_z85).ok());
  EXPECT_FALSE(OpenSealed("%%%", a.public_z85, a.secret_z85).ok());
}

TEST_F(TrustGateTest, PoliciesComeOnlyFromTheRootAndOnlyMoveForward) {
  TrustGate g = Gate();
  bool newer = false;
  auto foreign = g.CheckPolicy(*Sign(PolicyBody(5), alice_), &newer);
  EXPECT_NE(foreign.status().message().find("not by the fleet root"), std::string::npos);
  Signed v1_again = *Sign(PolicyBody(1), root_);
  // Ed25519 is deterministic: the same body signs to the same bytes, a repeat is harmless.
  EXPECT_TRUE(g.CheckPolicy(v1_again, &newer).ok());
  EXPECT_FALSE(newer);
  auto other_v1 = g.CheckPolicy(*Sign(PolicyBody(1, kNow + 5000), root_), &newer);
  EXPECT_NE(other_v1.status().message().find("a version is signed once"), std::string::npos);
  Signed v3 = *Sign(PolicyBody(3), root_);
  auto p3 = g.CheckPolicy(v3, &newer);
  ASSERT_TRUE(p3.ok());
  EXPECT_TRUE(newer);
  g.Adopt(v3, *p3);
  auto v2 = g.CheckPolicy(*Sign(PolicyBody(2), root_), &newer);
  EXPECT_NE(v2.status().message().find("older than v3"), std::string::npos);
  // A policy that does not parse is refused with the field named.
  json bad = PolicyBody(4);
  bad["operators"][0]["may"] = {"rm -rf"};
  EXPECT_NE(g.CheckPolicy(*Sign(bad, root_), &newer).status().message().find("unknown action"),
            std::string::npos);
}

TEST_F(TrustGateTest, AStartRunsOnlyAsSignedForThisSiteByAnAllowedOperatorInTime) {
  TrustGate g = Gate();
  const Command placed = Placed(source_);
  EXPECT_EQ(Why(g, Start(alice_), placed), "ok");
  Command unsigned_start = Start(alice_);
  unsigned_start.grant.clear();
  EXPECT_EQ(Why(g, unsigned_start, placed), "unsigned: no operator signed it");
  EXPECT_NE(Why(g, Start(alice_, {{"sites", {other_site_.public_z85}}}), placed).find("another site"),
            std::string::npos);
  EXPECT_NE(Why(g, Start(alice_, {{"expires", kNow}}), placed).find("expired"), std::string::npos);
  Command params = Start(alice_);
  params.params["v"] = "2";
  EXPECT_NE(Why(g, params, placed).find("params is not the signed one"), std::string::npos);
  Command source = Start(alice_);
  source.source += "  - id: b\n    run: [true]\n";
  EXPECT_NE(Why(g, source, placed).find("workflow definition is not the signed one"),
            std::string::npos);
  Command request = Start(alice_);
  request.request = "r2";
  EXPECT_NE(Why(g, request, placed).find("request id"), std::string::npos);
  Command priority = Start(alice_);
  priority.has_priority = true;
  priority.priority = 9;
  EXPECT_NE(Why(g, priority, placed).find("priority"), std::string::npos);
  // bob may start anything, but only on core sites.
  EXPECT_NE(Why(g, Start(bob_), placed).find("not allowed by policy v1: operator bob may not start on this site"),
            std::string::npos);
  TrustGate core = Gate({{"role", "core"}});
  EXPECT_EQ(Why(core, Start(bob_), placed), "ok");
  // A definition other than the placed, signed one does not start.
  EXPECT_NE(Why(g, Start(alice_), std::nullopt).find("not the definition placed"), std::string::npos);
  EXPECT_NE(Why(g, Start(alice_), Placed("name: deploy\ntasks: []\n")).find("not the definition placed"),
            std::string::npos);
  // A cancel statement is not a start.
  Command kind = Start(alice_);
  Signed cancel = *Sign({{"kind", "cancel"}, {"run", "site-1"}, {"site", site_.public_z85},
                         {"expires", kNow + 10}},
                        alice_);
  kind.grant = cancel.body;
  kind.sig = cancel.sig;
  EXPECT_NE(Why(g, kind, placed).find("is a 'cancel', not a 'start'"), std::string::npos);
}

TEST_F(TrustGateTest, PlacementsAreSignedAllowedAndNeverRolledBack) {
  TrustGate g = Gate();
  EXPECT_EQ(Why(g, Placed(source_, kNow - 5), Placed(source_, kNow - 10)), "ok");
  EXPECT_NE(Why(g, Placed(source_, kNow - 20), Placed(source_, kNow - 10)).find("rollback"),
            std::string::npos);
  Command other = Placed(source_);
  other.workflow = "other";
  EXPECT_NE(Why(g, other, std::nullopt).find("workflow name"), std::string::npos);
  // Removal stops work and needs no signature.
  Command remove;
  remove.type = static_cast<uint8_t>(CommandType::kRemoveWorkflow);
  remove.workflow = "deploy";
  EXPECT_EQ(Why(g, remove, std::nullopt), "ok");
}

TEST_F(TrustGateTest, CancelsAndApprovalsNameTheRunTheSiteAndTheAction) {
  TrustGate g = Gate();
  auto decision = [&](const SigningKey& who, const std::string& kind, const json& extra) {
    json body = {{"kind", kind}, {"run", "site-1"}, {"site", site_.public_z85}, {"expires", kNow + 10}};
    if (extra.is_object()) body.update(extra);
    Signed s = *Sign(body, who);
    Command c;
    c.type = static_cast<uint8_t>(kind == "cancel" ? CommandType::kCancelRun : CommandType::kApprove);
    c.run = "site-1";
    c.task = "gate";
    c.reason = "approve";
    c.grant = s.body;
    c.signer = s.signer;
    c.sig = s.sig;
    return c;
  };
  EXPECT_EQ(Why(g, decision(alice_, "cancel", {}), std::nullopt), "ok");
  Command other_run = decision(alice_, "cancel", {});
  other_run.run = "site-2";
  EXPECT_NE(Why(g, other_run, std::nullopt).find("run id"), std::string::npos);
  EXPECT_NE(Why(g, decision(alice_, "cancel", {{"site", other_site_.public_z85}}), std::nullopt)
                .find("another site"),
            std::string::npos);
  // alice may not approve.
  Command approve = decision(alice_, "approve", {{"task", "gate"}, {"decision", "approve"}});
  EXPECT_NE(Why(g, approve, std::nullopt).find("may not approve"), std::string::npos);
  // A rejection signed cannot be turned into an approval.
  Command flipped = decision(alice_, "approve", {{"task", "gate"}, {"decision", "reject"}});
  EXPECT_NE(Why(g, flipped, std::nullopt).find("decision"), std::string::npos);
}

TEST_F(TrustGateTest, AnExpiredOrMissingPolicyAllowsNothing) {
  TrustGate none(root_.public_key, site_.public_z85, {});
  EXPECT_NE(Why(none, Start(alice_), Placed(source_)).find("no policy"), std::string::npos);
  TrustGate g(root_.public_key, site_.public_z85, {{"role", "edge"}});
  bool newer = false;
  Signed s = *Sign(PolicyBody(1, kNow), root_);
  g.Adopt(s, *g.CheckPolicy(s, &newer));
  EXPECT_NE(Why(g, Start(alice_), Placed(source_)).find("policy v1 expired"), std::string::npos);
}

}  // namespace
}  // namespace outpost
