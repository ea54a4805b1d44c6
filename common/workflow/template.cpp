#include "common/workflow/template.h"

#include "common/workflow/workflow.h"

#include <algorithm>

namespace outpost {

namespace {

bool KeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

std::string Trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return "";
  const auto e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    auto next = s.find(sep, pos);
    out.push_back(s.substr(pos, next == std::string::npos ? std::string::npos : next - pos));
    if (next == std::string::npos) return out;
    pos = next + 1;
  }
}

bool Ident(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return KeyChar(c) && c != '.'; });
}

Result<TemplateRef> ParseRef(const std::string& expr) {
  TemplateRef r;
  r.text = "{{ " + expr + " }}";
  const auto parts = Split(expr, '.');
  if (parts.size() == 2 && parts[0] == "params" && Ident(parts[1])) {
    r.kind = TemplateRef::Kind::kParam;
    r.name = parts[1];
    return r;
  }
  if (parts.size() == 1 && parts[0] == "item") {
    r.kind = TemplateRef::Kind::kItem;
    return r;
  }
  if (parts.size() == 2 && parts[0] == "site" && parts[1] == "name") {
    r.kind = TemplateRef::Kind::kSiteName;
    return r;
  }
  if (parts.size() == 3 && parts[0] == "site" && parts[1] == "labels" && Ident(parts[2])) {
    r.kind = TemplateRef::Kind::kSiteLabel;
    r.name = parts[2];
    return r;
  }
  if (parts.size() == 4 && parts[0] == "tasks" && Ident(parts[1]) && parts[2] == "outputs" &&
      Ident(parts[3])) {
    r.kind = TemplateRef::Kind::kTaskOutput;
    r.name = parts[1];
    r.key = parts[3];
    return r;
  }
  return Status::InvalidArgument(
      "unknown reference " + r.text +
      " (use params.NAME, site.name, site.labels.KEY, tasks.ID.outputs.KEY or item)");
}

}  // namespace

bool HasTemplate(std::string_view text) { return text.find("{{") != std::string_view::npos; }

Result<std::vector<TemplatePiece>> ParseTemplate(std::string_view text) {
  std::vector<TemplatePiece> out;
  size_t pos = 0;
  while (pos < text.size()) {
    const auto open = text.find("{{", pos);
    if (open == std::string_view::npos) {
      out.push_back({std::string(text.substr(pos)), false, {}});
      break;
    }
    if (open > pos) out.push_back({std::string(text.substr(pos, open - pos)), false, {}});
    const auto close = text.find("}}", open + 2);
    if (close == std::string_view::npos) {
      return Status::InvalidArgument("'{{' without a closing '}}' in \"" + std::string(text) + "\"");
    }
    OUTPOST_ASSIGN_OR_RETURN(auto ref, ParseRef(Trim(text.substr(open + 2, close - open - 2))));
    TemplatePiece p;
    p.is_ref = true;
    p.ref = std::move(ref);
    out.push_back(std::move(p));
    pos = close + 2;
  }
  return out;
}

namespace {

// The value of one reference, or NotFound naming what is missing.
Result<std::string> ResolveRef(const TemplateRef& r, const TemplateContext& ctx) {
  switch (r.kind) {
    case TemplateRef::Kind::kParam: {
      auto it = ctx.params ? ctx.params->find(r.name) : decltype(ctx.params->end()){};
      if (!ctx.params || it == ctx.params->end()) {
        return Status::NotFound(r.text + ": the run has no param '" + r.name + "'");
      }
      return it->second;
    }
    case TemplateRef::Kind::kSiteName:
      return ctx.site_name;
    case TemplateRef::Kind::kItem:
      if (ctx.item == nullptr) {
        return Status::NotFound(r.text + " is only defined in an instance of a for_each task");
      }
      return *ctx.item;
    case TemplateRef::Kind::kSiteLabel: {
      auto it = ctx.site_labels ? ctx.site_labels->find(r.name) : decltype(ctx.site_labels->end()){};
      if (!ctx.site_labels || it == ctx.site_labels->end()) {
        return Status::NotFound(r.text + ": this site has no label '" + r.name + "'");
      }
      return it->second;
    }
    case TemplateRef::Kind::kTaskOutput: {
      const auto* outs = ctx.outputs ? ctx.outputs(r.name) : nullptr;
      auto it = outs ? outs->find(r.key) : decltype(outs->end()){};
      if (!outs || it == outs->end()) {
        return Status::NotFound(r.text + ": task '" + r.name + "' did not publish output '" + r.key +
                                "'");
      }
      return it->second;
    }
  }
  return Status::Internal("unknown template reference");
}

// Where a point of POSIX shell text is, lexically: unquoted, in '...', in "...". Fed the
// literal text before each reference. Command substitutions ($(...), `...`) and
// subshells open a fresh unquoted context that their closing character ends.
class ShellQuoteTracker {
 public:
  enum Where { kUnquoted, kSingle, kDouble };

