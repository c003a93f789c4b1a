// Fluent checks of one tensor argument, shared by the validators of every mode. Type problems
// raise Error(kType), everything else Error(kValue), naming the argument, the value and the rule.
#pragma once

#include <initializer_list>
#include <string>

#include "common/error.h"
#include "uccl_ep/buffer.h"
#include "uccl_ep/tensor.h"

namespace uccl::ep::runtime::validate {

/// A shape entry that accepts any size.
constexpr int64_t kAny = -1;

inline std::string device_str(const TensorView& t) {
  switch (t.device) {
    case DeviceKind::kCPU:
      return "cpu";
    case DeviceKind::kCUDA:
      return str_cat("cuda:", t.device_index);
    case DeviceKind::kOther:
      return "a non-CUDA device";
  }
  return "?";
}

/// Fluent checks on one tensor argument; each names the argument in its message.
class Arg {
 public:
  Arg(const TensorView& t, const char* name) : t_(t), name_(name) {}

  Arg& required() {
    UCCL_EP_CHECK_VALUE(t_.defined(), name_, " is required");
    return *this;
  }
  Arg& dtype(std::initializer_list<DType> allowed) {
    for (DType d : allowed)
      if (t_.dtype == d) return *this;
    std::string list;
    for (DType d : allowed) list += std::string(list.empty() ? "" : " or ") + dtype_name(d);
    throw_error(ErrorKind::kType,
                str_cat(name_, " must have dtype ", list, ", got ", dtype_name(t_.dtype)));
  }
  /// `dims` entries of kAny accept any size; `meaning` describes them, e.g. "(num_tokens, R)".
  Arg& shape(std::initializer_list<int64_t> dims, const char* meaning) {
    bool ok = t_.ndim == static_cast<int>(dims.size());
    int i = 0;
    for (int64_t d : dims) {
      if (ok && d != kAny && t_.shape[i] != d) ok = false;
      ++i;
    }
    if (!ok) {
      std::string want = "[";
      i = 0;
      for (int64_t d : dims)
        want += (i++ ? ", " : "") + (d == kAny ? std::string("*") : std::to_string(d));
      throw_error(ErrorKind::kValue, str_cat(name_, " has shape ", t_.shape_str(), ", expected ",
                                             want, "] ", meaning));
    }
    return *this;
  }
  Arg& contiguous() {
    UCCL_EP_CHECK_VALUE(t_.is_contiguous(), name_, " must be contiguous, got shape ",
                        t_.shape_str(), " with strides ", strides_str());
    return *this;
  }
  /// required + dtype + shape + contiguous + on: the usual checks of one tensor argument.
  Arg& tensor(std::initializer_list<DType> dtypes, std::initializer_list<int64_t> dims,
              const char* meaning, const BufferInfo& info) {
    return required().dtype(dtypes).shape(dims, meaning).contiguous().on(info);
  }
  Arg& on(const BufferInfo& info) {
    UCCL_EP_CHECK_VALUE(t_.device == DeviceKind::kCUDA && t_.device_index == info.device_index,
                        name_, " must be on cuda:", info.device_index,
                        " (the Buffer's device), got ", device_str(t_));
    return *this;
  }

 private:
  std::string strides_str() const {
    std::string s = "[";
    for (int i = 0; i < t_.ndim; ++i) s += (i ? ", " : "") + std::to_string(t_.strides[i]);
    return s + "]";
  }
  const TensorView& t_;
  const char* name_;
};

/// Raises unless the optional tensor `t` is absent; `why` completes "must not be given ...".
inline void check_absent(const TensorView& t, const char* name, const char* why) {
  UCCL_EP_CHECK_VALUE(!t.defined(), name, " must not be given ", why);
}

/// num_experts must be a positive multiple of num_ranks with at most `max_local` per rank.
inline void check_experts(int num_experts, int num_ranks, const char* name, int max_local) {
  UCCL_EP_CHECK_VALUE(num_experts > 0 && num_experts % num_ranks == 0, name, "=", num_experts,
                      " must be a positive multiple of the number of ranks (", num_ranks, ")");
  UCCL_EP_CHECK_VALUE(num_experts / num_ranks <= max_local, name, "=", num_experts, " gives ",
                      num_experts / num_ranks, " experts per rank; at most ", max_local,
                      " are supported");
}

}  // namespace uccl::ep::runtime::validate
