// Latency samples for the command-path benchmarks: a GPU globaltimer stamp (56 bits, carried in
// a command) and the host time at which the command was seen, turned into a latency once the
// host/GPU clock offset is known. Plain C++ (no CUDA).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace uccl::ep::testing {

/// Stamps keep the low 56 bits of the GPU's globaltimer (ns).
constexpr uint64_t kStampMask = (uint64_t{1} << 56) - 1;

/// One command: its GPU push stamp and the host clock when it was seen.
struct StampSample {
  uint64_t host_ns;
  uint64_t stamp;  // 56 bits of GPU time
};

/// Latency from a difference of 56-bit stamps taken modulo 2^56, sign-extended: a negative
/// value means the clock calibration is off by at least that much (it is reported, not hidden).
inline int64_t signed_stamp_delta(uint64_t masked_delta) {
  return masked_delta > kStampMask / 2
             ? static_cast<int64_t>(masked_delta) - static_cast<int64_t>(kStampMask + 1)
             : static_cast<int64_t>(masked_delta);
}

/// Push-to-seen latency of `s` when GPU time = host time + `offset_ns` (mod 2^64).
inline int64_t stamp_latency(const StampSample& s, uint64_t offset_ns) {
  return signed_stamp_delta((s.host_ns + offset_ns - s.stamp) & kStampMask);
}

/// The p-quantile (0 <= p <= 1) of `v` (reordered); 0 when empty.
template <typename T>
double percentile(std::vector<T>& v, double p) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k]);
}

}  // namespace uccl::ep::testing
