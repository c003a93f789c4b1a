// How the warps of the dispatch and combine blocks split into per-rank groups.
#pragma once

#include "kernels/intranode/args.h"

namespace uccl::ep::kernels::intranode {

/// Dispatch. The sender block has kSelfSend warps copying this rank's own tokens straight
/// into its outputs, one group of kGroupSend warps per other rank (pushing to that rank's ring)
/// and, last, one publisher warp (kPublisherWarp) that releases the ring tails, so that no copy
/// warp waits for its stores to land; the receiver block has kSelfRecv more self warps and one
/// group of kGroupRecv warps per other rank (draining its ring). The self copies are numbered
/// over both blocks' self warps. Where the self copies go is a measured choice per rank count
/// (docs/intranode.md, "Measurements behind the code's choices"): both blocks at EP 2 and 8, the
/// sender block only at EP 4.
template <int kNumRanks>
struct DispatchWarpSplit {
  static_assert(kNumRanks >= 2 && kNumRanks <= kNumWarps, "unsupported rank count");
  static constexpr bool kSplitSelf = kNumRanks == 2 || kNumRanks > 4;
  static constexpr int kGroupSend = kNumRanks == 2 ? 16
                                    : kSplitSelf   ? (kNumWarps - 3) / (kNumRanks - 1)
                                                   : kNumWarps / kNumRanks;
  static constexpr int kPublisherWarp = kNumWarps - 1;
  static constexpr int kSelfSend = kPublisherWarp - (kNumRanks - 1) * kGroupSend;
  static constexpr int kGroupRecv = kNumRanks == 2 ? 16
                                    : kSplitSelf   ? kGroupSend
                                                   : kNumWarps / (kNumRanks - 1);
  static constexpr int kSelfRecv = kSplitSelf ? kNumWarps - (kNumRanks - 1) * kGroupRecv : 0;
  static constexpr int kMaxGroup = kGroupSend > kGroupRecv ? kGroupSend : kGroupRecv;
  // kSelfSend may be 0 (all of the sender block pushes): then the receiver block's first self
  // warp records send_head (self warp 0 of the numbering).
  static_assert(kSelfSend >= 0 && kSelfSend + kSelfRecv >= 1 && kGroupSend >= 1 && kGroupRecv >= 1,
                "empty warp group");
  static_assert(kSelfRecv + (kNumRanks - 1) * kGroupRecv <= kNumWarps, "too many warps");
};

/// Combine sender block: one group of kSendGroup warps per other rank (a rank's own rows are
/// read from x by its receiver block); warps beyond the groups idle. The combine keeps the
/// tail releases in its copy warps: a publisher warp as in dispatch measured slower there
/// (docs/intranode.md, "Measurements behind the code's choices").
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
