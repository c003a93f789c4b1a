// intranode_combine_kernel: sends each received row back to the rank it came from and sums
// the copies of every token there (fp32, ascending rank order, one cast to bf16), plus biases.
//
// Grid: 2 * num_channels blocks, as in dispatch. Channel c of the combine moves exactly the
// tokens channel c of the dispatch moved, in reverse, so the dispatch's send_head gives the
// ring slot at which each token's partial result from each rank arrives.
//
// Sender block (rank r), one warp group per other rank s (CombineWarpSplit): rows of s's block that
// arrived through channel c are pushed, in order, to ring (c, r) on s; slot i is written by warp i
// % G; the group's minimum progress is published as the tail (red.max). Receiver block (rank s):
// warp w reduces tokens begin + w, begin + w + kNumWarps, ...; lane r waits for the slot of rank r.
// Its own partial results are read straight from x (this rank's sender pushes nothing to itself).
// The minimum token index over all warps gives, through send_head, how many slots of each ring are
// consumed: that is published as the ring head.
#pragma once

#include <cuda_bf16.h>

#include "device/health.cuh"
#include "device/timed_wait.cuh"
#include "device/warp_copy.cuh"
#include "kernels/intranode/args.h"
#include "kernels/intranode/warp_split.cuh"

namespace uccl::ep::kernels::intranode {

template <int kNumRanks, int G>
__device__ __forceinline__ void combine_send(const CombineArgs& a, int channel, int dst, int gwarp,
                                             int lane, volatile int* progress) {
  const int block_begin = dst > 0 ? a.rank_prefix_matrix[(dst - 1) * kNumRanks + a.rank] : 0;
  const int block_size = a.rank_prefix_matrix[dst * kNumRanks + a.rank] - block_begin;
  const int32_t* prefix = a.recv_channel_prefix_matrix + dst * a.num_channels;
  const int start = prefix[channel];
  const int stop = channel + 1 < a.num_channels ? prefix[channel + 1] : block_size;
  const int num = stop - start;
  const int64_t row0 = block_begin + start;

  protocol::IntranodeControl* remote = a.peers.ctrl[dst];
  const protocol::RingView ring(a.peers.rings[dst], a.rings, channel, a.rank);
  int32_t* tail = &remote->ring_tail[channel][a.rank];
  const int32_t* head = &remote->ring_head[channel][a.rank];
  const int capacity = a.rings.capacity;
  const int hidden_int4 = static_cast<int>(a.hidden_bytes / 16);

  int cached_head = 0, published = 0;
  bool ok = true;
  for (int i0 = 0; i0 < num; i0 += a.max_send_tokens) {
    const int i1 = min(i0 + a.max_send_tokens, num);
    const int needed = i1 - capacity;
    device::warp_wait_ring_head(a.diag, protocol::WaitSite::kCombineHead, dst, channel, head,
                                needed, lane, cached_head, ok);
    const int first = i0 + ((gwarp - i0 % G) + G) % G;
    for (int i = first; ok && i < i1; i += G) {
      uint8_t* slot = ring.row(a.rings, i);  // the row, its weights inline (CombineSlot)
      const int64_t row = row0 + i;
      // The weight is loaded before the row so its latency hides behind the copy.
      const bool has_weight = a.topk_weights != nullptr && lane < a.num_topk;
      const float weight = has_weight ? __ldg(a.topk_weights + row * a.num_topk + lane) : 0.0f;
      device::warp_copy_v4<kCopyUnroll, true>(
          reinterpret_cast<int4*>(slot), reinterpret_cast<const int4*>(a.x + row * a.hidden_bytes),
          hidden_int4, lane);
      if (has_weight) reinterpret_cast<float*>(slot + a.slot.topk_weights_offset)[lane] = weight;
    }
    __syncwarp();  // then a CTA release; the tail's system release covers it (publish_progress)
    if (lane == 0) {
      const int ready = device::publish_progress(progress, gwarp, i1, G);
      if (ready > published) {
        device::red_max_release_sys(tail, ready);
        published = ready;
      }
    }
  }
}

/// Adds 8 bf16 values packed in `v` to `acc`.
__device__ __forceinline__ void accumulate_bf16x8(float (&acc)[8], const int4& v) {
  const auto* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 f = __bfloat1622float2(h[j]);
    acc[2 * j] += f.x;
    acc[2 * j + 1] += f.y;
  }
}

