// RAII owners of CUDA memory used by the runtime, and a current-device guard.
#include "runtime/host_memory.h"

#include <cstring>

#include "common/cuda_check.h"
#include "protocol/diag.h"
#include "protocol/internode_layout.h"
#include "protocol/intranode_layout.h"

namespace uccl::ep::runtime {

DeviceGuard::DeviceGuard(int device) {
  UCCL_EP_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) {
    UCCL_EP_CUDA_CHECK(cudaSetDevice(device));
    changed_ = true;
  }
}

DeviceGuard::~DeviceGuard() {
  if (changed_) cudaSetDevice(previous_);
}

template <typename T>
void MappedHost<T>::allocate() {
  void* p = nullptr;
  UCCL_EP_CUDA_CHECK(cudaHostAlloc(&p, sizeof(T), cudaHostAllocMapped | cudaHostAllocPortable));
  std::memset(p, 0, sizeof(T));
  host_ = static_cast<T*>(p);
  void* d = nullptr;
  UCCL_EP_CUDA_CHECK(cudaHostGetDevicePointer(&d, p, 0));
  device_ = static_cast<T*>(d);
}

template <typename T>
void MappedHost<T>::release() noexcept {
  if (host_ != nullptr) cudaFreeHost(host_);
  host_ = nullptr;
  device_ = nullptr;
}

void RdmaMemory::allocate(int64_t bytes, bool on_device, int device) {
  release();
  DeviceGuard guard(device);
  cudaError_t err;
  if (on_device) {
    err = cudaMalloc(&device_, bytes);
    if (err == cudaSuccess) err = cudaMemset(device_, 0, bytes);
  } else {
    shared_ = transport::SharedMemory::create(transport::SharedMemory::unique_name("rdma"),
                                              static_cast<size_t>(bytes));  // zeroed
    host_ = shared_.data();
    err = cudaHostRegister(host_, bytes, cudaHostRegisterMapped | cudaHostRegisterPortable);
    if (err == cudaSuccess) {
      registered_ = true;
      err = cudaHostGetDevicePointer(&device_, host_, 0);
    }
  }
  if (err != cudaSuccess) {
    cudaGetLastError();
    release();
    throw_error(ErrorKind::kRuntime,
                str_cat("cannot allocate the RDMA buffer: ", bytes, " bytes of ",
                        on_device ? "device" : "pinned host", " memory for cuda:", device, ": ",
                        cudaGetErrorString(err)));
  }
  bytes_ = bytes;
  on_device_ = on_device;
}

void RdmaMemory::release() noexcept {
  if (host_ != nullptr) {
    if (registered_) cudaHostUnregister(host_);
    shared_ = transport::SharedMemory();
  } else if (device_ != nullptr) {
    cudaFree(device_);
  }
  registered_ = false;
  host_ = device_ = nullptr;
  bytes_ = 0;
}

template class MappedHost<protocol::HostErrorRecord>;
template class MappedHost<protocol::HostNotifyResult>;
template class MappedHost<protocol::InternodeHostResult>;

}  // namespace uccl::ep::runtime
