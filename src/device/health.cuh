// Device side of a rank's health: the abort flag, the first error's record, and the poison
// every kernel writes into its outputs when it finishes on an aborted rank.
//
// Rules: (1) only report_error raises the abort flag, after filling the host-visible record,
// so the host always learns why; (2) every kernel ends with poison_if_aborted: a block that
// finds the flag raised after its own last output write fills every output of the launch, so
// the last write to each output byte of an aborted launch is poison (a block still writing
// valid rows after another block poisoned them sees the flag at its own end and poisons
// again).
#pragma once

#include <cstdint>
#include <cstdio>

#include "device/diag.h"
#include "device/ptx.cuh"

namespace uccl::ep::device {

__device__ __forceinline__ bool aborted(const DeviceDiag& d) {
  return ld_volatile(d.abort_flag) != 0;
}

/// The abort flag as one value for the whole warp (all 32 lanes, converged). Code that leaves on
/// it must not split a warp: lanes that left would miss the warp's later shuffles and barriers.
__device__ __forceinline__ bool warp_aborted(const DeviceDiag& d) {
  return __any_sync(0xffffffffu, aborted(d));
}

/// The abort flag as one value for the whole block (every thread calls it): the flag may be
/// raised between two warps' reads, and a block whose warps take different ways around a
/// __syncthreads or a named barrier hangs or faults.
__device__ __forceinline__ bool block_aborted(const DeviceDiag& d) {
  __shared__ int s_flag;
  __syncthreads();  // every reader of the previous value is past it
  if (threadIdx.x == 0) s_flag = aborted(d) ? 1 : 0;
  __syncthreads();
  return s_flag != 0;
}

/// Records the first failure of this rank and raises its abort flag; later calls only return.
/// Fields a site does not use are -1 (see protocol::HostErrorRecord).
static __device__ __noinline__ void report_error(DeviceDiag d, protocol::WaitSite site, int peer,
                                                 int channel, int queue, int row, int col,
                                                 int64_t expected, int64_t observed,
                                                 uint64_t waited_ns) {
  if (atomicCAS(d.abort_flag, 0u, 1u) != 0u) return;
  volatile protocol::HostErrorRecord* r = d.host_error;
  r->site = static_cast<int32_t>(site);
  r->rank = d.rank;
  r->peer = peer;
  r->channel = channel;
  r->queue = queue;
  r->row = row;
  r->col = col;
  r->expected = expected;
  r->observed = observed;
  r->waited_ns = waited_ns;
  __threadfence_system();
  r->flag = 1;
  __threadfence_system();
  printf(
      "[uccl-ep] rank %d: error at site %d (peer %d, channel %d, queue %d) after %llu ms: "
      "expected %lld, observed %lld\n",
      d.rank, static_cast<int>(site), peer, channel, queue,
      static_cast<unsigned long long>(waited_ns / 1000000), static_cast<long long>(expected),
      static_cast<long long>(observed));
}

/// A spin-wait of (peer, channel) that passed its deadline. The command queue sites name a
/// queue in place of the channel.
__device__ __forceinline__ void report_timeout(const DeviceDiag& d, protocol::WaitSite site,
                                               int peer, int channel, int64_t expected,
                                               int64_t observed, uint64_t waited_ns) {
  const bool queue = site == protocol::WaitSite::kQueueFull ||
                     site == protocol::WaitSite::kQueueFence ||
                     site == protocol::WaitSite::kQueueBarrier;
  report_error(d, site, peer, queue ? -1 : channel, queue ? channel : -1, -1, -1, expected,
               observed, waited_ns);
}

/// Fills `bytes` bytes at `data` with `fill`, by the threads of one block.
__device__ __forceinline__ void fill_bytes(void* data, int64_t bytes, uint8_t fill) {
  auto* p = static_cast<uint8_t*>(data);
  const auto addr = reinterpret_cast<uintptr_t>(p);
  const uint32_t word = fill * 0x01010101u;
  if (addr % 16 == 0 && bytes % 16 == 0) {
    auto* q = reinterpret_cast<uint4*>(p);
    for (int64_t i = threadIdx.x; i < bytes / 16; i += blockDim.x) q[i] = {word, word, word, word};
  } else if (addr % 4 == 0 && bytes % 4 == 0) {
    auto* q = reinterpret_cast<uint32_t*>(p);
    for (int64_t i = threadIdx.x; i < bytes / 4; i += blockDim.x) q[i] = word;
  } else {
    for (int64_t i = threadIdx.x; i < bytes; i += blockDim.x) p[i] = fill;
  }
}

/// The epilogue of every kernel (all threads of the block): when the rank is aborted, this block
/// fills every output of `outputs` (see the rules at the top of this file).
__device__ __forceinline__ void poison_if_aborted(const OutputList& outputs, const DeviceDiag& d) {
  __threadfence();  // this block's output writes come before the flag read below
  if (!block_aborted(d)) return;
  for (int i = 0; i < outputs.count; ++i)
    fill_bytes(outputs.spans[i].data, outputs.spans[i].bytes, outputs.spans[i].fill);
}

}  // namespace uccl::ep::device
