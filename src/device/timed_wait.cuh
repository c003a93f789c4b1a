// Spin-waits with a deadline: every wait names what it waited for, and the first timeout of a
// rank is recorded (host-visible, device/health.cuh) and stops every other wait of that rank.
#pragma once

#include <cstdint>
#include <cstdio>

#include "device/diag.h"
#include "device/health.cuh"
#include "device/ptx.cuh"
#include "device/wait_profile.cuh"
#include "protocol/diag.h"

namespace uccl::ep::device {

/// Spins until `poll(observed)` returns true. Returns false if the deadline passed (the timeout
/// is recorded) or another wait of this rank already timed out.
template <typename Poll>
__device__ __forceinline__ bool timed_wait(const DeviceDiag& d, protocol::WaitSite site, int peer,
                                           int channel, int64_t expected, Poll&& poll) {
  int64_t observed = 0;
  if (poll(observed)) return true;
  const uint64_t start = global_timer_ns();
  for (uint32_t iter = 1;; ++iter) {
    if (poll(observed)) {
#ifdef UCCL_EP_WAIT_PROFILE
      profile_add(static_cast<int>(site), global_timer_ns() - start);
#endif
      return true;
    }
    if ((iter & 255u) == 0u) {
      if (aborted(d)) return false;
      const uint64_t waited = global_timer_ns() - start;
      if (waited > d.timeout_ns) {
        report_timeout(d, site, peer, channel, expected, observed, waited);
        return false;
      }
    }
  }
}

/// A sending warp's wait for room in a peer's ring: unless the warp already failed (`ok` false)
/// or `cached_head` already reaches `needed`, lane 0 polls the ring head `*head` (system scope)
/// until it does; then every lane holds the same `ok` and `cached_head`. Call from all 32 lanes.
__device__ __forceinline__ void warp_wait_ring_head(const DeviceDiag& d, protocol::WaitSite site,
                                                    int peer, int channel, const int32_t* head,
                                                    int needed, int lane, int& cached_head,
                                                    bool& ok) {
  if (!ok || cached_head >= needed) return;
  if (lane == 0) {
    ok = timed_wait(d, site, peer, channel, needed, [&](int64_t& observed) {
      cached_head = ld_relaxed_sys(head);
      observed = cached_head;
      return cached_head >= needed;
    });
  }
  ok = __shfl_sync(0xffffffffu, ok, 0);
  cached_head = __shfl_sync(0xffffffffu, cached_head, 0);
}

}  // namespace uccl::ep::device
