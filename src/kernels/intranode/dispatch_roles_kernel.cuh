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
  const int start = tokens_before<kNumRanks>(a, h, dst, range.begin, lane);
  auto publish_range = [&] {
    if (gwarp != 0) return;
    const int end = tokens_before<kNumRanks>(a, h, dst, range.end, lane);
    if (lane == 0) {
      protocol::ControlBlock* remote = a.peers.ctrl[dst];
      if (work == 0)  // every handle channel's start, covered by the release below
        for (int c = 0; c < h.num_channels; ++c) remote->handle_start[c][a.rank] = h.before(dst, c);
      device::st_release_sys(&remote->ring_meta[work][a.rank], protocol::encode_range(start, end));
    }
  };
  push_tokens<kNumRanks, G>(
      a, range, work, dst, gwarp, lane, progress, publish_range,
      [&](int t, int slot, bool to_dst) { return handle_slot(h, dst, t, start + slot, to_dst); });
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
  copy_own_tokens<kNumRanks, G>(a, range, base, work, gwarp, lane, [&](int t, int slot, bool mine) {
    return handle_slot(h, a.rank, t, start + slot, mine);
  });
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
    const int work = block - num_work, gwarp = warp % G;
    // Work channel 0's range release covered the peer's handle-channel starts (roles_push).
    drain_ring<kNumRanks, G>(a, work, src, gwarp, lane, s_progress[src], [&](int) {
      if (a.recv_channel_prefix_matrix != nullptr && work == 0 && gwarp == 0 && lane == 0)
        for (int c = 0; c < a.num_channels; ++c)
          a.recv_channel_prefix_matrix[src * a.num_channels + c] =
              device::ld_cg(&a.peers.ctrl[a.rank]->handle_start[c][src]);
    });
  } else {
    const device::RoleTimer timer(device::WarpRole::kSelf);
    roles_self<kNumRanks, kNumWarps>(a, block - 2 * num_work, num_self, warp, lane);
  }
}

}  // namespace uccl::ep::kernels::intranode
