// RAII owners of CUDA memory used by the runtime, and a current-device guard.
#include "runtime/host_memory.h"

#include <cstring>

#include "common/cuda_check.h"
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

template class MappedHost<protocol::HostErrorRecord>;
template class MappedHost<protocol::HostNotifyResult>;

}  // namespace uccl::ep::runtime
