// intranode_dispatch_kernel: moves each token to every rank that holds one of its experts.
//
// Grid: 2 * num_channels blocks. Block 2c sends channel c, block 2c+1 receives channel c.
// Channel c owns the token range channel_token_range(num_tokens, num_channels, c).
// The warps of each block split into groups (DispatchWarpSplit): one group per other rank
// (sender: pushes to it; receiver: drains its ring) and self warps (in the sender block, and
// at some rank counts also in the receiver block) that copy this rank's own tokens into the
// outputs.
//
// Sender group for destination d: publishes [start, end) (where its tokens land inside this
// rank's block on d), then walks its tokens in windows of max_send_tokens. A token going to d
// takes the next slot of ring (c, rank) on d; slot i is written by warp i % G of the group.
// After a window each warp records its progress in shared memory (CTA-scope release); the
// sender block's publisher warp (publisher.cuh) releases the minimum over the group as the ring
// tail on d.
// send_head[t][d] records the slot (or the encoded next slot when t does not go to d).
// Tokens a rank sends to itself skip the ring: the self warps write them straight into the
// output rows.
//
// Receiver group for source s: waits for the range, then repeatedly waits for the tail and
// copies slots i % G == its index to recv row base + i; the minimum progress of the group is
// published as the ring head, which the sender reads over NVLink when the ring looks full.
#pragma once

#include "device/health.cuh"
#include "device/timed_wait.cuh"
#include "device/warp_copy.cuh"
#include "kernels/intranode/args.h"
#include "kernels/intranode/publisher.cuh"
#include "kernels/intranode/warp_split.cuh"

