// The NVLink domain of one rank: its NVLink buffer (data + NvlControl) in device memory, the
// CUDA IPC mappings of its local peers' buffers, and their barrier.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "kernels/nvl/peers.h"
#include "uccl_ep/buffer.h"

namespace uccl::ep::runtime {

class NvlDomain {
 public:
  /// Allocates and zeroes nvl_allocation_bytes(num_nvl_bytes) on `device`.
  NvlDomain(int device, int64_t num_nvl_bytes);
  /// Unmaps the peers and frees the allocation (the caller synchronised the ranks).
  ~NvlDomain();
  NvlDomain(const NvlDomain&) = delete;
  NvlDomain& operator=(const NvlDomain&) = delete;

  /// CUDA IPC handle of this rank's allocation.
  Bytes ipc_handle() const;
  /// Maps the buffers of the local ranks; `handles[i]` is local rank i's ipc_handle() (this
  /// rank's own entry is not opened). Throws Error(kRuntime) naming the rank it cannot map.
  void connect(int local_rank, int local_base, const std::vector<Bytes>& handles);

  const kernels::nvl::NvlPeers& peers() const { return peers_; }
  int local_rank() const { return local_rank_; }
  int num_local_ranks() const { return num_local_ranks_; }
  uint8_t* data() const { return local_; }
  int64_t num_nvl_bytes() const { return num_nvl_bytes_; }

  /// Enqueues a barrier of the local ranks on `stream`.
  void barrier(const device::DeviceDiag& diag, cudaStream_t stream) const;

 private:
  int device_;
  int64_t num_nvl_bytes_;
  uint8_t* local_ = nullptr;
  kernels::nvl::NvlPeers peers_{};
  std::vector<uint8_t*> opened_;
  int local_rank_ = 0, num_local_ranks_ = 1;
};

}  // namespace uccl::ep::runtime
