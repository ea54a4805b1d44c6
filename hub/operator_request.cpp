#include "hub/operator_request.h"

#include <algorithm>

#include "common/json_fields.h"
#include "common/trust.h"

namespace outpost {

namespace {

// Per op: the fields it requires (every op also accepts the others it knows).
const std::map<std::string, std::vector<const char*>>& Required() {
  static const auto* ops = new std::map<std::string, std::vector<const char*>>{
      {"status", {}},
      {"site.add", {"name", "key"}},
      {"site.accept", {"name"}},
      {"site.revoke", {"name"}},
      {"site.remove", {"name"}},
      {"site.label", {"name"}},
      {"site.list", {}},
      {"site.show", {"name"}},
      {"site.events", {"name"}},
      {"workflow.apply", {"source"}},
      {"workflow.remove", {"name"}},
      {"workflow.list", {}},
      {"workflow.show", {"name"}},
      {"run.start", {"workflow"}},
      {"run.cancel", {"id"}},
      {"run.approve", {"id", "task"}},
      {"run.list", {}},
      {"run.show", {"id"}},
      {"run.logs", {"id", "task"}},
      {"events", {}},
      {"policy.push", {"policy"}},
      {"policy.show", {}},
      {"artifact.has", {"chunks"}},
      {"artifact.chunk", {"data"}},
      {"artifact.commit", {"digest", "size", "chunks"}},
      {"artifact.list", {}},
      {"bundle.export", {"site"}},
      {"bundle.record", {"id", "volume", "index"}},
      {"bundle.import", {"head", "records"}},
  };
  return *ops;
}

Status DecodeFields(const JsonFields& f, size_t max_list, OperatorRequest* r) {
  constexpr size_t kName = 256;
  int64_t priority = 0, limit = 0;
  OUTPOST_RETURN_IF_ERROR(f.Str("name", &r->name, false, kName));
  OUTPOST_RETURN_IF_ERROR(f.Str("key", &r->key, false, kName));
  OUTPOST_RETURN_IF_ERROR(f.Str("as", &r->as, false, kName));
  OUTPOST_RETURN_IF_ERROR(f.StrMap("labels", &r->labels));
  OUTPOST_RETURN_IF_ERROR(f.StrMap("set", &r->set));
  OUTPOST_RETURN_IF_ERROR(f.StrList("remove", &r->remove));
  OUTPOST_RETURN_IF_ERROR(f.Bool("purge", &r->purge));
  OUTPOST_RETURN_IF_ERROR(f.Str("source", &r->source));
  OUTPOST_RETURN_IF_ERROR(f.Str("file", &r->file, false, 4096));
  OUTPOST_RETURN_IF_ERROR(f.StrMap("target", &r->target));
  OUTPOST_RETURN_IF_ERROR(f.Str("workflow", &r->workflow, false, kName));
  OUTPOST_RETURN_IF_ERROR(f.Str("request", &r->request, false, kMaxRequestIdBytes));
  OUTPOST_RETURN_IF_ERROR(f.Str("site", &r->site, false, kName));
  OUTPOST_RETURN_IF_ERROR(f.Str("id", &r->id, false, kName));
  OUTPOST_RETURN_IF_ERROR(f.Str("after", &r->after, false, kName));
  OUTPOST_RETURN_IF_ERROR(f.Str("task", &r->task, false, kName));
  OUTPOST_RETURN_IF_ERROR(f.Str("reason", &r->reason, false, 4096));
  OUTPOST_RETURN_IF_ERROR(f.Str("state", &r->state, false, 64));
  OUTPOST_RETURN_IF_ERROR(f.StrMap("params", &r->params));
  OUTPOST_RETURN_IF_ERROR(f.Bool("reject", &r->reject));
  // A chunk of 1 MiB is 1.4 MB of base64; a frame is bounded anyway (kMaxOperatorFrameBytes).
  OUTPOST_RETURN_IF_ERROR(f.Str("data", &r->data, false, 2 << 20));
  OUTPOST_RETURN_IF_ERROR(f.Str("head", &r->head, false, 1 << 20));
  OUTPOST_RETURN_IF_ERROR(f.Str("digest", &r->digest, false, 64));
  OUTPOST_RETURN_IF_ERROR(f.StrList("records", &r->records));
  OUTPOST_RETURN_IF_ERROR(f.StrList("chunks", &r->chunks));
  for (auto [field, out, hi] : {std::tuple{"volume", &r->volume, int64_t{1} << 20},
                                std::tuple{"index", &r->index, int64_t{1} << 24}}) {
    int64_t v = 0;
    OUTPOST_RETURN_IF_ERROR(f.Int(field, &v, 0, hi));
    *out = static_cast<uint32_t>(v);
  }
  if (int64_t size = 0; f.Has("size")) {
    OUTPOST_RETURN_IF_ERROR(f.Int("size", &size, 0, int64_t{1} << 44));
    r->size = static_cast<uint64_t>(size);
  }
  if (const nlohmann::json* sec = f.Get("secrets")) {
    if (!sec->is_object() || sec->size() > 64) {
      return Status::InvalidArgument("'secrets' must be an object of at most 64 params");
    }
    JsonFields sf(*sec);
    for (const auto& [param, per_site] : sec->items()) {
      std::map<std::string, std::string> m;
      OUTPOST_RETURN_IF_ERROR(sf.StrMap(param.c_str(), &m, kRequired).WithContext("secrets"));
      r->secrets[param] = std::move(m);
    }
  }
  for (auto [field, out] : {std::pair{"signed", &r->signed_stmt}, std::pair{"policy", &r->policy}}) {
    if (!f.Has(field)) continue;
    auto s = SignedFromJson(*f.Get(field), field);
    if (!s.ok()) return s.status();
    *out = std::move(s).value();
  }
  if (f.Has("priority")) {
    OUTPOST_RETURN_IF_ERROR(f.Int("priority", &priority, -1000, 1000));
    r->priority = static_cast<int>(priority);
  }
  if (f.Has("limit")) {
    // Asking for more than the hub lists at most is not an error: the answer is capped.
    OUTPOST_RETURN_IF_ERROR(f.Int("limit", &limit, 1, int64_t{1} << 40));
    r->limit = std::min(static_cast<size_t>(limit), max_list);
  }
  return Status::Ok();
}

}  // namespace

const char* OperatorRoleName(OperatorRole r) {
  switch (r) {
    case OperatorRole::kViewer: return "viewer";
    case OperatorRole::kOperator: return "operator";
    case OperatorRole::kAdmin: return "admin";
  }
  return "viewer";
}

std::optional<OperatorRole> ParseOperatorRole(const std::string& s) {
  if (s == "viewer") return OperatorRole::kViewer;
  if (s == "operator") return OperatorRole::kOperator;
  if (s == "admin") return OperatorRole::kAdmin;
  return std::nullopt;
}

OperatorRole RequiredRole(const std::string& op) {
  if (op == "run.start" || op == "run.cancel" || op == "run.approve") return OperatorRole::kOperator;
  if (op.rfind("site.", 0) == 0 && op != "site.list" && op != "site.show" && op != "site.events") {
    return OperatorRole::kAdmin;
  }
  if (op == "workflow.apply" || op == "workflow.remove" || op == "policy.push" ||
      op == "artifact.has" || op == "artifact.chunk" || op == "artifact.commit") {
    return OperatorRole::kAdmin;
  }
  // Carrying a site's streams is what its link would do: an operator's job.
  if (op.rfind("bundle.", 0) == 0) return OperatorRole::kOperator;
  return OperatorRole::kViewer;  // status, lists, shows, logs, events
}

const std::vector<std::string>& OperatorOps() {
  static const auto* ops = [] {
    auto* v = new std::vector<std::string>();
    for (const auto& [op, fields] : Required()) v->push_back(op);
    return v;
  }();
  return *ops;
}

Result<OperatorRequest> DecodeOperatorRequest(const nlohmann::json& request, size_t max_list) {
  if (!request.is_object()) {
    return Status::InvalidArgument(std::string("request is not a JSON object (it is ") +
                                   JsonTypeName(request) + ")");
  }
  JsonFields f(request);
  OperatorRequest r;
  OUTPOST_RETURN_IF_ERROR(f.Str("op", &r.op, kRequired, 64));
  auto spec = Required().find(r.op);
  if (spec == Required().end()) {
    return Status::InvalidArgument("unknown op '" + SafeText(r.op, 64) + "'");
  }
  OUTPOST_RETURN_IF_ERROR(DecodeFields(f, max_list, &r));
  for (const char* field : spec->second) {
    if (!f.Has(field)) {
      return Status::InvalidArgument("'" + std::string(field) + "' is required for " + r.op);
    }
  }
  return r;
}

}  // namespace outpost
