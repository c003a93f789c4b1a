// What the copy benchmarks share: the row size, the warp copy kernel and a CUDA-event timer.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cuda_exit_check.h"
#include "device/ptx.cuh"

namespace uccl::ep::bench {

using uccl::ep::device::ld_nc_v4;
using uccl::ep::device::st_na_v4;

constexpr int kRowBytes = 14336;

/// Rows warp, warp + num_warps, ... of `src` to `dst` by one warp; kUnroll words in flight per
/// lane; a system fence every `fence_rows` rows (0: never). Rows start every `src_pitch` /
/// `dst_pitch` bytes.
template <int kUnroll>
__device__ __forceinline__ void copy_rows(const uint8_t* src, uint8_t* dst, int num_rows, int warp,
                                          int num_warps, int fence_rows, int64_t src_pitch,
                                          int64_t dst_pitch) {
  const int lane = threadIdx.x % 32;
  constexpr int kWords = kRowBytes / 16;
  int done = 0;
  for (int row = warp; row < num_rows; row += num_warps) {
    const int4* s = reinterpret_cast<const int4*>(src + row * src_pitch);
    int4* d = reinterpret_cast<int4*>(dst + row * dst_pitch);
    for (int i = lane; i < kWords; i += 32 * kUnroll) {
      int4 v[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (i + 32 * u < kWords) v[u] = ld_nc_v4(s + i + 32 * u);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (i + 32 * u < kWords) st_na_v4(d + i + 32 * u, v[u]);
    }
    if (fence_rows > 0 && ++done % fence_rows == 0) __threadfence_system();
  }
}

/// Every warp of the grid copies its rows (copy_rows); rows packed unless pitches are given.
template <int kUnroll>
__global__ void __launch_bounds__(768, 1)
    warp_copy_kernel(const uint8_t* src, uint8_t* dst, int num_rows, int fence_rows,
                     int64_t src_pitch = kRowBytes, int64_t dst_pitch = kRowBytes) {
  copy_rows<kUnroll>(src, dst, num_rows, blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32,
                     gridDim.x * (blockDim.x / 32), fence_rows, src_pitch, dst_pitch);
}

/// Milliseconds of one `launch()` (median of 5 after a warm-up), on the current device.
template <typename Launch>
float time_median(Launch&& launch) {
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  launch();
  CHECK_CUDA(cudaGetLastError());
  CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<float> ms;
  for (int i = 0; i < 5; ++i) {
    CHECK_CUDA(cudaEventRecord(a));
    launch();
    CHECK_CUDA(cudaEventRecord(b));
    CHECK_CUDA(cudaEventSynchronize(b));
    float t = 0;
    CHECK_CUDA(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace uccl::ep::bench
