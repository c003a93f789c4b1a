// intranode_dispatch_roles_kernel (experiment, built with UCCL_EP_DISPATCH_ROLES=1): the dispatch
// with SM-pure roles. The capacity model of docs/intranode.md says an EP 2 dispatch
// balances with ~8 SMs pushing over NVLink and ~16 copying locally; the paired kernel
// (dispatch_kernel.cuh) has one sender and one receiver SM per channel and mixes pushes with
// own-row copies on the sender SM.
//
// Work channels: W token ranges (channel_token_range(T, W, w)); 2 W + S blocks: block w pushes
// work channel w to every peer (a warp group per peer, and the publisher warp), block W + w drains
// rings (w, peer) into the outputs (a warp group per peer), and S self blocks copy this rank's own
// tokens into place, each a range channel_token_range(T, S, s) (24 warps). launch_dispatch picks S
// ~ num_sms / (2 R - 1) (a rank keeps 1 / R of what it receives; the rest is pushed by the peers
// and drained here) and W = (num_sms - S) / 2: 8 / 8 / 8 SMs at EP 2, 10 / 10 / 4 at EP 4. The
// handle keeps DeepEP's C = num_channels channels: send_head slots and recv_channel_prefix_matrix
// are relative to them, so the combine and the cached dispatch's handle are the paired kernel's.
// Push block 0 writes, before releasing the range of work channel 0, the sender-side start of every
// handle channel into the receiver's ControlBlock (handle_start); drain block 0 copies them into
// recv_channel_prefix_matrix.
#pragma once

#include "kernels/intranode/dispatch_kernel.cuh"

namespace uccl::ep::kernels::intranode {

/// DeepEP's channels of the handle (C = num_channels): their token ranges and the inclusive
/// sender-side prefix channel_prefix_matrix [R, C].
struct HandleChannels {
  const int32_t* prefix;
  int num_channels, per_channel, num_tokens;

