// How the warps of the dispatch and combine blocks split into per-rank groups.
#pragma once

#include "kernels/intranode/args.h"

namespace uccl::ep::kernels::intranode {

/// Dispatch. The sender block has kSelfSend warps copying this rank's own tokens straight
/// into its outputs, one group of kGroupSend warps per other rank (pushing to that rank's
/// ring) and, last, one publisher warp (kPublisherWarp) that releases the ring tails, so that
/// no copy warp waits for its stores to land; the receiver block has kSelfRecv more self warps
/// and one group of kGroupRecv warps per other rank (draining its ring). The self copies are
/// numbered over both blocks' self warps. Measured on H200 (bench/bench_intranode.py): at EP 2
/// splitting the self copies over both blocks (7 + 8 self warps, groups of 16) beats a sender-only
/// split by ~40 %; at EP 4 the sender-only split (5 self warps, groups of 6 and 8) is the better
/// one (with the publisher warp, splitting at EP 4 measured 238 vs 349 GB/s FP8; keeping the
/// sender block as it is and adding 3 or 6 self warps to the receiver block, whose groups wait
/// ~40 % of their time, measured 269 / 267 vs 353 FP8 and 287 / 288 vs 360 BF16: the send warps
/// themselves got ~40 % slower, for reasons not understood). The publisher
/// warp raised FP8 dispatch at EP 4 from 317 to 335-354 GB/s (DeepEP-counted, three runs).
#ifndef UCCL_EP_EP2_GROUP_SEND
#define UCCL_EP_EP2_GROUP_SEND 16
#endif
#ifndef UCCL_EP_EP2_GROUP_RECV
#define UCCL_EP_EP2_GROUP_RECV 16
#endif
template <int kNumRanks>
struct DispatchWarpSplit {
  static_assert(kNumRanks >= 2 && kNumRanks <= kNumWarps, "unsupported rank count");
  static constexpr bool kSplitSelf = kNumRanks == 2 || kNumRanks > 4;
  static constexpr int kGroupSend = kNumRanks == 2 ? UCCL_EP_EP2_GROUP_SEND
                                    : kSplitSelf   ? (kNumWarps - 3) / (kNumRanks - 1)
                                                   : kNumWarps / kNumRanks;
  static constexpr int kPublisherWarp = kNumWarps - 1;
  static constexpr int kSelfSend = kPublisherWarp - (kNumRanks - 1) * kGroupSend;
  static constexpr int kGroupRecv = kNumRanks == 2 ? UCCL_EP_EP2_GROUP_RECV
                                    : kSplitSelf   ? kGroupSend
                                                   : kNumWarps / (kNumRanks - 1);
  static constexpr int kSelfRecv = kSplitSelf ? kNumWarps - (kNumRanks - 1) * kGroupRecv : 0;
  static constexpr int kMaxGroup = kGroupSend > kGroupRecv ? kGroupSend : kGroupRecv;
  // kSelfSend may be 0 (all of the sender block pushes; experiment UCCL_EP_EP2_GROUP_SEND=23):
  // then the receiver block's first self warp records send_head (self warp 0 of the numbering).
  static_assert(kSelfSend >= 0 && kSelfSend + kSelfRecv >= 1 && kGroupSend >= 1 && kGroupRecv >= 1,
                "empty warp group");
  static_assert(kSelfRecv + (kNumRanks - 1) * kGroupRecv <= kNumWarps, "too many warps");
};

/// Combine sender block: one group of kSendGroup warps per other rank (a rank's own rows are
/// read from x by its receiver block); warps beyond the groups idle. The combine keeps the
/// tail releases in its copy warps: a publisher warp as in dispatch measured slower there
/// (EP 2 on H200: 443 vs 484 GB/s DeepEP-counted; with a back-off on the head polls, 442).
template <int kNumRanks>
struct CombineWarpSplit {
  static_assert(kNumRanks >= 2 && kNumRanks <= kNumWarps, "unsupported rank count");
  static constexpr int kSendGroup = kNumWarps / (kNumRanks - 1);
};

/// The rank served by group `g` of the groups of the other ranks (this rank skipped).
__device__ __forceinline__ int other_rank(int g, int rank) {
  return g < rank ? g : g + 1;
}

}  // namespace uccl::ep::kernels::intranode
