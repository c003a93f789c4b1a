// intranode_notify_kernel: before a non-cached dispatch, every rank learns how many tokens it
// will receive from each peer (and per local expert), and computes the per-channel prefix of
// the tokens it sends.
//
// Block 0: checks the caller's counts against what is_token_in_rank and topk_idx route (and
//          that every expert id is in [-1, num_experts)); barrier; clears the ring counters and
//          writes this rank's row of counts into every peer (kBadInputs instead when the check
//          failed); barrier; a peer's kBadInputs row is an error of this rank too (so every
//          rank stops here instead of waiting for tokens that never come); reduces the rows
//          into the rank prefix matrix and the host-visible totals.
//          A failed check is reported (abort flag raised) only after both barriers: an aborted
//          rank does not arrive at a barrier, and its peers must read its kBadInputs row.
// Block 1 + d: channel_prefix_matrix[d][c] = tokens of channels <= c going to rank d.
// Every block ends with the poison epilogue (device/health.cuh).
#pragma once

#include "device/health.cuh"
#include "kernels/intranode/args.h"
#include "kernels/intranode/barrier.cuh"
#include "kernels/routing/routing.h"

namespace uccl::ep::kernels::intranode {

constexpr int kNotifyThreads = 512;

/// The first disagreement check_notify_inputs found: report_error's arguments, kept until the
/// exchange is over.
struct InputFault {
  int claimed;
  protocol::WaitSite site;
  int peer, row, col;
  int64_t expected, observed;

