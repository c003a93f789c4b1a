// Barrier of the ranks of one NVLink domain, callable by one block of a kernel.
//
// Each rank keeps a local epoch; at its n-th barrier a rank writes n into
// barrier_arrive[its local rank] of every peer and waits until every peer's entry in its own
// NvlControl reaches n. Epochs live in device memory, so the barrier also works when the
// calling kernel is captured in a CUDA graph and replayed.
#pragma once

#include "device/timed_wait.cuh"
#include "kernels/nvl/peers.h"

namespace uccl::ep::kernels::nvl {

/// Every thread of the block must call it. Returns false if a wait timed out or the rank is
/// already aborted. Writes issued by the block before the call are visible to all peers after it.
__device__ __forceinline__ bool block_barrier(const NvlPeers& peers, int local_rank,
                                              int num_local_ranks, const device::DeviceDiag& diag) {
  __shared__ uint32_t s_epoch;
  __shared__ int s_ok;
  protocol::NvlControl* local = peers.ctrl[local_rank];
  __threadfence_system();  // make this thread's earlier peer writes visible before arriving
  __syncthreads();
  if (threadIdx.x == 0) {
    s_epoch = local->barrier_epoch + 1;
    s_ok = device::aborted(diag) ? 0 : 1;
  }
  __syncthreads();
  const uint32_t epoch = s_epoch;
  if (s_ok && static_cast<int>(threadIdx.x) < num_local_ranks) {
    const int peer = threadIdx.x;
    device::st_release_sys(&peers.ctrl[peer]->barrier_arrive[local_rank], epoch);
    const bool ok = device::timed_wait(
        diag, protocol::WaitSite::kBarrier, peer, -1, epoch, [&](int64_t& observed) {
          const uint32_t v = device::ld_acquire_sys(&local->barrier_arrive[peer]);
          observed = v;
          return static_cast<int32_t>(v - epoch) >= 0;
        });
    if (!ok) s_ok = 0;
  }
  __syncthreads();
  const bool ok = s_ok != 0;
  if (threadIdx.x == 0) local->barrier_epoch = epoch;
  __syncthreads();
  return ok;
}

}  // namespace uccl::ep::kernels::nvl
