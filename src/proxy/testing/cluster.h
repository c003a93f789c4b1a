// Test support: several ranks of one process, each a ProxySession over the fake transport with
// host-memory queues, and a transport wrapper that counts what the proxy keeps in flight.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "proxy/session.h"
#include "proxy/testing/fake_transport_factory.h"
#include "queue/host_producer.h"
#include "transport/fake/fake_fabric.h"

namespace uccl::ep::proxy::testing {

/// What a CountingTransport saw (atomics: the test reads them while the proxy runs).
struct InflightCounters {
  std::atomic<int64_t> max_per_pipe{0};  // most operations in flight on one pipe
  std::atomic<int64_t> max_bytes{0};     // most write bytes in flight on the transport
  std::atomic<int64_t> posted{0}, completed{0}, atomics{0}, signals{0};
  /// Atomics posted while a write of the same pipe was in flight (on a transport that does
  /// not promise ordered delivery this must stay 0).
  std::atomic<int64_t> atomics_behind_writes{0};
};

/// Forwards to `inner` and counts operations in flight per pipe and bytes in flight.
/// Driven by one proxy thread, like every transport.
class CountingTransport final : public transport::Transport {
 public:
  CountingTransport(std::unique_ptr<transport::Transport> inner,
                    std::shared_ptr<InflightCounters> counters);
  transport::Capabilities capabilities() const override { return inner_->capabilities(); }
  void register_regions(const transport::Region& d, const transport::Region& s) override {
    inner_->register_regions(d, s);
  }
  std::vector<uint8_t> local_address() const override { return inner_->local_address(); }
  void connect(const std::vector<std::vector<uint8_t>>& a) override { inner_->connect(a); }
  transport::PostStatus post_write(int pipe, int peer, uint64_t local_offset,
                                   uint64_t remote_offset, uint64_t bytes,
                                   const transport::Signal* signal, uint64_t id) override;
  transport::PostStatus post_atomic_add(int pipe, int peer, uint32_t slot, int64_t value,
                                        uint64_t id) override;
  int poll(transport::Completion* out, int max) override;

 private:
  struct Pending {
    int pipe;
    uint64_t bytes;
    bool write;
  };
  void posted(int pipe, uint64_t bytes, bool write, uint64_t id);

  std::unique_ptr<transport::Transport> inner_;
  std::shared_ptr<InflightCounters> c_;
  std::map<uint64_t, Pending> pending_;
  std::map<int, int64_t> per_pipe_, writes_per_pipe_;
  int64_t bytes_ = 0;
};

struct ClusterOptions {
  int num_ranks = 2;
  int num_threads = 2;
  uint32_t num_queues = 4;
  uint32_t capacity = 256;
  uint64_t rdma_buffer_bytes = 1 << 20;
  double timeout_secs = 10;
  bool low_latency_mode = false;
  int max_inflight_normal = 8, max_inflight_low_latency = 32;
  uint64_t max_inflight_bytes = UINT64_MAX;
  transport::fake::FakeFabricOptions fabric{};
  transport::fake::FakePolicy policy{};  // applied to every thread's fabric
  bool start = true;                     // start the proxies in the constructor
};

/// `num_ranks` ProxySessions over fake fabrics private to this cluster, connected (and started
/// unless options.start is false). Rank r's RDMA buffer is rdma_buffer(r); its queues use host
/// memory, so tests push with HostProducers.
class Cluster {
 public:
  explicit Cluster(const ClusterOptions& options);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  ProxySession& session(int rank) { return *sessions_[rank]; }
  Proxy& proxy(int rank) { return *sessions_[rank]->proxy(); }
  uint8_t* rdma_buffer(int rank) { return rdma_buffers_[rank].data(); }
  int64_t* signals(int rank) { return sessions_[rank]->signals(); }
  queue::HostProducer producer(int rank, uint32_t queue) const;
  transport::fake::FakeFabric& fabric(int thread) { return *fabrics_[thread]; }
  InflightCounters& counters(int rank, int thread) { return *counters_[rank][thread]; }
  const ClusterOptions& options() const { return options_; }
  /// Starts every rank's proxy (when options.start was false).
  void start();
  /// Stops every rank (in rank order) and returns the results.
  std::vector<StopResult> stop(StopMode mode = StopMode::kDrain);

 private:
  ClusterOptions options_;
  std::string key_;
  std::vector<std::vector<uint8_t>> rdma_buffers_;
  std::vector<std::shared_ptr<transport::fake::FakeFabric>> fabrics_;
  std::vector<std::vector<std::shared_ptr<InflightCounters>>> counters_;
  std::vector<std::unique_ptr<ProxySession>> sessions_;
};

/// Acquire load of a signal slot.
int64_t load_signal(const int64_t* signals, uint32_t slot);

}  // namespace uccl::ep::proxy::testing