  __device__ HandleChannels(const DispatchArgs& a)
      : prefix(a.channel_prefix_matrix),
        num_channels(a.num_channels),
        per_channel(max((a.num_tokens + a.num_channels - 1) / a.num_channels, 1)),
        num_tokens(a.num_tokens) {}
  /// The handle channel of token t (t <= num_tokens; num_tokens may give num_channels).
  __device__ int of(int t) const { return t / per_channel; }
  __device__ int begin(int c) const { return min(c * per_channel, num_tokens); }
  /// Tokens of this rank going to `dst` in the handle channels before c.
  __device__ int before(int dst, int c) const {
    return c > 0 ? prefix[dst * num_channels + c - 1] : 0;
  }
};

/// Tokens of this rank going to `dst` among tokens [0, t) (whole warp; every lane gets it).
template <int kNumRanks>
__device__ __forceinline__ int tokens_before(const DispatchArgs& a, const HandleChannels& h,
                                             int dst, int t, int lane) {
  const int c = h.of(t);
  int count = 0;
  for (int i = h.begin(c) + lane; i < t; i += 32)
    count += a.is_token_in_rank[static_cast<int64_t>(i) * kNumRanks + dst] ? 1 : 0;
  return h.before(dst, c) + __reduce_add_sync(0xffffffffu, count);
}

/// send_head value of token t for `dst`: its slot in handle channel of(t)'s sequence, given the
/// number `g` of this rank's tokens to `dst` before t.
__device__ __forceinline__ int32_t handle_slot(const HandleChannels& h, int dst, int t, int g,
                                               bool to_dst) {
  const int slot = g - h.before(dst, h.of(t));
  return to_dst ? slot : protocol::encode_unsent(slot);
}

template <int kNumRanks, int G>
__device__ __forceinline__ void roles_push(const DispatchArgs& a, int work, int num_work, int dst,
                                           int gwarp, int lane, volatile int* progress) {
  const HandleChannels h(a);
  const auto range = protocol::channel_token_range(a.num_tokens, num_work, work);
  protocol::ControlBlock* remote = a.peers.ctrl[dst];
  const protocol::RingView ring(a.peers.rings[dst], a.rings, work, a.rank);
  const int32_t* head = &remote->ring_head[work][a.rank];
  const int capacity = a.rings.capacity;
  const int start = tokens_before<kNumRanks>(a, h, dst, range.begin, lane);

  if (gwarp == 0) {
    const int end = tokens_before<kNumRanks>(a, h, dst, range.end, lane);
    if (lane == 0) {
      if (work == 0)  // every handle channel's start, covered by the release below
        for (int c = 0; c < h.num_channels; ++c) remote->handle_start[c][a.rank] = h.before(dst, c);
      device::st_release_sys(&remote->ring_meta[work][a.rank], protocol::encode_range(start, end));
    }
  }

  auto load_flag = [&](int t) {
    return t < range.end && a.is_token_in_rank[static_cast<int64_t>(t) * kNumRanks + dst];
  };
  bool next_flag = load_flag(range.begin + lane);
  int sent = 0, cached_head = 0;
  bool ok = true;
  for (int t0 = range.begin; t0 < range.end; t0 += a.max_send_tokens) {
    const int t1 = min(t0 + a.max_send_tokens, range.end);
    const int needed = sent + (t1 - t0) - capacity;
    device::warp_wait_ring_head(a.diag, protocol::WaitSite::kDispatchHead, dst, work, head, needed,
                                lane, cached_head, ok);
    for (int base = t0; base < t1; base += 32) {
      const int t = base + lane;
      const bool to_dst = t < t1 && next_flag;
      next_flag = load_flag(min(base + 32, t1) + lane);
      const uint32_t mask = __ballot_sync(0xffffffffu, to_dst);
      const int slot_before = sent + __popc(mask & ((1u << lane) - 1u));
      if (a.send_head != nullptr && gwarp == 0 && t < t1)
        a.send_head[static_cast<int64_t>(t) * kNumRanks + dst] =
            handle_slot(h, dst, t, start + slot_before, to_dst);
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
    __syncwarp();
    if (lane == 0) device::record_progress(progress, gwarp, sent);
  }
}

template <int kNumRanks, int G>
__device__ __forceinline__ void roles_drain(const DispatchArgs& a, int work, int num_work, int src,
                                            int gwarp, int lane, volatile int* progress) {
  const HandleChannels h(a);
  protocol::ControlBlock* local = a.peers.ctrl[a.rank];
  const protocol::RingView ring(a.peers.rings[a.rank], a.rings, work, src);
  int32_t* head = &local->ring_head[work][src];
  const int32_t* tail = &local->ring_tail[work][src];

  int64_t range = 0;
  bool ok = true;
  if (lane == 0) {
    ok = device::timed_wait(a.diag, protocol::WaitSite::kDispatchRange, src, work, 1,
                            [&](int64_t& observed) {
                              range = device::ld_acquire_sys(&local->ring_meta[work][src]);
                              observed = range;
                              return range != 0;
                            });
  }
  if (!__shfl_sync(0xffffffffu, ok, 0)) return;
  range = __shfl_sync(0xffffffffu, range, 0);
  const int start = protocol::decode_range_start(range);
  const int num = protocol::decode_range_end(range) - start;
  // Work channel 0's range release covered the peer's handle-channel starts (roles_push).
  if (a.recv_channel_prefix_matrix != nullptr && work == 0 && gwarp == 0 && lane == 0)
    for (int c = 0; c < a.num_channels; ++c)
      a.recv_channel_prefix_matrix[src * a.num_channels + c] =
          device::ld_cg(&local->handle_start[c][src]);
  const int64_t base = (src > 0 ? a.rank_prefix_matrix[(src - 1) * kNumRanks + a.rank] : 0) + start;

  int consumed = 0, cached_tail = 0, published = 0;
  while (consumed < num) {
    if (cached_tail <= consumed) {
      if (lane == 0) {
        ok = device::timed_wait(a.diag, protocol::WaitSite::kDispatchTail, src, work, consumed + 1,
                                [&](int64_t& observed) {
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
      if (base + i >= a.num_recv_rows) {
        if (lane == 0)
          device::report_timeout(a.diag, protocol::WaitSite::kRecvOverflow, src, work,
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

/// This rank's own tokens of range `work` of `num_work` (self blocks: num_self ranges) into
/// place; the k-th by warp k % G.
template <int kNumRanks, int G>
__device__ __forceinline__ void roles_self(const DispatchArgs& a, int work, int num_work, int gwarp,
                                           int lane) {
  const HandleChannels h(a);
  const auto range = protocol::channel_token_range(a.num_tokens, num_work, work);
  const int start = tokens_before<kNumRanks>(a, h, a.rank, range.begin, lane);
  if (a.recv_channel_prefix_matrix != nullptr && work == 0 && gwarp == 0 && lane == 0)
    for (int c = 0; c < h.num_channels; ++c)
      a.recv_channel_prefix_matrix[a.rank * a.num_channels + c] = h.before(a.rank, c);
  const int64_t base =
      (a.rank > 0 ? a.rank_prefix_matrix[(a.rank - 1) * kNumRanks + a.rank] : 0) + start;
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
      a.send_head[static_cast<int64_t>(t) * kNumRanks + a.rank] =
          handle_slot(h, a.rank, t, start + slot_before, mine);
    uint32_t rest = mask;
    for (int k = 0; rest != 0; ++k) {
      const int bit = __ffs(rest) - 1;
      rest &= rest - 1u;
      if ((sent + k) % G != gwarp) continue;
      const int64_t row = base + sent + k;
      if (row >= a.num_recv_rows) {
        if (lane == 0)
          device::report_timeout(a.diag, protocol::WaitSite::kRecvOverflow, a.rank, work,
                                 a.num_recv_rows, row + 1, 0);
        continue;
      }
      dispatch_copy_token(a, t0 + bit, a.rank, output_dst(a, row), lane);
    }
    sent += __popc(mask);
  }
}

/// Warps of the role-split blocks: a push block has one group of kPushGroup warps per other rank
/// and the publisher warp last; a drain block one group of kDrainGroup warps per other rank; a
/// self block is all self warps. Warps beyond the groups idle.
template <int kNumRanks>
struct RoleSplit {
  static constexpr int kPushGroup = (kNumWarps - 1) / (kNumRanks - 1);
  static constexpr int kDrainGroup = kNumWarps / (kNumRanks - 1);
  static constexpr int kPublisherWarp = kNumWarps - 1;
};

/// Blocks [0, num_work) push work channel b, [num_work, 2 num_work) drain work channel
/// b - num_work, the last num_self blocks copy own-token range b - 2 num_work of num_self.
template <int kNumRanks>
__global__ void __launch_bounds__(kNumThreads, 1)
    intranode_dispatch_roles_kernel(const DispatchArgs a, int num_work, int num_self) {
  using Split = RoleSplit<kNumRanks>;
  __shared__ int s_progress[kNumRanks][Split::kDrainGroup];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0 && warp < Split::kDrainGroup)
    for (int r = 0; r < kNumRanks; ++r) s_progress[r][warp] = 0;
  __syncthreads();
  if (device::aborted(a.diag)) return;
  const int block = blockIdx.x;
  if (block < num_work) {
    constexpr int G = Split::kPushGroup;
    if (warp == Split::kPublisherWarp) {  // counts each peer's tokens, then publishes tails
      const device::RoleTimer timer(device::WarpRole::kPublish);
      const HandleChannels h(a);
      const auto range = protocol::channel_token_range(a.num_tokens, num_work, block);
      int total = 0;
      for (int d = 0; d < kNumRanks; ++d) {
        if (d == a.rank) continue;
        const int count = tokens_before<kNumRanks>(a, h, d, range.end, lane) -
                          tokens_before<kNumRanks>(a, h, d, range.begin, lane);
        if (lane == d) total = count;
      }
      const bool active = lane < kNumRanks && lane != a.rank;
      int32_t* tail = active ? &a.peers.ctrl[lane]->ring_tail[block][a.rank] : nullptr;
      publish_tails<kNumRanks, G>(a.diag, protocol::WaitSite::kDispatchPublish, a.rank, block, lane,
                                  tail, total, s_progress[min(lane, kNumRanks - 1)]);
      return;
    }
    const int g = warp / G;
    if (g >= kNumRanks - 1) return;
    const int dst = other_rank(g, a.rank);
    const device::RoleTimer timer(device::WarpRole::kSend);
    roles_push<kNumRanks, G>(a, block, num_work, dst, warp % G, lane, s_progress[dst]);
  } else if (block < 2 * num_work) {
    constexpr int G = Split::kDrainGroup;
    const int g = warp / G;
    if (g >= kNumRanks - 1) return;
    const int src = other_rank(g, a.rank);
    const device::RoleTimer timer(device::WarpRole::kRecv);
    roles_drain<kNumRanks, G>(a, block - num_work, num_work, src, warp % G, lane, s_progress[src]);
  } else {
    const device::RoleTimer timer(device::WarpRole::kSelf);
    roles_self<kNumRanks, kNumWarps>(a, block - 2 * num_work, num_self, warp, lane);
  }
}

}  // namespace uccl::ep::kernels::intranode
