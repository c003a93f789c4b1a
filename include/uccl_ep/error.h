// The one error type of uccl-ep: a kind (mapped to a Python exception class) and a message; and
// the helpers that build one with context (argument name, value, rule).
#pragma once

#include <cstdio>
#include <exception>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace uccl::ep {

/// What went wrong, as the Python binding maps it:
/// kValue -> ValueError, kType -> TypeError, kNotImplemented -> NotImplementedError,
/// kRuntime and kTimeout -> RuntimeError.
enum class ErrorKind { kValue, kType, kRuntime, kNotImplemented, kTimeout };

/// An error with context. Never thrown across a CUDA kernel or a proxy thread; raised at the
/// API boundary.
class Error : public std::exception {
 public:
  Error(ErrorKind kind, std::string message) : kind_(kind), message_(std::move(message)) {}
  ErrorKind kind() const noexcept { return kind_; }
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  ErrorKind kind_;
  std::string message_;
};

namespace detail {
// Appends one value. Deliberately avoids iostreams: a process may load another libstdc++
// first (seen with PyTorch/JAX plugins), and locale facets then crash inside std::ostream.
inline void append(std::string& out, std::string_view v) {
  out.append(v.data(), v.size());
}
inline void append(std::string& out, const char* v) {
  out.append(v ? v : "(null)");
}
inline void append(std::string& out, const std::string& v) {
  out.append(v);
}
inline void append(std::string& out, char v) {
  out.push_back(v);
}
inline void append(std::string& out, bool v) {
  out.append(v ? "true" : "false");
}
template <typename T>
  requires std::is_integral_v<T>
void append(std::string& out, T v) {
  out.append(std::to_string(v));
}
template <typename T>
  requires std::is_floating_point_v<T>
void append(std::string& out, T v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", static_cast<double>(v));
  out.append(buf);
}
}  // namespace detail

/// Concatenates strings and numbers into one string (no iostreams).
template <typename... Args>
std::string str_cat(Args&&... args) {
  std::string out;
  (detail::append(out, std::forward<Args>(args)), ...);
  return out;
}

/// Throws Error(kind, message).
[[noreturn]] void throw_error(ErrorKind kind, const std::string& message);

}  // namespace uccl::ep

/// Throws Error(kind) with the streamed message unless `cond` holds.
#define UCCL_EP_CHECK(cond, kind, ...)                                            \
  do {                                                                            \
    if (!(cond)) ::uccl::ep::throw_error(kind, ::uccl::ep::str_cat(__VA_ARGS__)); \
  } while (0)

#define UCCL_EP_CHECK_VALUE(cond, ...) \
  UCCL_EP_CHECK(cond, ::uccl::ep::ErrorKind::kValue, __VA_ARGS__)
#define UCCL_EP_CHECK_TYPE(cond, ...) UCCL_EP_CHECK(cond, ::uccl::ep::ErrorKind::kType, __VA_ARGS__)
#define UCCL_EP_CHECK_RUNTIME(cond, ...) \
  UCCL_EP_CHECK(cond, ::uccl::ep::ErrorKind::kRuntime, __VA_ARGS__)
