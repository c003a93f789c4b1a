// GPU/host clock correlation for the command-path benchmarks (push-to-execution latency: a GPU
// globaltimer stamp compared with the host clock of the thread that executes the command).
//
// A ping: the host stores k into mapped host memory; the GPU, polling it, stores its
// globaltimer as the answer (one 8-byte store, no fence, so the way back is one posted PCIe
// write like the way out's read reply). Offset = GPU stamp - midpoint of the host's send and
// receive times; one sample's error is at most half its round trip. The estimate is the median
// over the samples within 10 % (at least 100 ns) of the fastest round trip. The two clocks
// drift apart by 0.3 to 14 microseconds per second on H200 hosts (measured), so a benchmark
// calibrates before and after each run and interpolates (ClockModel).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <utility>
#include <vector>

#include "common/cuda_check.h"
#include "common/error.h"
#include "common/testing/cuda_buffers.h"
#include "common/testing/latency_stamps.h"
#include "device/ptx.cuh"

namespace uccl::ep::bench {

/// Answers `rounds` host pings: waits for words[0] >= k, then stores its globaltimer to
/// words[1]. Gives up after `timeout_ns` without a ping.
__global__ void clock_ping_kernel(uint64_t* words, uint32_t rounds, uint64_t timeout_ns) {
  volatile uint64_t* ping = words;
  volatile uint64_t* stamp = words + 1;
  for (uint32_t k = 1; k <= rounds; ++k) {
    const uint64_t start = device::global_timer_ns();
    while (*ping < k)
      if (device::global_timer_ns() - start > timeout_ns) return;
    *stamp = device::global_timer_ns();
  }
}

struct ClockSync {
  uint64_t offset_ns = 0;  // GPU globaltimer - host clock (mod 2^64)
  uint64_t rtt_ns = 0;     // fastest ping round trip: the offset is known to +- rtt / 2
  uint64_t host_ns = 0;    // host time of the fastest ping (when the offset held)
};

/// Correlates the GPU's globaltimer with `host_now` (nanoseconds); see the file comment.
template <typename HostNow>
ClockSync calibrate_clock(cudaStream_t stream, HostNow&& host_now) {
  constexpr uint32_t kRounds = 2000;
  constexpr uint64_t kTimeoutNs = 5000000000ull;
  testing::Mapped<uint64_t> words(2);
  clock_ping_kernel<<<1, 1, 0, stream>>>(words.dev, kRounds, kTimeoutNs);
  UCCL_EP_CHECK_LAUNCH("clock_ping_kernel");
  std::atomic_ref<uint64_t> ping(words.host[0]), answer(words.host[1]);
  struct Sample {
    uint64_t rtt, offset, host;
  };
  std::vector<Sample> samples;
  samples.reserve(kRounds);
  uint64_t last = 0;
  for (uint32_t k = 1; k <= kRounds; ++k) {
    const uint64_t t0 = host_now();
    ping.store(k, std::memory_order_release);
    uint64_t stamp = 0;
    while ((stamp = answer.load(std::memory_order_acquire)) == last) {
      if (host_now() - t0 > kTimeoutNs) {
        cudaStreamSynchronize(stream);
        UCCL_EP_CHECK_RUNTIME(false, "clock calibration: no answer from the GPU to ping ", k);
      }
    }
    last = stamp;
    const uint64_t t1 = host_now();
    samples.push_back({t1 - t0, stamp - (t0 + t1) / 2, (t0 + t1) / 2});
  }
  UCCL_EP_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::sort(samples.begin(), samples.end(),
            [](const Sample& a, const Sample& b) { return a.rtt < b.rtt; });
  const Sample& fastest = samples.front();
  const uint64_t cutoff = fastest.rtt + std::max<uint64_t>(100, fastest.rtt / 10);
  std::vector<int64_t> offsets;  // relative to the fastest sample's (the offset is mod 2^64)
  for (const Sample& s : samples)
    if (s.rtt <= cutoff) offsets.push_back(static_cast<int64_t>(s.offset - fastest.offset));
  std::nth_element(offsets.begin(), offsets.begin() + offsets.size() / 2, offsets.end());
  return {fastest.offset + static_cast<uint64_t>(offsets[offsets.size() / 2]), fastest.rtt,
          fastest.host};
}

/// The offset over a run, interpolated linearly between a calibration before and one after it
/// (the clocks drift; see the file comment).
struct ClockModel {
  ClockSync before, after;
  /// GPU time - host time at host time `host_ns` (mod 2^64).
  uint64_t offset_at(uint64_t host_ns) const {
    const double span = static_cast<double>(after.host_ns - before.host_ns);
    if (span <= 0) return before.offset_ns;
    const double drift =
        static_cast<double>(static_cast<int64_t>(after.offset_ns - before.offset_ns));
    const double f = static_cast<double>(static_cast<int64_t>(host_ns - before.host_ns)) / span;
    return before.offset_ns + static_cast<uint64_t>(static_cast<int64_t>(drift * f));
  }
  /// How far the offset moved between the two calibrations, in ns per second of host time.
  double drift_ns_per_s() const {
    const double span = static_cast<double>(after.host_ns - before.host_ns);
    return span <= 0
               ? 0
               : static_cast<double>(static_cast<int64_t>(after.offset_ns - before.offset_ns)) /
                     span * 1e9;
  }
  /// Uncertainty of one latency: half the slower of the two calibrations' fastest round trips.
  uint64_t half_rtt_ns() const { return std::max(before.rtt_ns, after.rtt_ns) / 2; }
};

/// Latencies of `samples` under `model`.
inline std::vector<int64_t> latencies(const std::vector<testing::StampSample>& samples,
                                      const ClockModel& model) {
  std::vector<int64_t> out;
  out.reserve(samples.size());
  for (const testing::StampSample& s : samples)
    out.push_back(testing::stamp_latency(s, model.offset_at(s.host_ns)));
  return out;
}

}  // namespace uccl::ep::bench
