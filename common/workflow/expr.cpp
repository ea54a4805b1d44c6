#include "common/workflow/expr.h"

#include <cctype>

namespace outpost {

namespace {

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  Result<Expr> Parse() {
    OUTPOST_ASSIGN_OR_RETURN(auto e, Or());
    Skip();
    if (pos_ != s_.size()) return Error("unexpected '" + std::string(s_.substr(pos_)) + "'");
    return e;
  }

 private:
  Status Error(const std::string& what) const {
    return Status::InvalidArgument("condition \"" + std::string(s_) + "\": " + what);
  }
  void Skip() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool Eat(std::string_view tok, bool word = false) {
    Skip();
    if (s_.substr(pos_, tok.size()) != tok) return false;
    if (word && pos_ + tok.size() < s_.size()) {
      const char next = s_[pos_ + tok.size()];
      if (std::isalnum(static_cast<unsigned char>(next)) || next == '_') return false;
    }
    pos_ += tok.size();
    return true;
  }
  Result<Expr> Or() {
    OUTPOST_ASSIGN_OR_RETURN(auto left, And());
    while (Eat("||") || Eat("or", true)) {
      OUTPOST_ASSIGN_OR_RETURN(auto right, And());
      auto n = std::make_shared<ExprNode>();
      n->op = ExprNode::Op::kOr;
      n->left = left;
      n->right = right;
      left = n;
    }
    return left;
  }
  Result<Expr> And() {
    OUTPOST_ASSIGN_OR_RETURN(auto left, Not());
    while (Eat("&&") || Eat("and", true)) {
      OUTPOST_ASSIGN_OR_RETURN(auto right, Not());
      auto n = std::make_shared<ExprNode>();
      n->op = ExprNode::Op::kAnd;
      n->left = left;
      n->right = right;
      left = n;
    }
    return left;
  }
  Result<Expr> Not() {
    if (++depth_ > 32) return Error("nested too deeply");
    if ((Skip(), pos_ < s_.size() && s_[pos_] == '!' && s_.substr(pos_, 2) != "!=") && Eat("!")) {
      OUTPOST_ASSIGN_OR_RETURN(auto inner, Not());
      auto n = std::make_shared<ExprNode>();
      n->op = ExprNode::Op::kNot;
      n->left = inner;
      return Expr(n);
    }
    if (Eat("not", true)) {
      OUTPOST_ASSIGN_OR_RETURN(auto inner, Not());
      auto n = std::make_shared<ExprNode>();
      n->op = ExprNode::Op::kNot;
      n->left = inner;
      return Expr(n);
    }
    if (Eat("(")) {
      OUTPOST_ASSIGN_OR_RETURN(auto inner, Or());
      if (!Eat(")")) return Error("missing ')'");
      return inner;
    }
    auto n = std::make_shared<ExprNode>();
    OUTPOST_ASSIGN_OR_RETURN(n->a, Value());
    if (Eat("==")) {
      n->op = ExprNode::Op::kEq;
    } else if (Eat("!=")) {
      n->op = ExprNode::Op::kNe;
    } else {
      return Error("expected == or != after a value");
    }
    OUTPOST_ASSIGN_OR_RETURN(n->b, Value());
    return Expr(n);
  }
  Result<ExprValue> Value() {
    Skip();
    ExprValue v;
    if (pos_ >= s_.size()) return Error("expected a value at the end");
    const char c = s_[pos_];
    if (c == '\'' || c == '"') {
      const auto end = s_.find(c, pos_ + 1);
      if (end == std::string_view::npos) return Error("unterminated string");
      v.literal = std::string(s_.substr(pos_ + 1, end - pos_ - 1));
      pos_ = end + 1;
      return v;
    }
    size_t end = pos_;
    while (end < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[end])) || s_[end] == '_' ||
                               s_[end] == '-' || s_[end] == '.')) {
      ++end;
    }
    const std::string word(s_.substr(pos_, end - pos_));
    if (word.empty()) return Error("expected a value at '" + std::string(s_.substr(pos_)) + "'");
    pos_ = end;
    if (std::isdigit(static_cast<unsigned char>(word[0])) || word[0] == '-') {
      v.literal = word;
      return v;
    }
    v.is_ref = true;
    const std::string tail = ".state";
    if (word.rfind("tasks.", 0) == 0 && word.size() > tail.size() &&
        word.compare(word.size() - tail.size(), tail.size(), tail) == 0 &&
        word.find('.', 6) == word.size() - tail.size()) {
      v.task_state = true;
      v.ref.kind = TemplateRef::Kind::kTaskOutput;
      v.ref.name = word.substr(6, word.size() - 6 - tail.size());
      v.ref.text = word;
      return v;
    }
    auto pieces = ParseTemplate("{{ " + word + " }}");
    if (!pieces.ok()) {
      return Error("unknown value '" + word +
                   "' (use 'text', a number, params.NAME, site.name, site.labels.KEY, "
                   "tasks.ID.outputs.KEY or tasks.ID.state)");
    }
    v.ref = (*pieces)[0].ref;
    v.ref.text = word;
    return v;
  }

  std::string_view s_;
  size_t pos_ = 0;
  int depth_ = 0;
};

Result<std::string> Resolve(const ExprValue& v, const ExprContext& ctx) {
  if (!v.is_ref) return v.literal;
  if (v.task_state) {
    std::string s = ctx.task_state ? ctx.task_state(v.ref.name) : "";
    if (s.empty()) return Status::NotFound(v.ref.text + ": no task '" + v.ref.name + "'");
    return s;
  }
  return RenderTemplate("{{ " + v.ref.text + " }}", ctx.values);
}

}  // namespace

Result<Expr> ParseExpr(std::string_view text) { return Parser(text).Parse(); }

void ExprRefs(const Expr& e, std::vector<ExprValue>* out) {
  if (!e) return;
  ExprRefs(e->left, out);
  ExprRefs(e->right, out);
  if (e->op == ExprNode::Op::kEq || e->op == ExprNode::Op::kNe) {
    if (e->a.is_ref) out->push_back(e->a);
    if (e->b.is_ref) out->push_back(e->b);
  }
}

Result<bool> EvalExpr(const Expr& e, const ExprContext& ctx) {
  switch (e->op) {
    case ExprNode::Op::kOr: {
      OUTPOST_ASSIGN_OR_RETURN(bool l, EvalExpr(e->left, ctx));
      if (l) return true;
      return EvalExpr(e->right, ctx);
    }
    case ExprNode::Op::kAnd: {
      OUTPOST_ASSIGN_OR_RETURN(bool l, EvalExpr(e->left, ctx));
      if (!l) return false;
      return EvalExpr(e->right, ctx);
    }
    case ExprNode::Op::kNot: {
      OUTPOST_ASSIGN_OR_RETURN(bool v, EvalExpr(e->left, ctx));
      return !v;
    }
    case ExprNode::Op::kEq:
    case ExprNode::Op::kNe: {
      OUTPOST_ASSIGN_OR_RETURN(auto a, Resolve(e->a, ctx));
      OUTPOST_ASSIGN_OR_RETURN(auto b, Resolve(e->b, ctx));
      return (a == b) == (e->op == ExprNode::Op::kEq);
    }
  }
  return Status::Internal("bad expression node");
}

}  // namespace outpost
