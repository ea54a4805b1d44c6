#include "site-agent/control_request.h"

#include "common/json_fields.h"

namespace outpost {

namespace {

const std::map<std::string, std::vector<const char*>>& Required() {
  static const auto* ops = new std::map<std::string, std::vector<const char*>>{
      {"status", {}},
      {"workflow.list", {}},
      {"run.start", {}},  // "source" or "workflow", checked below
      {"run.cancel", {"id"}},
      {"run.approve", {"id", "task"}},
      {"run.show", {"id"}},
      {"run.wait", {"id"}},
      {"run.list", {}},
      {"run.logs", {"id", "task"}},
      {"retention.trim", {}},
      // Bundles move through a file descriptor passed with the request (SCM_RIGHTS):
      // the agent never opens a path an operator names.
      {"bundle.import", {}},
      {"bundle.export", {}},
      {"artifact.list", {}},
  };
  return *ops;
}

Status DecodeFields(const JsonFields& f, ControlRequest* r) {
  constexpr size_t kName = 256;
  OUTPOST_RETURN_IF_ERROR(f.Str("id", &r->id, false, kName));
  OUTPOST_RETURN_IF_ERROR(f.Str("task", &r->task, false, kName));
  OUTPOST_RETURN_IF_ERROR(f.Str("source", &r->source));
  OUTPOST_RETURN_IF_ERROR(f.Str("file", &r->file, false, 4096));
  OUTPOST_RETURN_IF_ERROR(f.Str("workflow", &r->workflow, false, kName));
  OUTPOST_RETURN_IF_ERROR(f.Str("by", &r->by, false, kName));
  OUTPOST_RETURN_IF_ERROR(f.StrMap("params", &r->params));
  OUTPOST_RETURN_IF_ERROR(f.Bool("reject", &r->reject));
  int64_t v = 0;
  if (f.Has("priority")) {
    OUTPOST_RETURN_IF_ERROR(f.Int("priority", &v, -1000, 1000));
    r->priority = static_cast<int>(v);
  }
  if (f.Has("limit")) {
    OUTPOST_RETURN_IF_ERROR(f.Int("limit", &v, 1, 100000));
    r->limit = static_cast<size_t>(v);
  }
  if (f.Has("attempt")) {
    OUTPOST_RETURN_IF_ERROR(f.Int("attempt", &v, 0, 1000000));
    r->attempt = static_cast<int>(v);
  }
  return Status::Ok();
}

}  // namespace

const std::vector<std::string>& ControlOps() {
  static const auto* ops = [] {
    auto* v = new std::vector<std::string>();
    for (const auto& [op, fields] : Required()) v->push_back(op);
    return v;
  }();
  return *ops;
}

Result<ControlRequest> DecodeControlRequest(const nlohmann::json& request) {
  if (!request.is_object()) {
    return Status::InvalidArgument(std::string("request is not a JSON object (it is ") +
                                   JsonTypeName(request) + ")");
  }
  JsonFields f(request);
  ControlRequest r;
  OUTPOST_RETURN_IF_ERROR(f.Str("op", &r.op, kRequired, 64));
  auto spec = Required().find(r.op);
  if (spec == Required().end()) {
    return Status::InvalidArgument("unknown op '" + SafeText(r.op, 64) + "'");
  }
  OUTPOST_RETURN_IF_ERROR(DecodeFields(f, &r));
  for (const char* field : spec->second) {
    if (!f.Has(field)) {
      return Status::InvalidArgument("'" + std::string(field) + "' is required for " + r.op);
    }
  }
  if (r.op == "run.start" && r.source.empty() && r.workflow.empty()) {
    return Status::InvalidArgument("run.start needs 'workflow' (a name) or 'source' (a definition)");
  }
  return r;
}

}  // namespace outpost
