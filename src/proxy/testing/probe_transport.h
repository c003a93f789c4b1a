// Test and benchmark support: a null-like transport that checks the commands the proxy
// executes (counts, per-producer sequence sums) and samples (host time, GPU push stamp) pairs
// from WRITE commands, for push->execution latency once the clock offset is known.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/hd.h"
#include "common/testing/latency_stamps.h"
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

/// Nanoseconds of the host steady clock since the process's first call (the probe's clock).
uint64_t host_now_ns();

/// What one ProbeTransport saw. `executed` may be read while the proxy runs; the rest after
/// the proxy stopped.
struct ProbeRecord {
  std::atomic<uint64_t> executed{0};                    // WRITEs posted
  uint64_t sequence_sum = 0;                            // sum of (sequence + 1) over WRITEs
  std::vector<uccl::ep::testing::StampSample> samples;  // (host_now_ns(), GPU stamp) pairs
  uint32_t sample_every = 16;                           // one latency sample per this many WRITEs
  explicit ProbeRecord(size_t max_samples) { samples.reserve(max_samples); }
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
  transport::PostStatus post_write(int pipe, int peer, uint64_t local_offset,
                                   uint64_t remote_offset, uint64_t bytes,
                                   const transport::Signal* signal, uint64_t id) override;
  transport::PostStatus post_atomic_add(int pipe, int peer, uint32_t slot, int64_t value,
                                        uint64_t id) override {
    return inner_.post_atomic_add(pipe, peer, slot, value, id);
  }
  int poll(transport::Completion* out, int max) override { return inner_.poll(out, max); }

 private:
  transport::null::NullTransport inner_;
  std::shared_ptr<ProbeRecord> record_;
  uint64_t count_ = 0;
};

}  // namespace uccl::ep::proxy::testing
