// The one error type of uccl-ep: a kind (mapped to a Python exception class) and a message.
#pragma once

#include <exception>
#include <string>

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

}  // namespace uccl::ep