__device__ __forceinline__ int4 pack_bf16x8(const float (&acc)[8]) {
  int4 out;
  auto* h = reinterpret_cast<__nv_bfloat162*>(&out);
#pragma unroll
  for (int j = 0; j < 4; ++j) h[j] = __floats2bfloat162_rn(acc[2 * j], acc[2 * j + 1]);
  return out;
}

/// Sums token `token` from `slots[r]` (bf16 rows) of every rank r in `mask`, in ascending rank
/// order, plus biases. Weights come from the ring slots, and for this rank from row `self_row`
/// of the input weights.
template <int kNumRanks>
__device__ __forceinline__ void combine_reduce_token(const CombineArgs& a, int64_t token,
                                                     uint32_t mask,
                                                     const uint8_t* (&slots)[kNumRanks],
                                                     int64_t self_row, int lane) {
  const int hidden_int4 = static_cast<int>(a.hidden_bytes / 16);
  const auto* bias0 = reinterpret_cast<const int4*>(a.bias0 + token * a.hidden_bytes);
  const auto* bias1 = reinterpret_cast<const int4*>(a.bias1 + token * a.hidden_bytes);
  auto* out = reinterpret_cast<int4*>(a.combined_x + token * a.hidden_bytes);
  // Up to EP 4 the weights are loaded before the row so their latency hides behind it (at EP 8
  // the registers they take cost spills; they are loaded after the row).
  constexpr bool kEarlyWeights = kNumRanks <= 4;
  const bool has_weights = a.combined_topk_weights != nullptr && lane < a.num_topk;
  auto load_weight = [&](int r) {
    return has_weights && (mask >> r & 1u)
               ? device::ld_cg(r == a.rank ? a.topk_weights + self_row * a.num_topk + lane
                                           : reinterpret_cast<const float*>(
                                                 slots[r] + a.slot.topk_weights_offset) +
                                                 lane)
               : 0.0f;
  };
  float weights[kNumRanks];
  if constexpr (kEarlyWeights) {
#pragma unroll
    for (int r = 0; r < kNumRanks; ++r) weights[r] = load_weight(r);
  }
  // kUnroll consecutive 16-byte words per lane and rank in flight: kCombineLoads loads per lane
  // in total. The fp32 sums live only while one word is reduced (registers for the loads).
  constexpr int kUnroll = kNumRanks >= kCombineLoads ? 1 : kCombineLoads / kNumRanks;
  for (int i0 = lane; i0 < hidden_int4; i0 += 32 * kUnroll) {
    int4 v[kUnroll][kNumRanks];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = i0 + 32 * u;
      if (i >= hidden_int4) continue;
#pragma unroll
      for (int r = 0; r < kNumRanks; ++r)
        if (mask >> r & 1u) v[u][r] = device::ld_v4(reinterpret_cast<const int4*>(slots[r]) + i);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = i0 + 32 * u;
      if (i >= hidden_int4) continue;
      float acc[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[j] = 0.0f;
      if (a.bias0 != nullptr) accumulate_bf16x8(acc, device::ld_nc_v4(bias0 + i));
      if (a.bias1 != nullptr) accumulate_bf16x8(acc, device::ld_nc_v4(bias1 + i));
#pragma unroll
      for (int r = 0; r < kNumRanks; ++r)
        if (mask >> r & 1u) accumulate_bf16x8(acc, v[u][r]);
      device::st_na_v4(out + i, pack_bf16x8(acc));
    }
  }
  if (has_weights) {
    float w = 0.0f;  // ascending rank order; ranks not in `mask` add 0
#pragma unroll
    for (int r = 0; r < kNumRanks; ++r) w += kEarlyWeights ? weights[r] : load_weight(r);
    a.combined_topk_weights[token * a.num_topk + lane] = w;
  }
}

