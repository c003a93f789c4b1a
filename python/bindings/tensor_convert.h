// Conversion of Python tensor arguments (torch.Tensor-like objects, DLPack objects, capsules,
// TensorDesc or None) into borrowed TensorViews. The extension never links PyTorch: a
// torch.Tensor is read through its Python attributes (data_ptr(), shape, stride(), dtype,
// is_cuda, get_device()), anything else through DLPack.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <vector>

#include "uccl_ep/tensor.h"

namespace uccl::ep::bindings {

namespace nb = nanobind;

/// A framework-free tensor description usable from Python (for dtypes a producer cannot
/// export through DLPack, and for tests without a GPU).
struct TensorDesc {
  TensorView view;
};

/// Keeps imported DLPack tensors alive for the duration of one call.
class Imports {
 public:
  /// None -> undefined view; TensorDesc -> its view; an object with torch.Tensor's attributes
  /// -> a view read from them (borrowed: the caller keeps the object alive for the call);
  /// anything DLPack-capable -> imported view. Raises TypeError naming `name` otherwise.
  TensorView view(nb::handle obj, const char* name);

 private:
  std::vector<nb::ndarray<>> arrays_;
};

/// Parses "bfloat16", "torch.float32", ... Raises ValueError for unknown names.
DType parse_dtype(const std::string& name);

void bind_tensor_desc(nb::module_& m);

}  // namespace uccl::ep::bindings
