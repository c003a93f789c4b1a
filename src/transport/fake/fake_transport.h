// The fake transport: one rank's view of a FakeFabric (in-memory, scriptable; for tests).
#pragma once

#include <memory>

#include "transport/fake/fake_fabric.h"
#include "transport/transport.h"

namespace uccl::ep::transport::fake {

/// Implements Transport on a FakeFabric shared by every rank of the process. Channels, peers,
/// offsets and slots are checked like a real transport; outcomes follow the fabric's policy.
class FakeTransport final : public Transport {
 public:
  /// Needs options.fake_fabric with options.num_ranks ranks.
  explicit FakeTransport(const TransportOptions& options);

  Capabilities capabilities() const override;
  void register_regions(const Region& data, const Region& signals) override;
  std::vector<uint8_t> local_address() const override;
  void connect(const std::vector<std::vector<uint8_t>>& addresses) override;
  PostStatus post_write(int channel, int peer, uint64_t local_offset, uint64_t remote_offset,
                        uint64_t bytes, const Signal* signal, uint64_t id) override;
  PostStatus post_atomic_add(int channel, int peer, uint32_t slot, int64_t value,
                             uint64_t id) override;
  int poll(Completion* out, int max) override;

 private:
  void check_post(int channel, int peer) const;

  TransportOptions options_;
  std::shared_ptr<FakeFabric> fabric_;
  bool registered_ = false;
  bool connected_ = false;
};

}  // namespace uccl::ep::transport::fake
