// Test and benchmark support: the probe transport (checks and latency samples).
#include "proxy/testing/probe_transport.h"

#include <algorithm>

namespace uccl::ep::proxy::testing {

uint64_t host_now_ns() {
  static const auto epoch = std::chrono::steady_clock::now();
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - epoch)
          .count());
}

transport::PostStatus ProbeTransport::post_write(int channel, int peer, uint64_t local_offset,
                                                 uint64_t remote_offset, uint64_t bytes,
                                                 const transport::Signal* signal, uint64_t id) {
  const transport::PostStatus s =
      inner_.post_write(channel, peer, local_offset, remote_offset, bytes, signal, id);
  if (s != transport::PostStatus::kPosted) return s;
  ProbeRecord& r = *record_;
  r.sequence_sum += (remote_offset >> protocol::kUnitShift) + 1;
  if (++count_ % r.sample_every == 0 && r.latency_ns.size() < r.latency_ns.capacity()) {
    const uint64_t stamp =
        (local_offset >> protocol::kUnitShift) | ((bytes >> protocol::kUnitShift) << 32);
    // Stamps keep 56 bits of GPU time: subtract modulo 2^56; a "negative" latency is a
    // calibration error and counts as 0.
    const uint64_t latency = (host_now_ns() + r.clock_offset_ns - stamp) & kStampMask;
    r.latency_ns.push_back(latency > kStampMask / 2 ? 0 : latency);
  }
  r.executed.store(count_, std::memory_order_relaxed);
  return s;
}

double percentile(std::vector<uint64_t>& v, double p) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k]);
}

}  // namespace uccl::ep::proxy::testing
