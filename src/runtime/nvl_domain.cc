// The NVLink domain: allocation, IPC exchange, peer pointers, barrier.
#include "runtime/nvl_domain.h"

#include <cstring>

#include "common/cuda_check.h"
#include "common/log.h"
#include "kernels/nvl/launch.h"
#include "runtime/host_memory.h"

namespace uccl::ep::runtime {

NvlDomain::NvlDomain(int device, int64_t num_nvl_bytes)
    : device_(device), num_nvl_bytes_(num_nvl_bytes) {
  DeviceGuard guard(device);
  const int64_t bytes = protocol::nvl_allocation_bytes(num_nvl_bytes);
  const cudaError_t err = cudaMalloc(reinterpret_cast<void**>(&local_), bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw_error(ErrorKind::kRuntime, str_cat("cannot allocate the NVLink buffer: ", bytes,
                                             " bytes (num_nvl_bytes=", num_nvl_bytes,
                                             ") on cuda:", device, ": ", cudaGetErrorString(err)));
  }
  UCCL_EP_CUDA_CHECK(cudaMemset(local_, 0, bytes));
  peers_.buffers[0] = local_;
  peers_.ctrl[0] =
      reinterpret_cast<protocol::NvlControl*>(local_ + protocol::nvl_control_offset(num_nvl_bytes));
}

NvlDomain::~NvlDomain() {
  DeviceGuard guard(device_);
  for (uint8_t* p : opened_) cudaIpcCloseMemHandle(p);
  if (local_ != nullptr) cudaFree(local_);
}

Bytes NvlDomain::ipc_handle() const {
  DeviceGuard guard(device_);
  cudaIpcMemHandle_t handle;
  UCCL_EP_CUDA_CHECK(cudaIpcGetMemHandle(&handle, local_));
  const auto* p = reinterpret_cast<const uint8_t*>(&handle);
  return Bytes(p, p + sizeof(handle));
}

void NvlDomain::connect(int local_rank, int local_base, const std::vector<Bytes>& handles) {
  const int n = static_cast<int>(handles.size());
  UCCL_EP_CHECK_VALUE(n >= 1 && n <= protocol::kMaxNvlPeers && local_rank >= 0 && local_rank < n,
                      "NVLink domain of ", n, " ranks (local rank ", local_rank, "): at most ",
                      protocol::kMaxNvlPeers, " ranks share one NVLink domain");
  DeviceGuard guard(device_);
  local_rank_ = local_rank;
  num_local_ranks_ = n;
  const int64_t ctrl = protocol::nvl_control_offset(num_nvl_bytes_);
  for (int i = 0; i < n; ++i) {
    uint8_t* base = local_;
    if (i != local_rank) {
      UCCL_EP_CHECK_VALUE(handles[i].size() == sizeof(cudaIpcMemHandle_t), "IPC handle of rank ",
                          local_base + i, " has ", handles[i].size(), " bytes, expected ",
                          sizeof(cudaIpcMemHandle_t));
      cudaIpcMemHandle_t h;
      std::memcpy(&h, handles[i].data(), sizeof(h));
      void* p = nullptr;
      const cudaError_t err = cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess);
      if (err != cudaSuccess) cudaGetLastError();
      UCCL_EP_CHECK_RUNTIME(err == cudaSuccess, "rank ", local_base + local_rank,
                            ": cannot map the NVLink buffer of rank ", local_base + i, " (",
                            cudaGetErrorString(err),
                            "); the ranks of an NVLink domain must be GPUs of one host with peer "
                            "access (or set UCCL_EP_NUM_LOCAL_RANKS)");
      base = static_cast<uint8_t*>(p);
      opened_.push_back(base);
    }
    peers_.buffers[i] = base;
    peers_.ctrl[i] = reinterpret_cast<protocol::NvlControl*>(base + ctrl);
  }
}

void NvlDomain::barrier(const device::DeviceDiag& diag, cudaStream_t stream) const {
  DeviceGuard guard(device_);
  kernels::nvl::launch_barrier({peers_, local_rank_, num_local_ranks_, diag}, stream);
}

}  // namespace uccl::ep::runtime
