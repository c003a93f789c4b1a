// intranode_notify_kernel: before a non-cached dispatch, every rank learns how many tokens it
// will receive from each peer (and per local expert), and computes the per-channel prefix of
// the tokens it sends.
//
// Block 0: barrier; clear ring counters; write this rank's row of counts into every peer;
//          barrier; reduce the rows into the rank prefix matrix and the host-visible totals.
// Block 1 + d: channel_prefix_matrix[d][c] = tokens of channels <= c going to rank d.
#pragma once

#include "kernels/intranode/args.h"
#include "kernels/intranode/barrier.cuh"

namespace uccl::ep::kernels::intranode {

constexpr int kNotifyThreads = 512;

__device__ __forceinline__ void notify_exchange(const NotifyArgs& a) {
  const int num_local_experts = a.num_experts / a.num_ranks;
  protocol::ControlBlock* local = a.peers.ctrl[a.rank];
  bool ok = block_barrier(a.peers, a.rank, a.num_ranks, a.diag);
  if (ok) {
    clear_ring_counters(local);
    for (int i = threadIdx.x; i < a.num_ranks * a.num_ranks; i += blockDim.x) {
      const int dst = i / a.num_ranks, j = i % a.num_ranks;
      a.peers.ctrl[dst]->rank_counts[a.rank][j] = a.num_tokens_per_rank[j];
    }
    for (int i = threadIdx.x; i < a.num_ranks * num_local_experts; i += blockDim.x) {
      const int dst = i / num_local_experts, e = i % num_local_experts;
      a.peers.ctrl[dst]->expert_counts[a.rank][e] = a.num_tokens_per_expert[i];
    }
  }
  ok = block_barrier(a.peers, a.rank, a.num_ranks, a.diag) && ok;
  if (!ok) return;

  __shared__ int32_t s_num_recv;
  if (static_cast<int>(threadIdx.x) < a.num_ranks) {
    const int dst = threadIdx.x;
    int32_t running = 0;
    for (int src = 0; src < a.num_ranks; ++src) {
      running += device::ld_cg(&local->rank_counts[src][dst]);
      a.rank_prefix_matrix[src * a.num_ranks + dst] = running;
    }
    if (dst == a.rank) s_num_recv = running;
  }
  if (a.host_result == nullptr) return;
  volatile protocol::HostNotifyResult* out = a.host_result;
  for (int e = threadIdx.x; e < num_local_experts; e += blockDim.x) {
    int32_t total = 0;
    for (int src = 0; src < a.num_ranks; ++src)
      total += device::ld_cg(&local->expert_counts[src][e]);
    out->num_recv_tokens_per_expert[e] =
        (total + a.expert_alignment - 1) / a.expert_alignment * a.expert_alignment;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    out->num_recv_tokens = s_num_recv;
    __threadfence_system();
    out->seq = a.seq;
  }
}

__device__ __forceinline__ void notify_channel_prefix(const NotifyArgs& a, int dst) {
  __shared__ int32_t s_counts[protocol::kMaxChannels];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int num_warps = blockDim.x / 32;
  for (int c = warp; c < a.num_channels; c += num_warps) {
    const auto range = protocol::channel_token_range(a.num_tokens, a.num_channels, c);
    int32_t count = 0;
    for (int t = range.begin + lane; t < range.end; t += 32)
      count += a.is_token_in_rank[static_cast<int64_t>(t) * a.num_ranks + dst] ? 1 : 0;
    count = __reduce_add_sync(0xffffffffu, count);
    if (lane == 0) s_counts[c] = count;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int32_t running = 0;
    for (int c = 0; c < a.num_channels; ++c) {
      running += s_counts[c];
      a.channel_prefix_matrix[dst * a.num_channels + c] = running;
    }
  }
}

__global__ void __launch_bounds__(kNotifyThreads, 1) intranode_notify_kernel(const NotifyArgs a) {
  if (blockIdx.x == 0) {
    notify_exchange(a);
  } else {
    notify_channel_prefix(a, static_cast<int>(blockIdx.x) - 1);
  }
}

__global__ void __launch_bounds__(32, 1) intranode_barrier_kernel(const BarrierArgs a) {
  bool ok = block_barrier(a.peers, a.rank, a.num_ranks, a.diag);
  if (!a.clear_rings) return;
  if (ok) clear_ring_counters(a.peers.ctrl[a.rank]);
  block_barrier(a.peers, a.rank, a.num_ranks, a.diag);
}

}  // namespace uccl::ep::kernels::intranode
