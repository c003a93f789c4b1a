// Test and benchmark support: a null-like transport that checks the commands the proxy
// executes (counts, per-producer sequence sums) and samples push->execution latency from GPU
// timestamps carried in WRITE commands.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/hd.h"
#include "protocol/command.h"
#include "transport/null/null_transport.h"
#include "transport/transport.h"

namespace uccl::ep::proxy::testing {

/// A WRITE to `peer` whose fields carry a timestamp (56 bits of ns: local offset and bytes) and
/// a sequence number (remote offset). Only for the probe transport: the fields are not real.
UCCL_HD protocol::Command stamp_write(uint32_t peer, uint32_t seq, uint64_t stamp_ns) {
  return protocol::encode_write(peer, (stamp_ns & 0xffffffffu) << 4, uint64_t{seq} << 4,
                                ((stamp_ns >> 32) & 0xffffffu) << 4);
}
constexpr uint64_t kStampMask = (uint64_t{1} << 56) - 1;

/// Nanoseconds of the host steady clock since the process's first call (the probe's clock).
uint64_t host_now_ns();

/// What one ProbeTransport saw. `executed` may be read while the proxy runs; the rest after
/// the proxy stopped.
struct ProbeRecord {
  std::atomic<uint64_t> executed{0};  // WRITEs posted
  uint64_t sequence_sum = 0;          // sum of (sequence + 1) over WRITEs
  std::vector<int64_t> latency_ns;    // samples, signed (capacity reserved up front)
  uint32_t sample_every = 16;         // one latency sample per this many WRITEs
  uint64_t clock_offset_ns = 0;       // GPU globaltimer - host_now_ns() (mod 2^64)
  explicit ProbeRecord(size_t max_samples) { latency_ns.reserve(max_samples); }
};

/// Completes everything at once like the null transport; records every WRITE in `record`.
class ProbeTransport final : public transport::Transport {
 public:
  ProbeTransport(const transport::TransportOptions& options, std::shared_ptr<ProbeRecord> record)
      : inner_(options), record_(std::move(record)) {}
  transport::Capabilities capabilities() const override {
    transport::Capabilities c = inner_.capabilities();
    c.name = "probe";
    return c;
  }
  void register_regions(const transport::Region& d, const transport::Region& s) override {
    inner_.register_regions(d, s);
  }
  std::vector<uint8_t> local_address() const override { return inner_.local_address(); }
  void connect(const std::vector<std::vector<uint8_t>>& a) override { inner_.connect(a); }
  transport::PostStatus post_write(int channel, int peer, uint64_t local_offset,
                                   uint64_t remote_offset, uint64_t bytes,
                                   const transport::Signal* signal, uint64_t id) override;
  transport::PostStatus post_atomic_add(int channel, int peer, uint32_t slot, int64_t value,
                                        uint64_t id) override {
    return inner_.post_atomic_add(channel, peer, slot, value, id);
  }
  int poll(transport::Completion* out, int max) override { return inner_.poll(out, max); }

 private:
  transport::null::NullTransport inner_;
  std::shared_ptr<ProbeRecord> record_;
  uint64_t count_ = 0;
};

/// p-quantile (0..1) of `v` (reorders it); 0 when empty.
/// Latency from a difference of 56-bit stamps taken modulo 2^56, sign-extended: a negative
/// value means the clock calibration is off by at least that much (it is reported, not hidden).
inline int64_t signed_stamp_delta(uint64_t masked_delta) {
  return masked_delta > kStampMask / 2
             ? static_cast<int64_t>(masked_delta) - static_cast<int64_t>(kStampMask + 1)
             : static_cast<int64_t>(masked_delta);
}

/// The p-quantile (0 <= p <= 1) of `v` (reordered); 0 when empty.
template <typename T>
double percentile(std::vector<T>& v, double p) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k]);
}

}  // namespace uccl::ep::proxy::testing
