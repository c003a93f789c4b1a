// The publisher warp of the dispatch and combine sender blocks.
//
// Copy warps only record their progress in shared memory (a CTA-scope release). This warp
// turns the minimum progress of each group into that ring's tail on the peer with a
// system-scope release, which waits for the stores it covers to land: only this warp waits,
// the copy warps go on copying, and tails move as soon as the data behind them is visible.
#pragma once

#include "device/timed_wait.cuh"
#include "device/warp_copy.cuh"

namespace uccl::ep::kernels::intranode {

/// Lane d < kNumRanks (d != rank, total > 0) releases `tail` (ring (channel, rank) on peer d)
/// as the minimum of the `G` entries of `progress` (group d's warps) rises, until it reaches
/// `total`. Returns early when this rank aborted; reports a timeout when a group makes no
/// progress for the deadline (its copy warps stopped without reaching the end).
template <int kNumRanks, int G>
__device__ __forceinline__ void publish_tails(const device::DeviceDiag& diag,
                                              protocol::WaitSite site, int rank, int channel,
                                              int lane, int32_t* tail, int total,
                                              const volatile int* progress) {
  const bool active = lane < kNumRanks && lane != rank && total > 0;
  int published = 0;
  uint64_t last_change = device::global_timer_ns();
  for (uint32_t iter = 1; __any_sync(0xffffffffu, active && published < total); ++iter) {
    bool moved = false;
    if (active && published < total) {
      const int m = device::min_progress(progress, G);
      if (m > published) {
        device::red_max_release_sys(tail, m);
        published = m;
        moved = true;
      }
    }
    if ((iter & 255u) == 0u) {
      if (device::warp_aborted(diag)) return;
      const uint64_t now = device::global_timer_ns();
      if (moved) last_change = now;
      const bool stuck = active && published < total && now - last_change > diag.timeout_ns;
      if (stuck)
        device::report_timeout(diag, site, lane, channel, total, published, now - last_change);
      if (__any_sync(0xffffffffu, stuck)) return;  // the warp leaves whole
    } else if (moved) {
      last_change = device::global_timer_ns();
    }
  }
}

}  // namespace uccl::ep::kernels::intranode
