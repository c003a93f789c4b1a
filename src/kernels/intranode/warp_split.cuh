// How the warps of the dispatch and combine blocks split into per-rank groups.
#pragma once

#include "kernels/intranode/args.h"

namespace uccl::ep::kernels::intranode {

/// Dispatch. Both blocks of a channel have one group of kGroup warps per other rank (sender:
/// pushes to that rank's ring; receiver: drains the ring of that rank) and kSelfWarps warps
/// that copy this rank's own tokens straight into its outputs; the self copies are split over
/// the two blocks (2 * kSelfWarps warps in all) because a block's copy throughput is bounded by
/// its warps' memory latency, and a sender block alone would copy twice what its receiver
/// copies.
template <int kNumRanks>
struct DispatchWarpSplit {
  static_assert(kNumRanks >= 2 && kNumRanks <= kNumWarps, "unsupported rank count");
  static constexpr int kGroup = kNumRanks == 2 ? 16 : (kNumWarps - 3) / (kNumRanks - 1);
  static constexpr int kSelfWarps = kNumWarps - (kNumRanks - 1) * kGroup;
  static_assert(kSelfWarps >= 1 && kGroup >= 1, "empty warp group");
};

/// Combine sender block: one group of kSendGroup warps per other rank (a rank's own rows are
/// read from x by its receiver block); warps beyond the groups idle.
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