  /// Keeps the first fault of the block (any thread); later ones are dropped.
  __device__ __forceinline__ void claim(protocol::WaitSite s, int p, int r, int c, int64_t e,
                                        int64_t o) {
    if (atomicCAS(&claimed, 0, 1) != 0) return;
    site = s, peer = p, row = r, col = c, expected = e, observed = o;
  }
  /// Thread 0, after the block synchronized: records the kept fault (raises the abort flag).
  __device__ __forceinline__ void report(const device::DeviceDiag& diag) const {
    if (threadIdx.x == 0 && claimed != 0)
      device::report_error(diag, site, peer, -1, -1, row, col, expected, observed, 0);
  }
};

/// Block 0, every thread: whether the caller's counts agree with the routing (block-uniform).
/// Keeps the first disagreement in `fault` (an expert id out of range first) without reporting
/// it.
__device__ __forceinline__ bool check_notify_inputs(const NotifyArgs& a, InputFault& fault) {
  __shared__ int32_t s_rank_counts[protocol::kMaxNvlPeers];
  __shared__ int32_t s_expert_counts[protocol::kMaxNvlPeers * protocol::kMaxLocalExperts];
  __shared__ int s_bad;
  const int lane = threadIdx.x % 32;
  if (threadIdx.x == 0) s_bad = 0, fault.claimed = 0;
  if (static_cast<int>(threadIdx.x) < a.num_ranks) s_rank_counts[threadIdx.x] = 0;
  for (int e = threadIdx.x; a.topk_idx != nullptr && e < a.num_experts; e += blockDim.x)
    s_expert_counts[e] = 0;
  __syncthreads();
  // Expert ids and their counts.
  const int64_t num_entries = static_cast<int64_t>(a.num_tokens) * a.num_topk;
  for (int64_t i = threadIdx.x; a.topk_idx != nullptr && i < num_entries; i += blockDim.x) {
    const int64_t id = a.topk_idx[i];
    if (!routing::valid_topk_entry(id, a.num_experts)) {
      fault.claim(protocol::WaitSite::kBadExpertId, -1, static_cast<int>(i / a.num_topk),
                  static_cast<int>(i % a.num_topk), a.num_experts, id);
      s_bad = 1;
    } else if (id >= 0) {
      atomicAdd(&s_expert_counts[id], 1);
    }
  }
  // Tokens per destination rank: per-thread sums, then one atomic per warp and rank.
  int32_t mine[protocol::kMaxNvlPeers] = {};
  for (int t = threadIdx.x; t < a.num_tokens; t += blockDim.x)
#pragma unroll
    for (int d = 0; d < protocol::kMaxNvlPeers; ++d)
      if (d < a.num_ranks && a.is_token_in_rank[static_cast<int64_t>(t) * a.num_ranks + d])
        ++mine[d];
#pragma unroll
  for (int d = 0; d < protocol::kMaxNvlPeers; ++d) {
    const int32_t sum = __reduce_add_sync(0xffffffffu, mine[d]);
    if (lane == 0 && d < a.num_ranks && sum != 0) atomicAdd(&s_rank_counts[d], sum);
  }
  __syncthreads();
  const bool bad_ids = s_bad != 0;
  __syncthreads();  // every thread has read s_bad before the count checks below may set it
  if (bad_ids) return false;
  const int d = threadIdx.x;
  if (d < a.num_ranks && s_rank_counts[d] != a.num_tokens_per_rank[d]) {
    fault.claim(protocol::WaitSite::kRankCountMismatch, d, -1, -1, a.num_tokens_per_rank[d],
                s_rank_counts[d]);
    s_bad = 1;
  }
  for (int e = threadIdx.x; a.topk_idx != nullptr && e < a.num_experts; e += blockDim.x) {
    if (s_expert_counts[e] != a.num_tokens_per_expert[e]) {
      fault.claim(protocol::WaitSite::kExpertCountMismatch, -1, e, -1, a.num_tokens_per_expert[e],
                  s_expert_counts[e]);
      s_bad = 1;
    }
  }
  __syncthreads();
  return s_bad == 0;
}

__device__ __forceinline__ void notify_exchange(const NotifyArgs& a) {
  const int num_local_experts = a.num_experts / a.num_ranks;
  protocol::IntranodeControl* local = a.peers.ctrl[a.rank];
  __shared__ InputFault s_fault;
  const bool inputs_ok = check_notify_inputs(a, s_fault);
  bool ok = block_barrier(a.peers, a.rank, a.num_ranks, a.diag);
  if (ok) {
    clear_ring_counters(local);
    for (int i = threadIdx.x; i < a.num_ranks * a.num_ranks; i += blockDim.x) {
      const int dst = i / a.num_ranks, j = i % a.num_ranks;
      a.peers.ctrl[dst]->rank_counts[a.rank][j] =
          inputs_ok ? a.num_tokens_per_rank[j] : protocol::kBadInputs;
    }
    for (int i = threadIdx.x; inputs_ok && i < a.num_ranks * num_local_experts; i += blockDim.x) {
      const int dst = i / num_local_experts, e = i % num_local_experts;
      a.peers.ctrl[dst]->expert_counts[a.rank][e] = a.num_tokens_per_expert[i];
    }
  }
  ok = block_barrier(a.peers, a.rank, a.num_ranks, a.diag) && ok;
  s_fault.report(a.diag);
  if (!ok || !inputs_ok) return;

  __shared__ int s_peer_bad;
  if (threadIdx.x == 0) s_peer_bad = 0;
  __syncthreads();
  if (static_cast<int>(threadIdx.x) < a.num_ranks &&
      device::ld_cg(&local->rank_counts[threadIdx.x][0]) == protocol::kBadInputs) {
    device::report_error(a.diag, protocol::WaitSite::kPeerError, threadIdx.x, -1, -1, -1, -1, 0,
                         protocol::kBadInputs, 0);
    s_peer_bad = 1;
  }
  __syncthreads();
  if (s_peer_bad) return;

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
  device::poison_if_aborted(a.outputs, a.diag);
}

__global__ void __launch_bounds__(32, 1) intranode_barrier_kernel(const BarrierArgs a) {
  bool ok = block_barrier(a.peers, a.rank, a.num_ranks, a.diag);
  if (!a.clear_rings) return;
  if (ok) clear_ring_counters(a.peers.ctrl[a.rank]);
  block_barrier(a.peers, a.rank, a.num_ranks, a.diag);
}

}  // namespace uccl::ep::kernels::intranode
