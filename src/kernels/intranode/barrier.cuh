// The intranode mode's use of the NVLink domain's barrier (kernels/nvl/barrier.cuh), and the
// clearing of its ring counters between two barriers.
#pragma once

#include "kernels/intranode/args.h"
#include "kernels/nvl/barrier.cuh"

namespace uccl::ep::kernels::intranode {

/// Barrier of the intranode ranks (the whole NVLink domain); see nvl::block_barrier.
__device__ __forceinline__ bool block_barrier(const IntranodePeers& peers, int rank, int num_ranks,
                                              const device::DeviceDiag& diag) {
  return nvl::block_barrier(peers.nvl, rank, num_ranks, diag);
}

/// Zeroes this rank's ring counters (all channels, all sources).
__device__ __forceinline__ void clear_ring_counters(protocol::IntranodeControl* local) {
  constexpr int kCount = protocol::kMaxChannels * protocol::kMaxNvlPeers;
  for (int i = threadIdx.x; i < kCount; i += blockDim.x) {
    (&local->ring_tail[0][0])[i] = 0;
    (&local->ring_head[0][0])[i] = 0;
    (&local->ring_meta[0][0])[i] = 0;
  }
}

}  // namespace uccl::ep::kernels::intranode
