// A 1-D uint8 DLPack view of device memory that keeps a Python owner alive (the Buffer's raw
// buffers, the low-latency combine buffer); Python reinterprets it with torch.from_dlpack.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>

namespace uccl::ep::bindings {

namespace nb = nanobind;

/// `bytes` bytes at `data` on CUDA device `device`; `owner` lives as long as the view.
inline nb::object byte_view(nb::handle owner, void* data, int64_t bytes, int device) {
  const size_t shape[1] = {static_cast<size_t>(bytes)};
  return nb::cast(nb::ndarray<uint8_t, nb::ndim<1>>(
      data, 1, shape, owner, nullptr, nb::dtype<uint8_t>(), nb::device::cuda::value, device));
}

}  // namespace uccl::ep::bindings
