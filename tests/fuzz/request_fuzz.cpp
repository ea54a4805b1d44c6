// outpost-fuzz-requests: a seeded, structure-aware fuzzer for the two JSON request
// boundaries — the hub's operator API and the agent's local control socket.
//
// Each request is an object whose "op" is one of the known ops (or a random value), and
// whose fields are drawn from the names every op reads, each with a value of a random JSON
// type: strings (also invalid UTF-8, very long, control characters), integers at and past
// every bound, fractions, booleans, null, arrays, objects and deep nesting. Sometimes the
// request itself is not an object.
//
// Hub: requests go to a real HubCore (in-process, RocksDB on an in-memory Env) that has an
// enrolled site, a placed workflow and a run, so handlers get past their first checks. Every
// reply must be an object with a boolean "ok" that serializes; nothing may throw; and the
// core's exception counter must stay 0 (a handler that threw is a bug even if caught).
// Agent (--agent-bin PATH): the real outpost-agent is started on a temporary data dir and the
// same kind of requests go over its control socket; every request must get a JSON reply
// and the agent must still be alive and answering "status" at the end.
//
// The seed is printed; replay with --seed S --iterations N.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <rocksdb/env.h>

#include "common/json_fields.h"
#include "common/keys.h"
#include "common/protocol/control.h"
#include "common/random.h"
#include "hub/hub_core.h"
#include "hub/rocks_hub_store.h"
#include "site-agent/control_request.h"
#include "site-agent/trust_gate.h"
#include "common/keys.h"
#include "common/trust.h"

