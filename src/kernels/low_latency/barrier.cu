// The clean barrier of the low-latency mode (clean_low_latency_buffer runs one before and one
// after zeroing the signals). It knows the rank mask: a masked peer is neither announced to nor
// waited for, so a dead, masked rank does not hold the clean up.
//
// Every rank keeps a barrier epoch (BarrierState). A barrier's target is epoch + 1: the rank
// announces it to every unmasked peer through the proxies (one ATOMIC_ADD into the peer's
// barrier slot of this rank, of the target minus what it announced to that peer before, so the
// slot then holds the target) and waits until the barrier slot of every unmasked peer here holds
// at least its target. A peer's earlier announcements are below the target, so an arrival is
// this barrier's. This rank needs no announcement of its own (the proxies refuse commands to
// self).
//
// Epochs rather than counts keep ranks in step across masking: a rank the others masked missed
// their barriers (they did not announce to it) and comes back with a lower epoch. Its waits end
// at the others' higher announcements; every rank leaves at the largest epoch it saw and
// announces that, which ends the waits of the ranks ahead. With enable_shrink, a peer masked
// during the wait gets its announcement withdrawn (an ATOMIC_ADD of the difference back), so that
// a rank that never arrived does not later take it for an arrival; a slot lowered under a peer
// that had seen it only makes that peer's next wait last until a fresh announcement.
#include "common/cuda_check.h"
#include "kernels/low_latency/common.cuh"

namespace uccl::ep::kernels::low_latency {
namespace {

/// Peers per thread of the barrier's block: thread x handles peers x + j * kThreads.
constexpr int kBarrierPeersPerThread = (protocol::kMaxPeers + kThreads - 1) / kThreads;
static_assert(kBarrierPeersPerThread * kThreads >= static_cast<int>(protocol::kMaxPeers),
              "the barrier's block covers every rank a command can name");

/// Makes `peer`'s barrier slot of this rank hold `epoch` (one ATOMIC_ADD through the proxies).
/// False when the push stopped (deadline or proxy error: recorded, the rank aborts).
__device__ __forceinline__ bool announce(const BarrierArgs& a, int peer, int64_t epoch) {
  const Peers& p = a.p;
  int64_t* announced = a.state.announced(peer);
  const auto delta = static_cast<int32_t>(epoch - *announced);
  if (delta == 0) return true;
  const auto slot = static_cast<uint32_t>(p.layout.barrier_slot(p.rank));
  const protocol::Command add =
      protocol::encode_atomic_add(static_cast<uint32_t>(peer), slot, delta);
  if (!queue::push(p.queues[peer % p.num_queues], add, p.diag)) return false;
  *announced = epoch;
  return true;
}

/// Waits until `peer` announced at least `target`; `*observed` gets the slot's last value.
/// Without a mask a deadline fails the call (recorded); with one it masks the peer.
__device__ __forceinline__ Wait wait_arrival(const Peers& p, int peer, int64_t target,
                                             int64_t* observed) {
  constexpr auto kSite = protocol::WaitSite::kLowLatencyBarrier;
  const int64_t* slot = p.signals + p.layout.barrier_slot(peer);
  auto poll = [&](int64_t& value) {
    const bool arrived = poll_signal(p, slot, value, [&](int64_t v) { return v >= target; });
    *observed = value;
    return arrived;
  };
  if (p.masked(peer)) return Wait::kMasked;
  if (p.mask != nullptr) return masking_wait(p, kSite, peer, -1, target, poll);
  return device::timed_wait(p.diag, kSite, peer, -1, target, poll) ? Wait::kArrived : Wait::kFailed;
}

__global__ void __launch_bounds__(kThreads, 1) barrier_kernel(const BarrierArgs a) {
  const Peers& p = a.p;
  __shared__ unsigned long long s_epoch;  // the largest epoch seen (atomicMax)
  __shared__ bool s_aborted;
  const int64_t target = *a.state.epoch() + 1;
  if (threadIdx.x == 0) {
    s_epoch = static_cast<unsigned long long>(target);
    s_aborted = device::aborted(p.diag);
  }
  __syncthreads();
  if (s_aborted) return;
  // Announce first, to every peer, so that no wait holds up an announcement.
  bool waiting[kBarrierPeersPerThread];
  int64_t before[kBarrierPeersPerThread];  // what the peer had been announced: the withdrawal
#pragma unroll
  for (int j = 0; j < kBarrierPeersPerThread; ++j) {
    const int peer = static_cast<int>(threadIdx.x) + j * kThreads;
    waiting[j] = false;
    before[j] = 0;
    if (peer >= p.num_ranks || peer == p.rank || p.masked(peer)) continue;
    before[j] = *a.state.announced(peer);
    waiting[j] = announce(a, peer, target);
  }
  int64_t seen = target;
  for (int j = 0; j < kBarrierPeersPerThread; ++j) {
    if (!waiting[j]) continue;
    const int peer = static_cast<int>(threadIdx.x) + j * kThreads;
    int64_t observed = 0;
    const Wait w = wait_arrival(p, peer, target, &observed);
    if (w == Wait::kArrived) {
      seen = observed > seen ? observed : seen;
      continue;
    }
    waiting[j] = false;
    if (w == Wait::kMasked) announce(a, peer, before[j]);
  }
  atomicMax(&s_epoch, static_cast<unsigned long long>(seen));
  __syncthreads();
  // Leave at the largest epoch seen; the peers that arrived hear of it.
  const auto epoch = static_cast<int64_t>(s_epoch);
  if (epoch > target) {
    for (int j = 0; j < kBarrierPeersPerThread; ++j) {
      const int peer = static_cast<int>(threadIdx.x) + j * kThreads;
      if (waiting[j] && !p.masked(peer)) announce(a, peer, epoch);
    }
  }
  if (threadIdx.x == 0) *a.state.epoch() = epoch;
}

}  // namespace

void preload_barrier() {
  cudaFuncAttributes attr;
  UCCL_EP_CUDA_CHECK(cudaFuncGetAttributes(&attr, barrier_kernel));
}

void launch_barrier(const BarrierArgs& a, cudaStream_t stream) {
  barrier_kernel<<<1, kThreads, 0, stream>>>(a);
  UCCL_EP_CHECK_LAUNCH("low_latency_barrier_kernel");
}

}  // namespace uccl::ep::kernels::low_latency
