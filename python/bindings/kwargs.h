// Keyword arguments of one binding call: typed getters that remember what they read, so that a
// misspelt keyword (one nobody read) raises TypeError.
#pragma once

#include <cuda_runtime_api.h>
#include <nanobind/nanobind.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tensor_convert.h"
#include "uccl_ep/config.h"
#include "uccl_ep/error.h"

namespace uccl::ep::bindings {

class Kw {
 public:
  Kw(const nb::kwargs& kw, const char* op) : kw_(kw), op_(op) {}
  TensorView tensor(const char* name) { return imports_.view(get(name), name); }
  int integer(const char* name, int fallback) {
    nb::handle h = get(name);
    return h.is_none() ? fallback : nb::cast<int>(h);
  }
  bool boolean(const char* name, bool fallback) {
    nb::handle h = get(name);
    return h.is_none() ? fallback : nb::cast<bool>(h);
  }
  Config config() {
    nb::handle h = get("config");
    UCCL_EP_CHECK(!h.is_none(), ErrorKind::kValue, op_, ": config is required");
    return nb::cast<Config>(h);
  }
  cudaStream_t stream() {
    nb::handle h = get("stream");
    return h.is_none() ? nullptr : reinterpret_cast<cudaStream_t>(nb::cast<uintptr_t>(h));
  }
  /// Raises TypeError for keywords nobody read (a misspelt argument).
  void finish() const {
    if (static_cast<size_t>(PyDict_Size(kw_.ptr())) == found_.size()) return;
    for (auto [key, value] : kw_) {
      const std::string k = nb::cast<std::string>(key);
      bool read = false;
      for (const char* f : found_) read = read || k == f;
      if (!read)
        throw_error(ErrorKind::kType,
                    str_cat(op_, "() got an unexpected keyword argument '", k, "'"));
    }
  }

 private:
  nb::handle get(const char* name) {
    PyObject* v = PyDict_GetItemString(kw_.ptr(), name);  // borrowed
    if (v == nullptr) return nb::handle(Py_None);
    found_.push_back(name);
    return nb::handle(v);
  }
  const nb::kwargs& kw_;
  const char* op_;
  std::vector<const char*> found_;  // names read that were present (each read once)
  Imports imports_;
};

}  // namespace uccl::ep::bindings
