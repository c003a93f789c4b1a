// RAII owners of CUDA memory used by the runtime, and a current-device guard.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "transport/shared_memory.h"

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

/// The RDMA buffer of a rank: zeroed device memory, or pinned host memory mapped into the
/// device when the transport cannot register device memory.
class RdmaMemory {
 public:
  RdmaMemory() = default;
  ~RdmaMemory() { release(); }
  RdmaMemory(const RdmaMemory&) = delete;
  RdmaMemory& operator=(const RdmaMemory&) = delete;

  /// Allocates and zeroes `bytes` on `device` (on_device) or in pinned host memory (POSIX
  /// shared memory registered with CUDA, so that ipc peers can map it by shared_name()).
  /// Throws Error(kRuntime) naming the size and the device.
  void allocate(int64_t bytes, bool on_device, int device);
  void release() noexcept;
  /// The address kernels use (the device alias of host memory).
  void* data() const { return device_; }
  /// The address the host and the transport use (equal to data() for device memory).
  void* host_or_device() const { return on_device_ ? device_ : host_; }
  bool on_device() const { return on_device_; }
  int64_t bytes() const { return bytes_; }
  /// The shared-memory name of host memory ("" for device memory).
  const std::string& shared_name() const { return shared_.name(); }

 private:
  transport::SharedMemory shared_;
  void* host_ = nullptr;
  void* device_ = nullptr;
  int64_t bytes_ = 0;
  bool on_device_ = true;
  bool registered_ = false;  // host_ is registered with CUDA
};

}  // namespace uccl::ep::runtime
