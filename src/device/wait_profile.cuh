// Diagnostic build only (CMake -DUCCL_EP_WAIT_PROFILE=ON): how long warps spend in each kind
// of wait, and how long each warp role runs, summed over warps, so a benchmark can tell a
// copy-bound role (little waiting) from a starved one. Off by default: then RoleTimer is empty
// and timed_wait's hook is compiled out (the kernels' PTX is the same as without this file).
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
/// Counters: wait nanoseconds per WaitSite value [0, kWaitSites), then role nanoseconds.
constexpr int kWaitSites = 16;
constexpr int kProfileCounters = kWaitSites + static_cast<int>(WarpRole::kCount);
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
    profile_add(kWaitSites + static_cast<int>(role), end - start);
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
/// Host: normal builds count nothing.
static inline std::vector<uint64_t> read_wait_profile(bool) {
  return {};
}
#endif

}  // namespace uccl::ep::device
