// RAII owners of CUDA memory used by the runtime, and a current-device guard.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

namespace uccl::ep::runtime {

/// Makes `device` current for the scope and restores the previous device after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
  bool changed_ = false;
};

/// Pinned host memory mapped into the device address space (for host-visible counters).
template <typename T>
class MappedHost {
 public:
  MappedHost() = default;
  /// Allocates and zeroes one T.
  void allocate();
  void release() noexcept;
  ~MappedHost() { release(); }
  T* host() const { return host_; }
  T* device() const { return device_; }

 private:
  T* host_ = nullptr;
  T* device_ = nullptr;
};

}  // namespace uccl::ep::runtime
