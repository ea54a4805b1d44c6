// Conditions for a task's `when`: a small expression language over params, the site,
// upstream tasks' outputs and states.
//
//   expr   := or
//   or     := and (("||" | "or") and)*
//   and    := not (("&&" | "and") not)*
//   not    := ("!" | "not") not | "(" expr ")" | cmp
//   cmp    := value ("==" | "!=") value
//   value  := 'text' | "text" | number | params.NAME | site.name | site.labels.KEY
//           | tasks.ID.outputs.KEY | tasks.ID.state
//
// Values are strings; == and != compare them exactly. Parsed (and its references
// checked) when the workflow is validated; evaluated when the task's upstream tasks are
// all final.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/workflow/template.h"

namespace outpost {

struct ExprNode;
using Expr = std::shared_ptr<const ExprNode>;

struct ExprValue {
  bool is_ref = false;
  std::string literal;
  TemplateRef ref;         // kind kTaskOutput, kParam, kSiteName, kSiteLabel
  bool task_state = false;  // tasks.ID.state (ref.name is the task)
};

struct ExprNode {
  enum class Op { kOr, kAnd, kNot, kEq, kNe } op = Op::kEq;
  Expr left, right;    // kOr/kAnd: both; kNot: left
  ExprValue a, b;      // kEq/kNe
};

Result<Expr> ParseExpr(std::string_view text);

// Every value reference in the expression, for validation.
void ExprRefs(const Expr& e, std::vector<ExprValue>* out);

struct ExprContext {
  TemplateContext values;
  std::function<std::string(const std::string& task)> task_state;  // "" if unknown
};

Result<bool> EvalExpr(const Expr& e, const ExprContext& ctx);

}  // namespace outpost
