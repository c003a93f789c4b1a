// Device helpers shared by the low-latency kernels: the top-k ids in shared memory, the
// sequence number of a call, signals (direct words and proxy slots), and the phase epilogue.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "device/health.cuh"
#include "device/ptx.cuh"
#include "device/timed_wait.cuh"
#include "kernels/low_latency/args.h"
#include "protocol/command.h"
#include "queue/producer.cuh"

namespace uccl::ep::kernels::low_latency {

constexpr uint32_t kFullMask = 0xffffffffu;

/// Copies topk_idx [n, k] into shared memory as int32 (ids outside int32 become -2, never a
/// valid expert). Every thread of the block calls it.
__device__ __forceinline__ void load_topk(const int64_t* topk_idx, int count, int32_t* s_topk) {
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    const int64_t id = topk_idx[i];
    s_topk[i] = id >= -1 && id <= INT32_MAX ? static_cast<int32_t>(id) : -2;
  }
  __syncthreads();
}

/// What the call running on `half` signals and waits for (every block reads the same values:
/// only the last block of a receive phase advances them, after every block read them).
struct CallSequence {
  uint32_t seq;    // direct words: the call's number on its half
  uint32_t calls;  // proxy slots: the call's number among calls of its kind on its half
};
__device__ __forceinline__ CallSequence call_sequence(const Peers& p, int half, int kind) {
  return {device::ld_volatile(&p.state->seq[half]) + 1u,
          device::ld_volatile(&p.state->calls[half][kind]) + 1u};
}

/// Whether row `t` of the shared top-k ids names expert `e` (a token is sent to an expert once,
/// even if its row names the expert twice).
__device__ __forceinline__ bool row_has(const int32_t* s_topk, int t, int num_topk, int e) {
  bool hit = false;
  for (int k = 0; k < num_topk; ++k) hit |= s_topk[t * num_topk + k] == e;
  return hit;
}

/// How a wait for a peer ended.
enum class Wait : uint8_t {
  kArrived,  // the signal reached its value
  kFailed,   // deadline (recorded, the rank aborts) or the rank was already aborted
  kMasked,   // the peer is masked (enable_shrink), or was masked at the deadline: no data
};

/// With masking: spins on `poll` until it holds, `peer` gets masked, the rank aborts, or the
/// deadline passes; then masks `peer` (the call goes on without it) instead of failing.
template <typename Poll>
__device__ __forceinline__ Wait masking_wait(const Peers& p, protocol::WaitSite site, int peer,
                                             int channel, int64_t expected, Poll&& poll) {
  int64_t observed = 0;
  const uint64_t start = device::global_timer_ns();
  for (uint32_t iter = 0;; ++iter) {
    if (poll(observed)) return Wait::kArrived;
    if ((iter & 255u) != 0u) continue;
    if (p.masked(peer)) return Wait::kMasked;
    if (device::aborted(p.diag)) return Wait::kFailed;
    if (device::global_timer_ns() - start > p.diag.timeout_ns) {
      if (atomicExch(p.mask + peer, 1) == 0)
        printf(
            "uccl-ep: rank %d masks rank %d: no signal within the deadline (site %d, channel "
            "%d, expected %lld, observed %lld)\n",
            p.rank, peer, static_cast<int>(site), channel, static_cast<long long>(expected),
            static_cast<long long>(observed));
      return Wait::kMasked;
    }
  }
}

/// Reads a signal with acquire semantics: ld.acquire, or with p.relaxed_signals
/// (UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC) a relaxed load and, once `arrived(value)` holds, a
/// fence.acq_rel.sys, which makes that load an acquire for everything read after it.
template <typename T, typename Arrived>
__device__ __forceinline__ bool poll_signal(const Peers& p, const T* signal, int64_t& observed,
                                            Arrived&& arrived) {
  const T v = p.relaxed_signals ? device::ld_relaxed_sys(signal) : device::ld_acquire_sys(signal);
  observed = v;
  if (!arrived(v)) return false;
  if (p.relaxed_signals) device::fence_acq_rel_sys();
  return true;
}

