// The fake transport: one rank's view of a FakeFabric (in-memory, scriptable; for tests). The
// registry does not name it: the ranks of a test share a fabric, which only the test (or a
// factory it is given, proxy/testing/fake_transport_factory.h) can provide.
#pragma once

#include <memory>
#include <string>

#include "transport/fake/fake_fabric.h"
#include "transport/transport.h"

namespace uccl::ep::transport::fake {

/// Implements Transport on a FakeFabric shared by every rank of the process. Pipes, peers,
/// offsets and slots are checked like a real transport; outcomes follow the fabric's policy.
class FakeTransport final : public Transport {
 public:
  /// Rank options.rank of `fabric`, which has options.num_ranks ranks.
  FakeTransport(const TransportOptions& options, std::shared_ptr<FakeFabric> fabric);

  Capabilities capabilities() const override;
  void register_regions(const Region& rdma_buffer, const Region& signals) override;
  std::vector<uint8_t> local_address() const override;
  void connect(const std::vector<std::vector<uint8_t>>& addresses) override;
  PostStatus post_write(int pipe, int peer, uint64_t local_offset, uint64_t remote_offset,
                        uint64_t bytes, const Signal* signal, uint64_t id) override;
  PostStatus post_atomic_add(int pipe, int peer, uint32_t slot, int64_t value,
                             uint64_t id) override;
  int poll(Completion* out, int max) override;

 private:
  void check_post(int pipe, int peer) const;

  TransportOptions options_;
  std::shared_ptr<FakeFabric> fabric_;
  bool registered_ = false;
  bool connected_ = false;
};

/// Builds rank options.rank's fake transport on `fabric` (shared by every rank of the test).
/// Checks the options like the registry does (Error(kValue): ranks, pipes, in-flight limit,
/// deadline, a null fabric or one with another rank count).
std::unique_ptr<Transport> make_fake_transport(const TransportOptions& options,
                                               std::shared_ptr<FakeFabric> fabric);

/// The fabric of plane `plane` for ranks of this process that use `key`: created on first use
/// (with `num_ranks` and `options`) and shared while any holder keeps it, so ranks that are
/// threads of one process meet on it. Thread-safe. Throws Error(kValue) if it exists with
/// another rank count.
std::shared_ptr<FakeFabric> shared_fabric(const std::string& key, int plane, int num_ranks,
                                          const FakeFabricOptions& options = {});

}  // namespace uccl::ep::transport::fake
