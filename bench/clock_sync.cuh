// GPU/host clock correlation for the command-path benchmarks (push-to-execution latency: a GPU
// globaltimer stamp compared with the host clock of the thread that executes the command).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <utility>
#include <vector>

#include "common/cuda_check.h"
#include "common/error.h"
#include "device/ptx.cuh"

namespace uccl::ep::bench {

/// Answers `rounds` host pings: waits for words[0] >= k, then writes its globaltimer to
/// words[1] and k to words[2]. Gives up after `timeout_ns` without a ping.
__global__ void clock_ping_kernel(uint64_t* words, uint32_t rounds, uint64_t timeout_ns) {
  volatile uint64_t* ping = words;
  volatile uint64_t* stamp = words + 1;
  volatile uint64_t* pong = words + 2;
  for (uint32_t k = 1; k <= rounds; ++k) {
    const uint64_t start = device::global_timer_ns();
    while (*ping < k)
      if (device::global_timer_ns() - start > timeout_ns) return;
    *stamp = device::global_timer_ns();
    __threadfence_system();
    *pong = k;
  }
}

struct ClockSync {
  uint64_t offset_ns = 0;  // GPU globaltimer - host clock (mod 2^64)
  uint64_t rtt_ns = 0;     // fastest ping round trip: the offset is known to +- rtt / 2
};

/// Correlates the GPU's globaltimer with `host_now` (nanoseconds). Each ping gives the GPU
/// stamp minus the midpoint of the host's send and receive times; one sample's error is at most
/// half its round trip, and which sample is the fastest changes from run to run, so the
/// estimate is the median over the samples within 10 % (at least 100 ns) of the fastest round
/// trip (on H200 those agree within ~50 ns; estimates of separate calibrations still differ by
/// up to about a microsecond).
template <typename HostNow>
ClockSync calibrate_clock(cudaStream_t stream, HostNow&& host_now) {
  constexpr uint32_t kRounds = 2000;
  constexpr uint64_t kTimeoutNs = 5000000000ull;
  uint64_t* host = nullptr;
  uint64_t* dev = nullptr;
  UCCL_EP_CUDA_CHECK(
      cudaHostAlloc(reinterpret_cast<void**>(&host), 3 * sizeof(uint64_t), cudaHostAllocMapped));
  std::fill(host, host + 3, 0);
  UCCL_EP_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&dev), host, 0));
  clock_ping_kernel<<<1, 1, 0, stream>>>(dev, kRounds, kTimeoutNs);
  UCCL_EP_CHECK_LAUNCH("clock_ping_kernel");
  auto load = [&](int i) {
    return std::atomic_ref<uint64_t>(host[i]).load(std::memory_order_acquire);
  };
  std::vector<std::pair<uint64_t, uint64_t>> samples;  // (round trip, offset)
  samples.reserve(kRounds);
  for (uint32_t k = 1; k <= kRounds; ++k) {
    const uint64_t t0 = host_now();
    std::atomic_ref<uint64_t>(host[0]).store(k, std::memory_order_release);
    while (load(2) < k) {
      if (host_now() - t0 > kTimeoutNs) {
        cudaStreamSynchronize(stream);
        cudaFreeHost(host);
        UCCL_EP_CHECK_RUNTIME(false, "clock calibration: no answer from the GPU to ping ", k);
      }
    }
    const uint64_t t1 = host_now();
    samples.emplace_back(t1 - t0, load(1) - (t0 + t1) / 2);
  }
  UCCL_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
  cudaFreeHost(host);
  std::sort(samples.begin(), samples.end());
  const uint64_t fastest = samples.front().first;
  const uint64_t cutoff = fastest + std::max<uint64_t>(100, fastest / 10);
  std::vector<int64_t> offsets;  // relative to the fastest sample's (the offset is mod 2^64)
  for (const auto& [rtt, off] : samples)
    if (rtt <= cutoff) offsets.push_back(static_cast<int64_t>(off - samples.front().second));
  std::nth_element(offsets.begin(), offsets.begin() + offsets.size() / 2, offsets.end());
  return {samples.front().second + static_cast<uint64_t>(offsets[offsets.size() / 2]), fastest};
}

}  // namespace uccl::ep::bench