/// Receiver block: warp w reduces tokens begin + w, begin + w + kNumWarps, ... of channel
/// `channel`. The minimum token index over its warps gives, through send_head, how many slots of
/// each ring are consumed: that is published as the ring head.
template <int kNumRanks>
__device__ __forceinline__ void combine_recv(const CombineArgs& a, int channel, int warp, int lane,
                                             volatile int* progress) {
  const auto range = protocol::channel_token_range(a.num_tokens, a.num_channels, channel);
  protocol::IntranodeControl* local = a.peers.ctrl[a.rank];
  const uint8_t* rings = a.peers.rings[a.rank];
  int cached_tail = 0;  // lane r < kNumRanks: last seen tail of ring (channel, r)
  int published = range.begin;
  bool ok = true;
  // This rank's own rows are read straight from x: row self_base + slot.
  const int64_t self_base =
      (a.rank > 0 ? a.rank_prefix_matrix[(a.rank - 1) * kNumRanks + a.rank] : 0) +
      a.recv_channel_prefix_matrix[a.rank * a.num_channels + channel];
  // Lane r < kNumRanks holds the slot of token t from rank r; the next token's slots are loaded
  // while this one is reduced (a dependent load per token would add a memory round trip).
  auto load_slot = [&](int64_t t) {
    return lane < kNumRanks && t < range.end ? a.send_head[t * kNumRanks + lane] : -1;
  };
  int next_slot = load_slot(range.begin + warp);
  for (int64_t t = range.begin + warp; t < range.end; t += kNumWarps) {
    const int slot = next_slot;
    next_slot = load_slot(t + kNumWarps);
    if (ok && slot >= 0 && lane != a.rank && cached_tail <= slot) {
      ok = device::timed_wait(a.diag, protocol::WaitSite::kCombineTail, lane, channel, slot + 1,
                              [&](int64_t& observed) {
                                cached_tail =
                                    device::ld_acquire_sys(&local->ring_tail[channel][lane]);
                                observed = cached_tail;
                                return cached_tail > slot;
                              });
    }
    if (!__all_sync(0xffffffffu, ok)) return;
    const uint32_t mask = __ballot_sync(0xffffffffu, slot >= 0);
    const uint8_t* slots[kNumRanks];
    const int64_t self_row = self_base + max(__shfl_sync(0xffffffffu, slot, a.rank), 0);
#pragma unroll
    for (int r = 0; r < kNumRanks; ++r) {
      const int s = max(__shfl_sync(0xffffffffu, slot, r), 0);
      slots[r] =
          r == a.rank ? a.x + self_row * a.hidden_bytes : rings + a.rings.x_offset(channel, r, s);
    }
    combine_reduce_token<kNumRanks>(a, t, mask, slots, self_row, lane);
    __syncwarp();
    int done = 0;
    if (lane == 0)
      done = device::publish_progress(progress, warp, static_cast<int>(t) + kNumWarps, kNumWarps);
    done = __shfl_sync(0xffffffffu, done, 0);
    if (done > published && done < range.end) {
      if (lane < kNumRanks && lane != a.rank) {
        __threadfence();
        atomicMax(
            &local->ring_head[channel][lane],
            protocol::slots_before(a.send_head[static_cast<int64_t>(done) * kNumRanks + lane]));
      }
      published = done;
    }
  }
}

/// One block's work (warps return from it when their role is done).
template <int kNumRanks>
__device__ __forceinline__ void combine_block(const CombineArgs& a) {
  constexpr int G = CombineWarpSplit<kNumRanks>::kSendGroup;
  __shared__ int s_progress[kNumWarps];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int channel = blockIdx.x / 2;
  const bool is_sender = blockIdx.x % 2 == 0;
  if (lane == 0) {
    if (is_sender) {
      s_progress[warp] = 0;
    } else {
      const auto range = protocol::channel_token_range(a.num_tokens, a.num_channels, channel);
      s_progress[warp] = min(range.begin + warp, range.end);
    }
  }
  if (device::block_aborted(a.diag)) return;  // its barrier also publishes s_progress
  if (is_sender) {
    // Groups serve the other ranks only: this rank's own rows are read from x by its receiver.
    if (warp / G >= kNumRanks - 1) return;
    const device::RoleTimer timer(device::WarpRole::kSend);
    combine_send<kNumRanks, G>(a, channel, other_rank(warp / G, a.rank), warp % G, lane,
                               s_progress + (warp / G) * G);
  } else {
    const device::RoleTimer timer(device::WarpRole::kRecv);
    combine_recv<kNumRanks>(a, channel, warp, lane, s_progress);
  }
}

template <int kNumRanks>
__global__ void __launch_bounds__(kNumThreads, 1) intranode_combine_kernel(const CombineArgs a) {
  combine_block<kNumRanks>(a);
  device::poison_if_aborted(a.outputs, a.diag);
}

}  // namespace uccl::ep::kernels::intranode
