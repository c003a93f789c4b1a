// Small RAII buffers for GPU tests and benchmarks: pinned host memory mapped into the device,
// and zeroed device arrays. Host code; needs the CUDA runtime.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstring>
#include <vector>

#include "common/cuda_check.h"

namespace uccl::ep::testing {

/// `n` zeroed elements of pinned host memory (portable, mapped) and their device alias.
template <typename T>
struct Mapped {
  T* host = nullptr;
  T* dev = nullptr;
  explicit Mapped(size_t n) {
    UCCL_EP_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&host), n * sizeof(T),
                                     cudaHostAllocMapped | cudaHostAllocPortable));
    std::memset(static_cast<void*>(host), 0, n * sizeof(T));
    UCCL_EP_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&dev), host, 0));
  }
  ~Mapped() { cudaFreeHost(host); }
  Mapped(const Mapped&) = delete;
  Mapped& operator=(const Mapped&) = delete;
};

/// `n` zeroed elements on the current device.
template <typename T>
struct DeviceArray {
  T* ptr = nullptr;
  size_t n = 0;
  explicit DeviceArray(size_t count) : n(count) {
    UCCL_EP_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ptr), n * sizeof(T)));
    UCCL_EP_CUDA_CHECK(cudaMemset(ptr, 0, n * sizeof(T)));
  }
  ~DeviceArray() { cudaFree(ptr); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  /// Element `i`, copied to the host.
  T get(size_t i) const {
    T v{};
    UCCL_EP_CUDA_CHECK(cudaMemcpy(&v, ptr + i, sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
  /// Every element, copied to the host.
  std::vector<T> read() const {
    std::vector<T> out(n);
    UCCL_EP_CUDA_CHECK(cudaMemcpy(out.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost));
    return out;
  }
};

}  // namespace uccl::ep::testing
