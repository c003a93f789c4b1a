// Barrier of all ranks of the NVLink domain, callable by one block of a kernel.
//
// Each rank keeps a local epoch; at its n-th barrier a rank writes n into
// barrier_arrive[rank] of every peer and waits until every peer's entry in its own
// ControlBlock reaches n. Epochs live in device memory, so the barrier also works when the
// calling kernel is captured in a CUDA graph and replayed.
#pragma once

#include "device/timed_wait.cuh"
#include "kernels/intranode/args.h"

namespace uccl::ep::kernels::intranode {

/// Every thread of the block must call it. Returns false if a wait timed out or the rank is
/// already aborted. Writes issued by the block before the call are visible to all peers after it.
__device__ __forceinline__ bool block_barrier(const PeerPointers& peers, int rank, int num_ranks,
                                              const device::DeviceDiag& diag) {
  __shared__ uint32_t s_epoch;
  __shared__ int s_ok;
  protocol::ControlBlock* local = peers.ctrl[rank];
  __threadfence_system();  // make this thread's earlier peer writes visible before arriving
  __syncthreads();
  if (threadIdx.x == 0) {
    s_epoch = local->barrier_epoch + 1;
    s_ok = device::aborted(diag) ? 0 : 1;
  }
  __syncthreads();
  const uint32_t epoch = s_epoch;
  if (s_ok && static_cast<int>(threadIdx.x) < num_ranks) {
    const int peer = threadIdx.x;
    device::st_release_sys(&peers.ctrl[peer]->barrier_arrive[rank], epoch);
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

/// Zeroes this rank's ring counters (all channels, all sources).
__device__ __forceinline__ void clear_ring_counters(protocol::ControlBlock* local) {
  constexpr int kCount = protocol::kMaxChannels * protocol::kMaxNvlPeers;
  for (int i = threadIdx.x; i < kCount; i += blockDim.x) {
    (&local->ring_tail[0][0])[i] = 0;
    (&local->ring_head[0][0])[i] = 0;
    (&local->ring_meta[0][0])[i] = 0;
  }
}

}  // namespace uccl::ep::kernels::intranode
