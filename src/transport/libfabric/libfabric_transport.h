// The libfabric transport (FI_EP_RDM): what the registry builds for "libfabric", plus the raw
// fi_writedata loop the benchmark compares against. libfabric types stay in endpoint.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "transport/transport.h"

namespace uccl::ep::transport::libfabric {

class Endpoint;

/// Implements Transport on one RDM endpoint, one completion queue and one address vector.
/// The provider comes from options.provider ("" / "auto": efa, verbs;ofi_rxm, cxi,
/// tcp;ofi_rxm, shm, first that answers); the choice is logged once per process (info).
/// Writes complete with FI_DELIVERY_COMPLETE; fused signals ride in the 32-bit remote CQ data
/// or, on the native path, follow their write as fi_atomic (transport.h, SignalPath).
class LibfabricTransport final : public Transport {
 public:
  explicit LibfabricTransport(const TransportOptions& options);
  ~LibfabricTransport() override;

  Capabilities capabilities() const override;
  void register_regions(const Region& rdma_buffer, const Region& signals) override;
  std::vector<uint8_t> local_address() const override;
  void connect(const std::vector<std::vector<uint8_t>>& addresses) override;
  PostStatus post_write(int pipe, int peer, uint64_t local_offset, uint64_t remote_offset,
                        uint64_t bytes, const Signal* signal, uint64_t id) override;
  PostStatus post_atomic_add(int pipe, int peer, uint32_t slot, int64_t value,
                             uint64_t id) override;
  int poll(Completion* out, int max) override;

  /// The provider in use, e.g. "tcp;ofi_rxm".
  const std::string& provider() const;
  /// The signal path chosen (never kAuto after construction).
  SignalPath signal_path() const;

  /// Benchmark baseline: `iterations` plain fi_writedata calls of `bytes` from local RDMA-buffer
  /// offset 0 to the peer's RDMA-buffer offset 0 (remote CQ data 0, which the target ignores), at
  /// most `window` in flight, reading the CQ directly. Returns seconds from the first post to the
  /// last completion. Only while no other operation of this transport is in flight; throws
  /// Error(kTimeout) after `timeout_secs`.
  double raw_writedata_loop(int peer, uint64_t bytes, uint64_t iterations, int window,
                            double timeout_secs);

 private:
  std::unique_ptr<Endpoint> ep_;
};

/// The first provider of the auto list that answers fi_getinfo on this machine, or "" (tests
/// skip on "").
std::string first_working_provider_name();

/// Whether `provider` answers fi_getinfo for an RDM endpoint with RMA here.
bool provider_available(const std::string& provider);

}  // namespace uccl::ep::transport::libfabric