/// Lane 0: waits for signal index `i` of `half` and `kind`, sent by `peer`: the word in this
/// rank's RDMA buffer to reach cs.seq when the sender writes directly, else the proxy slot to
/// reach cs.calls. Without masking a deadline is recorded and fails the call; with masking
/// (p.mask) it masks the peer. `*waited_ns` gets the time waited.
__device__ __forceinline__ Wait wait_signal(const Peers& p, int half, int kind, int64_t i,
                                            bool direct, CallSequence cs, protocol::WaitSite site,
                                            int peer, int channel, uint64_t* waited_ns) {
  const uint64_t start = device::global_timer_ns();
  const auto* word = reinterpret_cast<const int32_t*>(p.local + p.layout.signal_offset(half)) + i;
  const int64_t* slot = p.signals + p.layout.signal_slot(half, kind, i);
  const int64_t expected = direct ? cs.seq : cs.calls;
  auto poll = [&](int64_t& observed) {
    if (direct) {
      return poll_signal(p, word, observed, [&](int32_t v) {
        return static_cast<int32_t>(static_cast<uint32_t>(v) - cs.seq) >= 0;
      });
    }
    return poll_signal(p, slot, observed,
                       [&](int64_t v) { return v >= static_cast<int64_t>(cs.calls); });
  };
  Wait result;
  if (p.masked(peer))
    result = Wait::kMasked;
  else if (p.mask != nullptr)
    result = masking_wait(p, site, peer, channel, expected, poll);
  else
    result = device::timed_wait(p.diag, site, peer, channel, expected, poll) ? Wait::kArrived
                                                                             : Wait::kFailed;
  *waited_ns = device::global_timer_ns() - start;
  return result;
}

/// All lanes: makes the warp's earlier stores visible system-wide, then lane 0 sets direct
/// signal word `i` of `half` in `buffer` (a peer's or this rank's RDMA buffer) to `seq`: with
/// st.release, or with p.relaxed_signals (UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC) a fence.acq_rel.sys
/// and a relaxed store, the same release of everything the warp wrote before the __syncwarp.
__device__ __forceinline__ void signal_direct(const Peers& p, uint8_t* buffer, int half, int64_t i,
                                              uint32_t seq, int lane) {
  __threadfence_system();
  __syncwarp();
  if (lane == 0) {
    auto* word = reinterpret_cast<int32_t*>(buffer + p.layout.signal_offset(half)) + i;
    if (p.relaxed_signals) {
      device::fence_acq_rel_sys();
      device::st_relaxed_sys(word, static_cast<int32_t>(seq));
    } else {
      device::st_release_sys(word, static_cast<int32_t>(seq));
    }
  }
}

/// Lane 0 pushes `command` into the queue of `item`; all lanes make their stores visible first.
__device__ __forceinline__ void push_command(const Peers& p, int item,
                                             const protocol::Command& command, int lane) {
  __threadfence_system();
  __syncwarp();
  if (lane == 0) queue::push(p.queues[item % p.num_queues], command, p.diag);
}

/// End of a receive phase (all threads): the last block to finish records that the call on
/// `half` completed, so the next call on it gets the next numbers.
__device__ __forceinline__ void finish_receive(const Peers& p, int half, int kind,
                                               CallSequence cs) {
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    if (atomicAdd(&p.state->done[half], 1u) == gridDim.x - 1) {
      p.state->done[half] = 0;
      p.state->seq[half] = cs.seq;
      p.state->calls[half][kind] = cs.calls;
      __threadfence();
    }
  }
}

/// Loads what a peer or a transport wrote into this rank's RDMA buffer, after its signal was
/// read: at system scope from host memory (CPU writes; no cached line may serve an older
/// copy), cached in L2 only from device memory.
__device__ __forceinline__ int4 load_received(const Peers& p, const int4* src) {
  return p.local_in_host_memory ? device::ld_relaxed_sys_v4(src) : device::ld_v4(src);
}
__device__ __forceinline__ int32_t load_received(const Peers& p, const int32_t* src) {
  return p.local_in_host_memory ? device::ld_relaxed_sys(src) : device::ld_cg(src);
}
__device__ __forceinline__ float load_received(const Peers& p, const float* src) {
  return __int_as_float(load_received(p, reinterpret_cast<const int32_t*>(src)));
}

/// Eight bf16 (one int4) as floats.
__device__ __forceinline__ void unpack_bf16x8(const int4& v, float (&f)[8]) {
  const auto* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 x = __bfloat1622float2(h[j]);
    f[2 * j] = x.x;
    f[2 * j + 1] = x.y;
  }
}

__device__ __forceinline__ int4 pack_bf16x8(const float (&f)[8]) {
  int4 out;
  auto* h = reinterpret_cast<__nv_bfloat162*>(&out);
#pragma unroll
  for (int j = 0; j < 4; ++j) h[j] = __floats2bfloat162_rn(f[2 * j], f[2 * j + 1]);
  return out;
}

}  // namespace uccl::ep::kernels::low_latency
