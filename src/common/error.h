// Helpers to build uccl::ep::Error with context (argument name, value, rule).
#pragma once

#include <sstream>
#include <string>
#include <utility>

#include "uccl_ep/error.h"

namespace uccl::ep {

/// Concatenates its arguments with operator<< into a string.
template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

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
