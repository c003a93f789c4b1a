// Diagnostic build only (CMake -DUCCL_EP_WAIT_PROFILE=ON): how long warps spend in each kind
// of wait, and how long each warp role runs, summed over warps, so a benchmark can tell a
// copy-bound role (little waiting) from a starved one. Off by default: then RoleTimer is empty
// and timed_wait's hook is compiled out (the kernels' PTX is the same as without this file).
//
// Row copy timers split a role's run time further: the time its warps spent issuing row copies
// (the warp_copy_v4 of one token's row) and how many rows they copied, per copy kind, so a
// benchmark can tell whether a role's rows copy slower or its time goes elsewhere.
//
// A block timeline rides along: per block (the first kProfiledBlocks), the roles its warps had,
// its SM, the earliest warp start and the latest warp end since the last reset. Read after a
// single launch, it shows which blocks finish late and where they ran.
//
// The counters are per translation unit (`static __device__`): each kernel launcher's .cu
// file reads its own copy (read_wait_profile in launch_dispatch.cu / launch_combine.cu).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "common/cuda_check.h"
#include "device/ptx.cuh"

namespace uccl::ep::device {

/// Warp roles whose run time is summed (index into the role counters).
enum class WarpRole : int { kSend = 0, kSelf = 1, kRecv = 2, kPublish = 3, kCount = 4 };
/// Row copies that are timed: a dispatch row into a peer's ring slot, into an own output row,
/// and out of a ring slot into an output row.
enum class CopyKind : int { kPush = 0, kSelf = 1, kDrain = 2, kCount = 3 };

/// Counters: wait nanoseconds per WaitSite value [0, kWaitSites), then role nanoseconds, then
/// per CopyKind {row copy nanoseconds, rows}.
constexpr int kWaitSites = 16;
constexpr int kRoleCounters = kWaitSites;
constexpr int kCopyCounters = kRoleCounters + static_cast<int>(WarpRole::kCount);
constexpr int kProfileCounters = kCopyCounters + 2 * static_cast<int>(CopyKind::kCount);
/// Block timeline after the counters: per block, {role bit mask, SM id, first warp start ns,
/// last warp end ns} (start is ~0 and the rest 0 for a block that did not run).
constexpr int kProfiledBlocks = 64;
constexpr int kBlockFields = 4;
constexpr int kProfileValues = kProfileCounters + kProfiledBlocks * kBlockFields;

#ifdef UCCL_EP_WAIT_PROFILE
static __device__ unsigned long long g_wait_profile[kProfileValues];

/// Adds `ns` to counter `index` (lane 0 of the calling warp only).
__device__ __forceinline__ void profile_add(int index, uint64_t ns) {
  if ((threadIdx.x & 31) == 0)
    atomicAdd(&g_wait_profile[index], static_cast<unsigned long long>(ns));
}

/// Sums the lifetime of one warp in `role` (construct at the role's start; counts to its end).
struct RoleTimer {
  WarpRole role;
  uint64_t start;
  __device__ explicit RoleTimer(WarpRole r) : role(r), start(global_timer_ns()) {}
  __device__ ~RoleTimer() {
    const uint64_t end = global_timer_ns();
    profile_add(kRoleCounters + static_cast<int>(role), end - start);
    if ((threadIdx.x & 31) == 0 && blockIdx.x < kProfiledBlocks) {
      unsigned long long* b = &g_wait_profile[kProfileCounters + blockIdx.x * kBlockFields];
      uint32_t sm;
      asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
      atomicOr(&b[0], 1ull << static_cast<int>(role));
      b[1] = sm;
      atomicMin(&b[2], static_cast<unsigned long long>(start));
      atomicMax(&b[3], static_cast<unsigned long long>(end));
    }
  }
};

/// Sums the time one warp spends in a row copy of `kind` (construct before it, destroyed after)
/// and counts the row.
struct CopyTimer {
  int index;
  uint64_t start;
  __device__ explicit CopyTimer(CopyKind kind)
      : index(kCopyCounters + 2 * static_cast<int>(kind)), start(global_timer_ns()) {}
  __device__ ~CopyTimer() {
    profile_add(index, global_timer_ns() - start);
    profile_add(index + 1, 1);
  }
};

/// Host: this translation unit's counters (see the file comment); zeroed when `reset`.
static inline std::vector<uint64_t> read_wait_profile(bool reset) {
  std::vector<uint64_t> out(kProfileValues);
  const size_t bytes = out.size() * sizeof(uint64_t);
  UCCL_EP_CUDA_CHECK(cudaMemcpyFromSymbol(out.data(), g_wait_profile, bytes));
  if (reset) {
    std::vector<uint64_t> zero(out.size(), 0);
    for (int b = 0; b < kProfiledBlocks; ++b) zero[kProfileCounters + b * kBlockFields + 2] = ~0ull;
    UCCL_EP_CUDA_CHECK(cudaMemcpyToSymbol(g_wait_profile, zero.data(), bytes));
  }
  return out;
}
#else
struct RoleTimer {
  __device__ explicit RoleTimer(WarpRole) {}
};
struct CopyTimer {
  __device__ explicit CopyTimer(CopyKind) {}
};
/// Host: normal builds count nothing.
static inline std::vector<uint64_t> read_wait_profile(bool) {
  return {};
}
#endif

}  // namespace uccl::ep::device