namespace outpost {
namespace {

using json = nlohmann::json;

const std::vector<std::string> kFields = {
    "op", "name", "key", "as", "labels", "set", "remove", "purge", "source", "file", "target",
    "workflow", "request", "site", "id", "task", "reason", "state", "params", "priority",
    "reject", "limit", "attempt", "by", "rid", "signed", "policy", "secrets"};

// Signed statements: random bodies of every kind, really signed (so they get past the
// signature into the typed parsers), or not.
const std::vector<std::string> kStatementFields = {
    "kind", "fleet", "version", "issued", "expires", "operators", "workflow", "digest", "signed",
    "request", "params", "priority", "sites", "secrets", "run", "site", "task", "decision",
    "name", "key", "may", "workflows"};
const SigningKey& FuzzKey() {
  static const SigningKey key = *GenerateSigningKey();
  return key;
}

uint64_t Below(Rng* rng, uint64_t n) { return n == 0 ? 0 : rng->Uniform(n - 1); }

std::string RandomString(Rng* rng, const std::vector<std::string>& likely) {
  switch (Below(rng, 8)) {
    case 0: return "";
    case 1: return std::string("\xff\xfe\xc3\x28 bad utf8 \xed\xa0\x80", 17);
    case 2: return std::string(Below(rng, 3) ? 300 : 2 << 20, 'x');
    case 3: return std::string("a\nb\x01\x1b[31m;$(rm -rf /);`id`\"'", 27);
    default: return likely[Below(rng, likely.size())];
  }
}

json RandomValue(Rng* rng, const std::vector<std::string>& likely, int depth = 0) {
  switch (Below(rng, 12)) {
    case 0: return nullptr;
    case 1: return Below(rng, 2) == 1;
    case 2: return static_cast<int64_t>(Below(rng, 2001)) - 1000;
    case 3: return std::numeric_limits<int64_t>::min();
    case 4: return std::numeric_limits<uint64_t>::max();
    case 5: return 1.5;
    case 6: {
      json a = json::array();
      for (uint64_t i = 0, n = Below(rng, 4); i < n; ++i) {
        a.push_back(depth < 3 ? RandomValue(rng, likely, depth + 1) : json(1));
      }
      return a;
    }
    case 7: {
      json o = json::object();
      for (uint64_t i = 0, n = Below(rng, 4); i < n; ++i) {
        o[RandomString(rng, likely)] = depth < 3 ? RandomValue(rng, likely, depth + 1) : json("v");
      }
      return o;
    }
    case 8: {
      json deep = 1;
      for (int i = 0; i < 200; ++i) deep = json::array({deep});
      return deep;
    }
    default: return RandomString(rng, likely);
  }
}

json RandomSigned(Rng* rng, const std::vector<std::string>& likely);

// A value of the type the field has (so requests get past the decoder into the handlers),
// at and past its bounds.
json TypedValue(Rng* rng, const std::string& field, const std::vector<std::string>& likely) {
  static const std::set<std::string> kMaps = {"labels", "set", "target", "params"};
  static const std::set<std::string> kBools = {"purge", "reject"};
  static const std::set<std::string> kInts = {"priority", "limit", "attempt"};
  if (kMaps.count(field)) {
    json m = json::object();
    for (uint64_t i = 0, n = Below(rng, 3); i < n; ++i) {
      m[RandomString(rng, likely)] = RandomString(rng, likely);
    }
    return m;
  }
  if (kBools.count(field)) return Below(rng, 2) == 1;
  if (kInts.count(field)) {
    const int64_t edges[] = {-1001, -1000, 0, 1, 1000, 1001, 1000000, INT64_MAX};
    return edges[Below(rng, 8)];
  }
  if (field == "remove") return json::array({RandomString(rng, likely)});
  if (field == "signed" || field == "policy") return RandomSigned(rng, likely);
  if (field == "secrets") {
    return {{RandomString(rng, likely), {{RandomString(rng, likely), RandomString(rng, likely)}}}};
  }
  return RandomString(rng, likely);
}

json RandomStatement(Rng* rng, const std::vector<std::string>& likely, int depth = 0) {
  json body = json::object();
  const char* kinds[] = {"policy", "apply", "start", "cancel", "approve", "other"};
  body["kind"] = kinds[Below(rng, 6)];
  for (uint64_t i = 0, n = Below(rng, 9); i < n; ++i) {
    const std::string& f = kStatementFields[Below(rng, kStatementFields.size())];
    if (f == "operators" && depth == 0) {
      body[f] = json::array({RandomStatement(rng, likely, 1)});
    } else if (Below(rng, 3) == 0) {
      body[f] = RandomValue(rng, likely);
    } else {
      // Mostly short: signing megabytes is slow under the sanitizers and finds nothing
      // the size limits do not already (oversized statements still come from RandomValue).
      std::string v = RandomString(rng, likely);
      if (v.size() > 4096 && Below(rng, 8) != 0) v.resize(300);
      body[f] = v;
    }
  }
  if (Below(rng, 2)) body["version"] = static_cast<int64_t>(Below(rng, 5));
  if (Below(rng, 2)) body["expires"] = static_cast<int64_t>(1'800'000'000'000 + Below(rng, 2) * 1000000);
  return body;
}

json RandomSigned(Rng* rng, const std::vector<std::string>& likely) {
  json body = RandomStatement(rng, likely);
  auto s = Sign(body, FuzzKey());
  if (!s.ok() || Below(rng, 4) == 0) {
    return {{"body", SafeDump(body)}, {"signer", FuzzKey().public_key}, {"sig", RandomString(rng, likely)}};
  }
  return SignedToJson(*s);
}

json RandomRequest(Rng* rng, const std::vector<std::string>& ops,
                   const std::vector<std::string>& likely) {
  if (Below(rng, 20) == 0) return RandomValue(rng, likely);
  json r = json::object();
  r["op"] = Below(rng, 10) == 0 ? RandomValue(rng, likely) : json(ops[Below(rng, ops.size())]);
  for (uint64_t i = 0, n = Below(rng, 7); i < n; ++i) {
    const std::string& field = kFields[Below(rng, kFields.size())];
    // Mostly the right type (to reach the handlers), sometimes any type at all.
    r[field] = Below(rng, 6) == 0 ? RandomValue(rng, likely) : TypedValue(rng, field, likely);
  }
  return r;
}

bool GoodReply(const json& reply, std::string* why) {
  if (!reply.is_object()) return *why = "reply is not an object", false;
  auto ok = reply.find("ok");
  if (ok == reply.end() || !ok->is_boolean()) return *why = "reply has no boolean ok", false;
  SafeDump(reply);
  return true;
}

int FuzzHub(uint64_t seed, long iterations) {
  std::unique_ptr<rocksdb::Env> env(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  RocksHubStore::Options so;
  so.env = env.get();
  auto store = RocksHubStore::Open("/hub", so);
  ManualClock clock(1'800'000'000'000);
  Rng core_rng(seed ^ 1);
  auto core = HubCore::Open(store->get(), clock, &core_rng, HubOptions{});
  if (!store.ok() || !core.ok()) return fprintf(stderr, "cannot open a hub core\n"), 1;
  HubOutput out;
  const std::string key = GenerateCurveKeys()->public_z85;
  (*core)->OnOperator("fuzz", {{"op", "site.add"}, {"name", "gw-1"}, {"key", key},
                               {"labels", {{"zone", "a"}}}}, &out);
  (*core)->OnOperator("fuzz", {{"op", "workflow.apply"},
                               {"source", "name: deploy\ntasks:\n  - id: a\n    run: [\"true\"]\n"}},
                      &out);
  json started = (*core)->OnOperator("fuzz", {{"op", "run.start"}, {"workflow", "deploy"}}, &out);
  std::vector<std::string> likely = {"gw-1", "deploy", "a", "zone=a", key, "nope", "gw-2"};
  if (started["runs"].is_array() && !started["runs"].empty()) likely.push_back(started["runs"][0]);
  Rng rng(seed);
  for (long i = 0; i < iterations; ++i) {
    json req = RandomRequest(&rng, OperatorOps(), likely);
    out.send.clear();
    json reply;
    try {
      reply = (*core)->OnOperator("fuzz", req, &out);
    } catch (const std::exception& e) {
      fprintf(stderr, "FAIL seed=%llu iteration=%ld: exception escaped: %s\nrequest: %s\n",
              static_cast<unsigned long long>(seed), i, e.what(), SafeDump(req).c_str());
      return 1;
    }
    std::string why;
    if (!GoodReply(reply, &why) || (*core)->counters().operator_exceptions > 0) {
      if (why.empty()) why = "a handler threw (caught at the boundary)";
      fprintf(stderr, "FAIL seed=%llu iteration=%ld: %s\nrequest: %s\nreply: %s\n",
              static_cast<unsigned long long>(seed), i, why.c_str(),
              SafeDump(req).substr(0, 2000).c_str(), SafeDump(reply).substr(0, 2000).c_str());
      return 1;
    }
    clock.Advance(7);
  }
  const auto& c = (*core)->counters();
  setvbuf(stdout, nullptr, _IOLBF, 0);
  printf("hub: requests=%llu refused_by_decoder=%llu errors=%llu result=ok\n",
         static_cast<unsigned long long>(c.operator_requests),
         static_cast<unsigned long long>(c.operator_invalid),
         static_cast<unsigned long long>(c.operator_errors));
  return 0;
}

// The site's trust gate on random signed commands and policies: never a throw, never a
// command allowed that the policy does not name.
int FuzzTrustGate(uint64_t seed, long iterations) {
  const SigningKey root = *GenerateSigningKey();
  const CurveKeys site = *GenerateCurveKeys();
  TrustGate gate(root.public_key, site.public_z85, {{"zone", "a"}});
  std::vector<std::string> likely = {"deploy", "a", site.public_z85, FuzzKey().public_key,
                                     "approve", "reject", "*", "zone"};
  Rng rng(seed ^ 2);
  long allowed = 0;
  for (long i = 0; i < iterations; ++i) {
    try {
      json sj = RandomSigned(&rng, likely);
      Signed st{sj["body"], sj["signer"], sj["sig"]};
      if (Below(&rng, 3) == 0) {
        // As a policy from the root (re-signed by the root when it parses as JSON).
        json body = json::parse(st.body, nullptr, false);
        if (!body.is_discarded()) {
          if (Below(&rng, 2)) {
            body["kind"] = "policy";
            body["fleet"] = "f";
            body["issued"] = 1;
            body["operators"] = json::array({{{"name", "x"}, {"key", FuzzKey().public_key},
                                              {"may", json::array({"start", "apply"})},
                                              {"workflows", json::array({"*"})}}});
          }
          auto rs = Sign(body, root);
          if (rs.ok()) st = *rs;
        }
        bool newer = false;
        auto p = gate.CheckPolicy(st, &newer);
        if (p.ok() && newer) gate.Adopt(st, *p);
        continue;
      }
      Command c;
      c.type = static_cast<uint8_t>(1 + Below(&rng, 6));
      c.workflow = "deploy";
      c.run = "r";
      c.request = RandomString(&rng, likely);
      c.source = "name: deploy\ntasks:\n  - id: a\n    run: [\"true\"]\n";
      c.grant = st.body;
      c.signer = st.signer;
      c.sig = st.sig;
      Grant g;
      if (!gate.Check(c, 1'800'000'000'000, std::nullopt, "deploy", &g).ok()) continue;
      if (c.command_type() == CommandType::kRemoveWorkflow) continue;  // needs no signature
      ++allowed;
      // Allowed: then it verifies, and its signer is in the policy with this action.
      const char* action = c.command_type() == CommandType::kPlaceWorkflow ? "apply"
                           : c.command_type() == CommandType::kStartRun   ? "start"
                           : c.command_type() == CommandType::kCancelRun  ? "cancel"
                                                                          : "approve";
      const PolicyRule* rule = gate.policy() ? gate.policy()->FindOperator(c.signer) : nullptr;
      if (!VerifySignature(st).ok() || !rule || !rule->may.count(action)) {
        fprintf(stderr, "FAIL seed=%llu iteration=%ld: the gate allowed %s signed by %s: %s\n",
                static_cast<unsigned long long>(seed), i, CommandTypeName(c.type),
                c.signer.c_str(), SafeDump(json(c.grant)).substr(0, 500).c_str());
        return 1;
      }
    } catch (const std::exception& e) {
      fprintf(stderr, "FAIL seed=%llu iteration=%ld: the trust gate threw: %s\n",
              static_cast<unsigned long long>(seed), i, e.what());
      return 1;
    }
  }
  printf("trust gate: statements=%ld allowed=%ld result=ok\n", iterations, allowed);
  return 0;
}

int FuzzAgent(uint64_t seed, long iterations, const std::string& bin) {
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("outpost-fuzz-agent-" + std::to_string(getpid())))
                              .string();
  std::filesystem::remove_all(dir);
  const pid_t pid = fork();
  if (pid == 0) {
    execl(bin.c_str(), bin.c_str(), "--data-dir", dir.c_str(), "--site", "fuzz", "--log-level",
          "error", static_cast<char*>(nullptr));
    _exit(127);
  }
  const std::string sock = dir + "/agent.sock";
  bool up = false;
  for (int i = 0; i < 200 && !up; ++i) {  // up to 20 s for the agent to listen
    up = ControlCall(sock, {{"op", "status"}}, 1000).ok();
    if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  int rc = 0;
  if (!up) {
    fprintf(stderr, "FAIL: the agent did not start\n");
    rc = 1;
  }
  Rng rng(seed);
  const std::vector<std::string> likely = {"fuzz", "a", "nope", "fuzz-01J0000000000000000000000"};
  for (long i = 0; rc == 0 && i < iterations; ++i) {
    json req = RandomRequest(&rng, ControlOps(), likely);
    if (req.is_object() && req["op"] == "run.wait") req["op"] = "run.show";  // would block
    auto reply = ControlCall(sock, req, 10000);
    std::string why;
    if (!reply.ok()) {
      why = "no reply: " + reply.status().ToString();
    } else {
      GoodReply(*reply, &why);
    }
    if (!why.empty()) {
      fprintf(stderr, "FAIL seed=%llu iteration=%ld: %s\nrequest: %s\n",
              static_cast<unsigned long long>(seed), i, why.c_str(),
              SafeDump(req).substr(0, 2000).c_str());
      rc = 1;
    }
  }
  if (rc == 0) {
    auto st = ControlCall(sock, {{"op", "status"}}, 5000);
    if (!st.ok() || !(*st).is_object()) {
      fprintf(stderr, "FAIL: the agent stopped answering\n");
      rc = 1;
    } else {
      const json& c = (*st)["status"]["counters"];
      printf("agent: requests=%ld bad_requests=%s exceptions=%s result=%s\n", iterations,
             SafeDump(c["bad_requests"]).c_str(), SafeDump(c["request_exceptions"]).c_str(),
             c["request_exceptions"] == 0 ? "ok" : "FAIL");
      if (c["request_exceptions"] != 0) rc = 1;
    }
  }
  kill(pid, SIGTERM);
  int status = 0;
  bool exited = false;
  for (int i = 0; i < 200 && !exited; ++i) {  // up to 20 s for a clean stop
    exited = waitpid(pid, &status, WNOHANG) == pid;
    if (!exited) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!exited) {
    fprintf(stderr, "FAIL: the agent did not stop on SIGTERM within 20 s\n");
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    rc = 1;
  }
  std::filesystem::remove_all(dir);
  return rc;
}

int Main(int argc, char** argv) {
  uint64_t seed = SeedFromOs();
  long iterations = 20000, agent_iterations = 2000;
  std::string agent_bin;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
      seed = strtoull(argv[++i], nullptr, 10);
    } else if (!strcmp(argv[i], "--iterations") && i + 1 < argc) {
      iterations = strtol(argv[++i], nullptr, 10);
    } else if (!strcmp(argv[i], "--agent-iterations") && i + 1 < argc) {
      agent_iterations = strtol(argv[++i], nullptr, 10);
    } else if (!strcmp(argv[i], "--agent-bin") && i + 1 < argc) {
      agent_bin = argv[++i];
    } else {
      fprintf(stderr,
              "usage: outpost-fuzz-requests [--seed N] [--iterations N] [--agent-bin PATH "
              "[--agent-iterations N]]\n");
      return 2;
    }
  }
  printf("outpost-fuzz-requests seed=%llu (replay: outpost-fuzz-requests --seed %llu)\n",
         static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  fflush(stdout);
  if (int rc = FuzzHub(seed, iterations); rc != 0) return rc;
  if (int rc = FuzzTrustGate(seed, std::max(1L, iterations / 10)); rc != 0) return rc;
  if (!agent_bin.empty()) return FuzzAgent(seed, agent_iterations, agent_bin);
  return 0;
}

}  // namespace
}  // namespace outpost

int main(int argc, char** argv) { return outpost::Main(argc, argv); }