  void Feed(std::string_view text) {
    escape_pending_ = false;
    for (size_t i = 0; i < text.size(); ++i) {
      if (i + 1 == text.size() && text[i] == '\\' && stack_.back() != 'S') escape_pending_ = true;
      const char c = text[i];
      char& top = stack_.back();
      if (top == 'S') {
        if (c == '\'') stack_.pop_back();
        continue;
      }
      if (top == 'D') {
        if (c == '\\') {
          ++i;
        } else if (c == '"') {
          stack_.pop_back();
        } else if (c == '$' && i + 1 < text.size() && text[i + 1] == '(') {
          stack_.push_back('P');
          ++i;
        } else if (c == '`') {
          stack_.push_back('B');
        }
        continue;
      }
      // Unquoted: the top level, a $( ... ) or ( ... ) ('P'), or a `...` ('B').
      if (c == '\\') {
        ++i;
      } else if (c == '\'') {
        stack_.push_back('S');
      } else if (c == '"') {
        stack_.push_back('D');
      } else if (c == '`') {
        if (top == 'B') {
          stack_.pop_back();
        } else {
          stack_.push_back('B');
        }
      } else if (c == '(') {
        stack_.push_back('P');
      } else if (c == ')' && top == 'P') {
        stack_.pop_back();
      } else if (c == '#' && (i == 0 ? at_word_start_ : IsSpace(text[i - 1]))) {
        while (i < text.size() && text[i] != '\n') ++i;  // a comment
      }
      if (stack_.empty()) stack_.push_back('N');
    }
    if (!text.empty()) at_word_start_ = IsSpace(text.back());
  }

  // The text fed so far ends with a backslash that escapes what comes next.
  bool escape_pending() const { return escape_pending_; }

  Where where() const {
    switch (stack_.back()) {
      case 'S': return kSingle;
      case 'D': return kDouble;
      default: return kUnquoted;
    }
  }

 private:
  static bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == ';' || c == '|' || c == '&'; }
  std::vector<char> stack_{'N'};
  bool at_word_start_ = true;
  bool escape_pending_ = false;
};

}  // namespace

Result<std::string> RenderTemplate(std::string_view text, const TemplateContext& ctx) {
  if (!HasTemplate(text)) return std::string(text);
  OUTPOST_ASSIGN_OR_RETURN(auto pieces, ParseTemplate(text));
  std::string out;
  for (const auto& p : pieces) {
    if (!p.is_ref) {
      out += p.literal;
      continue;
    }
    OUTPOST_ASSIGN_OR_RETURN(std::string v, ResolveRef(p.ref, ctx));
    out += v;
  }
  return out;
}

Result<std::string> RenderShellTemplate(std::string_view text, const TemplateContext& ctx,
                                        const std::string& var_prefix,
                                        std::vector<std::pair<std::string, std::string>>* env) {
  if (!HasTemplate(text)) return std::string(text);
  OUTPOST_ASSIGN_OR_RETURN(auto pieces, ParseTemplate(text));
  std::string out;
  ShellQuoteTracker where;
  for (const auto& p : pieces) {
    if (!p.is_ref) {
      out += p.literal;
      where.Feed(p.literal);
      continue;
    }
    OUTPOST_ASSIGN_OR_RETURN(std::string v, ResolveRef(p.ref, ctx));
    // A backslash right before a template is a literal backslash (it must not escape the
    // quote that begins the reference).
    if (where.escape_pending()) out += '\\';
    const std::string name = var_prefix + std::to_string(env->size());
    env->emplace_back(name, std::move(v));
    // The value stays in the environment; the shell sees a reference to it that expands
    // to exactly the value, as one word, wherever it stands.
    switch (where.where()) {
      case ShellQuoteTracker::kUnquoted: out += "\"${" + name + "}\""; break;
      case ShellQuoteTracker::kDouble: out += "${" + name + "}"; break;
      case ShellQuoteTracker::kSingle: out += "'\"${" + name + "}\"'"; break;
    }
  }
  return out;
}

Result<std::map<std::string, std::string>> ParseOutputs(std::string_view text) {
  std::map<std::string, std::string> out;
  // Downstream tasks read outputs from variables: two keys that make the same variable
  // (a-b, a.b, A_B) would silently become one value.
  std::map<std::string, std::pair<std::string, int>> vars;  // variable -> key, line
  if (text.size() > 64 * 1024) return Status::ResourceExhausted("outputs exceed 64 KiB");
  size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line[0] == '#') continue;
    const auto eq = line.find('=');
    const std::string key(line.substr(0, eq == std::string_view::npos ? 0 : eq));
    if (eq == std::string_view::npos || key.empty() || !std::all_of(key.begin(), key.end(), KeyChar)) {
      return Status::InvalidArgument("output line " + std::to_string(line_no) +
                                     " is not key=value (key: letters, digits, _ - .)");
    }
    auto [seen, fresh] = vars.emplace(EnvVarName("", key), std::make_pair(key, line_no));
    if (!fresh && seen->second.first != key) {
      return Status::InvalidArgument("output line " + std::to_string(line_no) + ": key '" + key +
                                     "' and '" + seen->second.first + "' (line " +
                                     std::to_string(seen->second.second) +
                                     ") would be the same variable for downstream tasks");
    }
    out[key] = std::string(line.substr(eq + 1));
    if (out.size() > 256) return Status::ResourceExhausted("more than 256 outputs");
  }
  return out;
}

}  // namespace outpost
