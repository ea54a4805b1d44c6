// Status and Result<T>: the one error model at every module boundary.
//
// A Status is OK or carries a code and a message that names what failed and where.
// Result<T> holds either a value or a non-OK Status. Both are cheap to move and are
// [[nodiscard]]: dropping one on the floor is a compile warning (and -Werror in CI).
// A deliberately ignored error is written `status.IgnoreError();` so it can be grepped.
//
// Thread-safety: plain values; no shared state.
#pragma once

#include <cassert>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace outpost {

enum class Code {
  kOk = 0,
  kInvalidArgument,  // the caller's input is wrong (a workflow file, a flag, a request)
  kNotFound,
  kAlreadyExists,
  kCorruption,    // stored or received bytes do not decode
  kIoError,       // the OS or RocksDB failed
  kUnavailable,   // try again later (peer gone, resource busy)
  kFailedPrecondition,
  kResourceExhausted,  // a limit was hit (size, quota, disk)
  kInternal,
  kPermissionDenied,  // the caller may not do this (a role, a signature, a policy)
  kAborted,  // a concurrent writer changed what this relied on: read again and retry
};

const char* CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
  static Status Corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
  static Status IoError(std::string m) { return {Code::kIoError, std::move(m)}; }
  static Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Status FailedPrecondition(std::string m) {
    return {Code::kFailedPrecondition, std::move(m)};
  }
  static Status ResourceExhausted(std::string m) {
    return {Code::kResourceExhausted, std::move(m)};
  }
  static Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }
  static Status Aborted(std::string m) { return {Code::kAborted, std::move(m)}; }
  static Status PermissionDenied(std::string m) {
    return {Code::kPermissionDenied, std::move(m)};
  }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

  // Prefixes the message with context, e.g. "open event log: " + original.
  Status WithContext(const std::string& context) const {
    if (ok()) return *this;
    return Status(code_, context + ": " + message_);
  }

  // The first error of a chain: a.And(b).And(c) is a if it failed, else b if it failed,
  // else c. Every operand is evaluated (use it for checks without side effects).
  Status And(const Status& next) const { return ok() ? next : *this; }

  // The one explicit way to drop an error.
  void IgnoreError() const {}

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(v_).ok() && "Result built from an OK status has no value");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & {
    CheckOk();
    return std::get<T>(v_);
  }
  const T& value() const& {
    CheckOk();
    return std::get<T>(v_);
  }
  T&& value() && {
    CheckOk();
    return std::get<T>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  void CheckOk() const {
    if (!ok()) std::abort();  // a broken invariant: value() on an error
  }
  std::variant<T, Status> v_;
};

}  // namespace outpost

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define OUTPOST_RETURN_IF_ERROR(expr)      \
  do {                                     \
    ::outpost::Status _st = (expr);        \
    if (!_st.ok()) return _st;             \
  } while (0)

#define OUTPOST_CONCAT_INNER(a, b) a##b
#define OUTPOST_CONCAT(a, b) OUTPOST_CONCAT_INNER(a, b)
// Declares `lhs` from a Result's value, or returns its error.
#define OUTPOST_ASSIGN_OR_RETURN(lhs, expr) \
  OUTPOST_ASSIGN_OR_RETURN_IMPL(OUTPOST_CONCAT(_res_, __LINE__), lhs, expr)
#define OUTPOST_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()
