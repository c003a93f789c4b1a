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

transport::PostStatus ProbeTransport::post_write(int pipe, int peer, uint64_t local_offset,
                                                 uint64_t remote_offset, uint64_t bytes,
                                                 const transport::Signal* signal, uint64_t id) {
  const transport::PostStatus s =
      inner_.post_write(pipe, peer, local_offset, remote_offset, bytes, signal, id);
  if (s != transport::PostStatus::kPosted) return s;
  ProbeRecord& r = *record_;
  r.sequence_sum += (remote_offset >> protocol::kUnitShift) + 1;
  if (++count_ % r.sample_every == 0 && r.samples.size() < r.samples.capacity()) {
    const uint64_t stamp =
        (local_offset >> protocol::kUnitShift) | ((bytes >> protocol::kUnitShift) << 32);
    r.samples.push_back({host_now_ns(), stamp});
  }
  r.executed.store(count_, std::memory_order_relaxed);
  return s;
}

}  // namespace uccl::ep::proxy::testing