namespace uccl::ep::kernels::intranode {

/// Where one token's fields go: a packed ring slot on a peer, or this rank's output row.
struct TokenDst {
  uint8_t* x;
  int32_t* scales;   // null: no scales
  int32_t* topk32;   // ring slot: local expert ids as int32 (or null)
  int64_t* topk64;   // output row: local expert ids as int64 (or null)
  float* weights;    // null with no top-k
  int32_t* src_idx;  // null: not recorded (cached dispatch into outputs)
};

__device__ __forceinline__ TokenDst slot_dst(const DispatchArgs& a, const protocol::RingView& ring,
                                             int slot) {
  uint8_t* meta = ring.record(a.rings, slot);
  return {ring.row(a.rings, slot),
          reinterpret_cast<int32_t*>(meta + a.slot.scales_offset),
          reinterpret_cast<int32_t*>(meta + a.slot.topk_idx_offset),
          nullptr,
          reinterpret_cast<float*>(meta + a.slot.topk_weights_offset),
          reinterpret_cast<int32_t*>(meta + a.slot.src_idx_offset)};
}

__device__ __forceinline__ TokenDst output_dst(const DispatchArgs& a, int64_t row) {
  return {a.recv_x + row * a.hidden_bytes,
          a.recv_x_scales ? a.recv_x_scales + row * a.num_scales : nullptr,
          nullptr,
          a.recv_topk_idx ? a.recv_topk_idx + row * a.num_topk : nullptr,
          a.recv_topk_weights ? a.recv_topk_weights + row * a.num_topk : nullptr,
          a.recv_src_idx ? a.recv_src_idx + row : nullptr};
}

/// Copies token `token` of this rank, with its scales and its top-k entries converted to
/// `dst_rank`'s local expert ids (-1 / weight 0 elsewhere), to `d`. Whole warp.
__device__ __forceinline__ void dispatch_copy_token(const DispatchArgs& a, int token, int dst_rank,
                                                    const TokenDst& d, int lane) {
  const int64_t t = token;
  // Issue the small loads first so their latency hides behind the row copy (the first 64 scales,
  // hidden <= 8192 with 128-channel scales; more are copied after the row).
  constexpr int kMaxScalesPerLane = 2;
  int32_t scales[kMaxScalesPerLane];
  const int num_scale_loads = a.x_scales != nullptr ? (a.num_scales + 31) / 32 : 0;
#pragma unroll
  for (int j = 0; j < kMaxScalesPerLane; ++j) {
    const int i = lane + 32 * j;
    if (j < num_scale_loads && i < a.num_scales)
      scales[j] = __ldg(a.x_scales + t * a.scale_token_stride + i * a.scale_hidden_stride);
  }
  // Expert and weight are loaded together and only used after the row copy (a comparison
  // before it would wait for them: a memory round trip per token).
  const bool has_topk = a.topk_idx != nullptr && lane < a.num_topk;
  int64_t expert = -1;
  float w = 0.0f;
  if (has_topk) {
    expert = __ldg(a.topk_idx + t * a.num_topk + lane);
    w = __ldg(a.topk_weights + t * a.num_topk + lane);
  }
  {
    const device::CopyTimer timer(dst_rank != a.rank ? device::CopyKind::kPush
                                                     : device::CopyKind::kSelf);
    device::warp_copy_v4<kCopyUnroll, true>(reinterpret_cast<int4*>(d.x),
                                            reinterpret_cast<const int4*>(a.x + t * a.hidden_bytes),
                                            static_cast<int>(a.hidden_bytes / 16), lane);
  }
  int32_t local_expert = -1;
  float weight = 0.0f;
  const int64_t first = static_cast<int64_t>(dst_rank) * a.num_local_experts;
  if (has_topk && expert >= first && expert < first + a.num_local_experts) {
    local_expert = static_cast<int32_t>(expert - first);
    weight = w;
  }
  if (d.scales != nullptr && a.x_scales != nullptr) {
#pragma unroll
    for (int j = 0; j < kMaxScalesPerLane; ++j) {
      const int i = lane + 32 * j;
      if (j < num_scale_loads && i < a.num_scales) d.scales[i] = scales[j];
    }
    for (int i = lane + 32 * kMaxScalesPerLane; i < a.num_scales; i += 32)
      d.scales[i] = __ldg(a.x_scales + t * a.scale_token_stride + i * a.scale_hidden_stride);
  }
  if (has_topk) {
    if (d.topk32 != nullptr) d.topk32[lane] = local_expert;
    if (d.topk64 != nullptr) d.topk64[lane] = local_expert;
    if (d.weights != nullptr) d.weights[lane] = weight;
  }
  if (d.src_idx != nullptr && lane == 0) *d.src_idx = token;
}

/// send_head value of a token: its slot in its channel's sequence to the destination, or the
/// encoded next slot when it does not go there.
struct ChannelSlot {
  __device__ int32_t operator()(int /*token*/, int slot, bool to_dst) const {
    return to_dst ? slot : protocol::encode_unsent(slot);
  }
};

/// This rank's tokens of `range` that stay here skip the ring: they go straight into output rows
/// base, base + 1, ..., the k-th of them by warp k % G (`gwarp` in [0, G)). Warp 0 records
/// send_head[t][rank] = head_value(t, slot, mine). `channel` names the range in reports.
template <int kNumRanks, int G, typename HeadValue>
__device__ __forceinline__ void copy_own_tokens(const DispatchArgs& a, protocol::TokenRange range,
                                                int64_t base, int channel, int gwarp, int lane,
                                                const HeadValue& head_value) {
  // Each lane loads the routing flag of its token of the next 32 while this batch is copied.
  auto load_flag = [&](int t) {
    return t < range.end && a.is_token_in_rank[static_cast<int64_t>(t) * kNumRanks + a.rank];
  };
  bool next_flag = load_flag(range.begin + lane);
  int sent = 0;
  for (int t0 = range.begin; t0 < range.end; t0 += 32) {
    const int t = t0 + lane;
    const bool mine = next_flag;
    next_flag = load_flag(t + 32);
    const uint32_t mask = __ballot_sync(0xffffffffu, mine);
    const int slot_before = sent + __popc(mask & ((1u << lane) - 1u));
    if (a.send_head != nullptr && gwarp == 0 && t < range.end)
      a.send_head[static_cast<int64_t>(t) * kNumRanks + a.rank] = head_value(t, slot_before, mine);
    uint32_t rest = mask;
    for (int k = 0; rest != 0; ++k) {
      const int bit = __ffs(rest) - 1;
      rest &= rest - 1u;
      if ((sent + k) % G != gwarp) continue;
      const int64_t row = base + sent + k;
      if (row >= a.num_recv_rows) {  // fewer rows than tokens: report, never write past
        if (lane == 0)
          device::report_timeout(a.diag, protocol::WaitSite::kRecvOverflow, a.rank, channel,
                                 a.num_recv_rows, row + 1, 0);
        continue;
      }
      dispatch_copy_token(a, t0 + bit, a.rank, output_dst(a, row), lane);
    }
    sent += __popc(mask);
  }
}

/// This rank's own tokens of `channel`, by the G self warps of the channel (DispatchWarpSplit).
/// Self warp 0 (sender block) also records send_head and the channel's prefix.
template <int kNumRanks, int G>
__device__ __forceinline__ void dispatch_send_self(const DispatchArgs& a, int channel, int gwarp,
                                                   int lane) {
  const auto range = protocol::channel_token_range(a.num_tokens, a.num_channels, channel);
  const int32_t* prefix = a.channel_prefix_matrix + a.rank * a.num_channels;
  const int start = channel > 0 ? prefix[channel - 1] : 0;
  if (a.recv_channel_prefix_matrix != nullptr && gwarp == 0 && lane == 0)
    a.recv_channel_prefix_matrix[a.rank * a.num_channels + channel] = start;
  const int64_t base =
      (a.rank > 0 ? a.rank_prefix_matrix[(a.rank - 1) * kNumRanks + a.rank] : 0) + start;
  copy_own_tokens<kNumRanks, G>(a, range, base, channel, gwarp, lane, ChannelSlot{});
}

/// One warp of the group pushing `range` to `dst` over ring (channel, rank) of `dst`: first
/// publish_range() (every lane of every warp; it tells `dst` where the tokens land), then windows
/// of max_send_tokens: a token going to `dst` takes the next slot, slot i written by warp i % G
/// (`gwarp`); after each window the warp records its progress for the publisher. Warp 0 records
/// send_head[t][dst] = head_value(t, slot, to_dst).
template <int kNumRanks, int G, typename PublishRange, typename HeadValue>
__device__ __forceinline__ void push_tokens(const DispatchArgs& a, protocol::TokenRange range,
                                            int channel, int dst, int gwarp, int lane,
                                            volatile int* progress,
                                            const PublishRange& publish_range,
                                            const HeadValue& head_value) {
  const protocol::RingView ring(a.peers.rings[dst], a.rings, channel, a.rank);
  const int32_t* head = &a.peers.ctrl[dst]->ring_head[channel][a.rank];
  const int capacity = a.rings.capacity;
  publish_range();
  // Each lane loads the routing flag of its token of the next 32 while this batch is copied.
  auto load_flag = [&](int t) {
    return t < range.end && a.is_token_in_rank[static_cast<int64_t>(t) * kNumRanks + dst];
  };
  bool next_flag = load_flag(range.begin + lane);
  int sent = 0, cached_head = 0;
  bool ok = true;
  for (int t0 = range.begin; t0 < range.end; t0 += a.max_send_tokens) {
    const int t1 = min(t0 + a.max_send_tokens, range.end);
    const int needed = sent + (t1 - t0) - capacity;  // head must reach this for room
    device::warp_wait_ring_head(a.diag, protocol::WaitSite::kDispatchHead, dst, channel, head,
                                needed, lane, cached_head, ok);
    // 32 tokens at a time: each lane loads one routing flag, the ballot gives every slot.
    for (int base = t0; base < t1; base += 32) {
      const int t = base + lane;
      const bool to_dst = t < t1 && next_flag;
      next_flag = load_flag(min(base + 32, t1) + lane);  // the next batch, maybe of the next window
      const uint32_t mask = __ballot_sync(0xffffffffu, to_dst);
      const int slot_before = sent + __popc(mask & ((1u << lane) - 1u));
      if (a.send_head != nullptr && gwarp == 0 && t < t1)
        a.send_head[static_cast<int64_t>(t) * kNumRanks + dst] = head_value(t, slot_before, to_dst);
      // This warp's slots are sent + k for k = first_k, first_k + G, ...
      uint32_t rest = mask;
      for (int k = 0, first_k = ((gwarp - sent % G) % G + G) % G; rest != 0; ++k) {
        const int bit = __ffs(rest) - 1;
        rest &= rest - 1u;
        if (k < first_k || (k - first_k) % G != 0) continue;
        const int slot = sent + k;
        if (ok) dispatch_copy_token(a, base + bit, dst, slot_dst(a, ring, slot), lane);
      }
      sent += __popc(mask);
    }
    // No system fence here: the warp's stores are ordered before lane 0's CTA-scope release of
    // its progress, and the publisher's system-scope release of the tail is cumulative over
    // them.
    __syncwarp();
    if (lane == 0) device::record_progress(progress, gwarp, sent);
  }
}

/// The sender group for `dst`: publishes where the channel's tokens land on `dst`, then pushes
/// them.
template <int kNumRanks, int G>
__device__ __forceinline__ void dispatch_send(const DispatchArgs& a, int channel, int dst,
                                              int gwarp, int lane, volatile int* progress) {
  const auto range = protocol::channel_token_range(a.num_tokens, a.num_channels, channel);
  auto publish_range = [&] {
    if (gwarp != 0 || lane != 0) return;
    const int32_t* prefix = a.channel_prefix_matrix + dst * a.num_channels;
    const int start = channel > 0 ? prefix[channel - 1] : 0;
    device::st_release_sys(&a.peers.ctrl[dst]->ring_meta[channel][a.rank],
                           protocol::encode_range(start, prefix[channel]));
  };
  push_tokens<kNumRanks, G>(a, range, channel, dst, gwarp, lane, progress, publish_range,
                            ChannelSlot{});
}

/// Slot `i` of `ring` into output row `row`. Whole warp.
__device__ __forceinline__ void dispatch_copy_slot_to_output(const DispatchArgs& a,
                                                             const protocol::RingView& ring, int i,
                                                             int64_t row, int lane) {
  const uint8_t* slot = ring.row(a.rings, i);
  const uint8_t* meta = ring.record(a.rings, i);
  // The small fields are loaded before the row copy so their latency hides behind it.
  constexpr int kMaxScalesPerLane = 2;
  const auto* in_scales = reinterpret_cast<const int32_t*>(meta + a.slot.scales_offset);
  int32_t scales[kMaxScalesPerLane];
  const bool has_scales = a.recv_x_scales != nullptr;
#pragma unroll
  for (int j = 0; j < kMaxScalesPerLane; ++j)
    if (has_scales && lane + 32 * j < a.num_scales)
      scales[j] = device::ld_cg(in_scales + lane + 32 * j);
  const bool has_topk = a.recv_topk_idx != nullptr && lane < a.num_topk;
  int32_t expert = 0;
  float weight = 0.0f;
  if (has_topk) {
    expert = device::ld_cg(reinterpret_cast<const int32_t*>(meta + a.slot.topk_idx_offset) + lane);
    weight =
        device::ld_cg(reinterpret_cast<const float*>(meta + a.slot.topk_weights_offset) + lane);
  }
  const bool has_src = a.recv_src_idx != nullptr && lane == 0;
  int32_t src_idx = 0;
  if (has_src)
    src_idx = device::ld_cg(reinterpret_cast<const int32_t*>(meta + a.slot.src_idx_offset));
  {
    const device::CopyTimer timer(device::CopyKind::kDrain);
    device::warp_copy_v4<kCopyUnroll, false>(
        reinterpret_cast<int4*>(a.recv_x + row * a.hidden_bytes),
        reinterpret_cast<const int4*>(slot), static_cast<int>(a.hidden_bytes / 16), lane);
  }
  if (has_scales) {
#pragma unroll
    for (int j = 0; j < kMaxScalesPerLane; ++j)
      if (lane + 32 * j < a.num_scales)
        a.recv_x_scales[row * a.num_scales + lane + 32 * j] = scales[j];
    for (int i = lane + 32 * kMaxScalesPerLane; i < a.num_scales; i += 32)
      a.recv_x_scales[row * a.num_scales + i] = device::ld_cg(in_scales + i);
  }
  if (has_topk) {
    a.recv_topk_idx[row * a.num_topk + lane] = expert;
    a.recv_topk_weights[row * a.num_topk + lane] = weight;
  }
  if (has_src) a.recv_src_idx[row] = src_idx;
}

/// One warp of the group draining ring (channel, src) of this rank: waits for the range src
/// published, calls on_range(start) (every lane), then repeatedly waits for the tail and copies
/// slots i % G == gwarp to recv row base + i; the group's minimum progress is published as the
/// ring head.
template <int kNumRanks, int G, typename OnRange>
__device__ __forceinline__ void drain_ring(const DispatchArgs& a, int channel, int src, int gwarp,
                                           int lane, volatile int* progress,
                                           const OnRange& on_range) {
  protocol::IntranodeControl* local = a.peers.ctrl[a.rank];
  const protocol::RingView ring(a.peers.rings[a.rank], a.rings, channel, src);
  int32_t* head = &local->ring_head[channel][src];
  const int32_t* tail = &local->ring_tail[channel][src];

  int64_t range = 0;
  bool ok = true;
  if (lane == 0) {
    ok = device::timed_wait(a.diag, protocol::WaitSite::kDispatchRange, src, channel, 1,
                            [&](int64_t& observed) {
                              range = device::ld_acquire_sys(&local->ring_meta[channel][src]);
                              observed = range;
                              return range != 0;
                            });
  }
  if (!__shfl_sync(0xffffffffu, ok, 0)) return;
  range = __shfl_sync(0xffffffffu, range, 0);
  const int start = protocol::decode_range_start(range);
  const int num = protocol::decode_range_end(range) - start;
  on_range(start);
  const int64_t base = (src > 0 ? a.rank_prefix_matrix[(src - 1) * kNumRanks + a.rank] : 0) + start;

  int consumed = 0, cached_tail = 0, published = 0;
  while (consumed < num) {
    if (cached_tail <= consumed) {
      if (lane == 0) {
        ok = device::timed_wait(a.diag, protocol::WaitSite::kDispatchTail, src, channel,
                                consumed + 1, [&](int64_t& observed) {
                                  cached_tail = device::ld_acquire_sys(tail);
                                  observed = cached_tail;
                                  return cached_tail > consumed;
                                });
      }
      if (!__shfl_sync(0xffffffffu, ok, 0)) return;
      cached_tail = __shfl_sync(0xffffffffu, cached_tail, 0);
    }
    const int first = consumed + ((gwarp - consumed % G) + G) % G;
    for (int i = first; i < cached_tail; i += G) {
      if (base + i >= a.num_recv_rows) {  // fewer rows than tokens: report, never write past
        if (lane == 0)
          device::report_timeout(a.diag, protocol::WaitSite::kRecvOverflow, src, channel,
                                 a.num_recv_rows, base + i + 1, 0);
        continue;
      }
      dispatch_copy_slot_to_output(a, ring, i, base + i, lane);
    }
    consumed = cached_tail;
    __syncwarp();
    if (lane == 0) {
      const int done = device::publish_progress(progress, gwarp, consumed, G);
      if (done > published) {
        __threadfence();
        atomicMax(head, done);
        published = done;
      }
    }
  }
}

/// One block's work (warps return from it when their role is done).
template <int kNumRanks>
__device__ __forceinline__ void dispatch_block(const DispatchArgs& a) {
  using Split = DispatchWarpSplit<kNumRanks>;
  constexpr int kSelfWarps = Split::kSelfSend + Split::kSelfRecv;
  __shared__ int s_progress[kNumRanks][Split::kMaxGroup];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0 && warp < Split::kMaxGroup)
    for (int r = 0; r < kNumRanks; ++r) s_progress[r][warp] = 0;
  if (device::block_aborted(a.diag)) return;  // its barrier also publishes s_progress
  const int channel = blockIdx.x / 2;
  const bool is_sender = blockIdx.x % 2 == 0;
  if (is_sender && warp == Split::kPublisherWarp) {
    const device::RoleTimer timer(device::WarpRole::kPublish);
    int total = 0;
    int32_t* tail = nullptr;
    if (lane < kNumRanks && lane != a.rank) {
      const int32_t* prefix = a.channel_prefix_matrix + lane * a.num_channels;
      total = prefix[channel] - (channel > 0 ? prefix[channel - 1] : 0);
      tail = &a.peers.ctrl[lane]->ring_tail[channel][a.rank];
    }
    publish_tails<kNumRanks, Split::kGroupSend>(a.diag, protocol::WaitSite::kDispatchPublish,
                                                a.rank, channel, lane, tail, total,
                                                s_progress[min(lane, kNumRanks - 1)]);
    return;
  }
  // One call site for the self copies of both blocks (a second inlined copy costs registers).
  const int num_self = is_sender ? Split::kSelfSend : Split::kSelfRecv;
  if (warp < num_self) {
    const device::RoleTimer timer(device::WarpRole::kSelf);
    dispatch_send_self<kNumRanks, kSelfWarps>(a, channel,
                                              is_sender ? warp : Split::kSelfSend + warp, lane);
    return;
  }
  if (is_sender) {
    constexpr int G = Split::kGroupSend;
    const int g = (warp - Split::kSelfSend) / G;
    if (g >= kNumRanks - 1) return;
    const int dst = other_rank(g, a.rank);
    const device::RoleTimer timer(device::WarpRole::kSend);
    dispatch_send<kNumRanks, G>(a, channel, dst, (warp - Split::kSelfSend) % G, lane,
                                s_progress[dst]);
  } else {
    constexpr int G = Split::kGroupRecv;
    const int g = (warp - Split::kSelfRecv) / G;
    if (g >= kNumRanks - 1) return;
    const int src = other_rank(g, a.rank);
    const device::RoleTimer timer(device::WarpRole::kRecv);
    const int gwarp = (warp - Split::kSelfRecv) % G;
    drain_ring<kNumRanks, G>(a, channel, src, gwarp, lane, s_progress[src], [&](int start) {
      if (a.recv_channel_prefix_matrix != nullptr && gwarp == 0 && lane == 0)
        a.recv_channel_prefix_matrix[src * a.num_channels + channel] = start;
    });
  }
}

template <int kNumRanks>
__global__ void __launch_bounds__(kNumThreads, 1) intranode_dispatch_kernel(const DispatchArgs a) {
  dispatch_block<kNumRanks>(a);
  device::poison_if_aborted(a.outputs, a.diag);
}

}  // namespace uccl::ep::kernels::intranode
