// The null transport: completes every operation at once without moving data and counts what
// it was asked to do. For benchmarks of the command path (queue + proxy) without a network.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "transport/transport.h"

namespace uccl::ep::transport {

/// The registry's factory for "null" (declared here rather than in factories.h, which belongs
/// to the transport folder's build; registry.cc includes this header).
std::unique_ptr<Transport> make_null_transport(const TransportOptions& options);

namespace null {

/// Counters of a NullTransport (read by the thread driving it, or after it stopped).
struct NullStats {
  uint64_t writes = 0, atomics = 0, signals = 0, bytes = 0;
};

/// Implements Transport: post_* check the pipe and the peer, queue the id (kRetry beyond
/// options.max_inflight) and poll() returns the queued ids as successful completions, in post
/// order. Offsets and slots are not checked and nothing is copied. Capabilities claim ordered
/// delivery, native atomics and unlimited fused signals, so the proxy takes its fastest path.
class NullTransport final : public Transport {
 public:
  explicit NullTransport(const TransportOptions& options);

  Capabilities capabilities() const override;
  void register_regions(const Region& rdma_buffer, const Region& signals) override;
  std::vector<uint8_t> local_address() const override;
  void connect(const std::vector<std::vector<uint8_t>>& addresses) override;
  PostStatus post_write(int pipe, int peer, uint64_t local_offset, uint64_t remote_offset,
                        uint64_t bytes, const Signal* signal, uint64_t id) override;
  PostStatus post_atomic_add(int pipe, int peer, uint32_t slot, int64_t value,
                             uint64_t id) override;
  int poll(Completion* out, int max) override;

  const NullStats& stats() const { return stats_; }

 private:
  void check_post(int pipe, int peer) const;
  PostStatus push(uint64_t id);

  TransportOptions options_;
  std::vector<uint64_t> ring_;  // ids of operations not yet returned by poll()
  uint64_t head_ = 0, count_ = 0;
  bool connected_ = false;
  NullStats stats_;
};

}  // namespace null
}  // namespace uccl::ep::transport
