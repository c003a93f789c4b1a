// Warp-cooperative copies and the small synchronisation helpers the ring protocols share.
#pragma once

#include <cstdint>

#include "device/ptx.cuh"

namespace uccl::ep::device {

/// Copies `n` 16-byte words from `src` to `dst` with the whole warp, `kUnroll` words in flight
/// per lane: every round issues all its loads before its stores, the last round included (a
/// word-at-a-time tail would cost one memory round trip per word). `kReadOnlySrc` selects the
/// non-coherent load path: only for data nobody writes while the kernel runs (user inputs),
/// never for ring slots.
template <int kUnroll, bool kReadOnlySrc>
__device__ __forceinline__ void warp_copy_v4(int4* dst, const int4* src, int n, int lane) {
  for (int i = lane; i < n; i += kUnroll * kWarpSize) {
    int4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (i + u * kWarpSize < n)
        v[u] = kReadOnlySrc ? ld_nc_v4(src + i + u * kWarpSize) : ld_v4(src + i + u * kWarpSize);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (i + u * kWarpSize < n) st_na_v4(dst + i + u * kWarpSize, v[u]);
  }
}

/// Sequentially consistent fence among the threads of a block (orders a shared-memory store
/// before later shared-memory loads of other warps' entries).
__device__ __forceinline__ void fence_sc_cta() {
  asm volatile("fence.sc.cta;" ::: "memory");
}

/// Raises `*counter` to at least `value` with release semantics at system scope.
__device__ __forceinline__ void red_max_release_sys(int32_t* counter, int32_t value) {
  asm volatile("red.release.sys.global.max.s32 [%0], %1;" ::"l"(counter), "r"(value) : "memory");
}

/// Records that this warp finished everything below `value` (release at CTA scope: the warp's
/// earlier stores, after a __syncwarp(), before the entry). One lane.
__device__ __forceinline__ void record_progress(volatile int* progress, int my_index, int value) {
  __threadfence_block();
  progress[my_index] = value;
}

/// Minimum of `num_warps` progress entries, read with acquire at CTA scope: a system-scope
/// release by the caller afterwards covers the stores those warps made before their entries.
__device__ __forceinline__ int min_progress(const volatile int* progress, int num_warps) {
  int m = progress[0];
  for (int w = 1; w < num_warps; ++w) m = min(m, progress[w]);
  __threadfence_block();
  return m;
}

/// Publishes that this warp finished everything below `value` and returns the minimum over the
/// `num_warps` entries of `progress` (the position below which every warp is done).
/// Call from one lane after a __syncwarp() that follows the warp's data stores. The entry is
/// written with release and the others read with acquire (CTA scope), so a system-scope
/// release by the caller afterwards (publishing the minimum) covers every warp's stores below
/// it: release/acquire chains are cumulative in the PTX memory model.
__device__ __forceinline__ int publish_progress(volatile int* progress, int my_index, int value,
                                                int num_warps) {
  __threadfence_block();  // release: this warp's earlier stores before its entry
  progress[my_index] = value;
  fence_sc_cta();  // the entry before reading the others' (at least one warp sees all)
  int m = value;
  for (int w = 0; w < num_warps; ++w) m = min(m, progress[w]);
  __threadfence_block();  // acquire: the entries read before what the caller publishes
  return m;
}

}  // namespace uccl::ep::device
