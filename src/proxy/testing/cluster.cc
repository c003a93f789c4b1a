// Test support: in-process ranks over fake fabrics, and the counting transport wrapper.
#include "proxy/testing/cluster.h"

#include <algorithm>
#include <atomic>
#include <chrono>

#include "common/error.h"
#include "transport/fake/fake_transport.h"

namespace uccl::ep::proxy::testing {
namespace {

void raise_max(std::atomic<int64_t>& m, int64_t v) {
  int64_t old = m.load(std::memory_order_relaxed);
  while (old < v && !m.compare_exchange_weak(old, v, std::memory_order_relaxed)) {
  }
}

}  // namespace

CountingTransport::CountingTransport(std::unique_ptr<transport::Transport> inner,
                                     std::shared_ptr<InflightCounters> counters)
    : inner_(std::move(inner)), c_(std::move(counters)) {}

void CountingTransport::posted(int pipe, uint64_t bytes, bool write, uint64_t id) {
  pending_[id] = Pending{pipe, bytes, write};
  raise_max(c_->max_per_pipe, ++per_pipe_[pipe]);
  if (write) ++writes_per_pipe_[pipe];
  bytes_ += static_cast<int64_t>(bytes);
  raise_max(c_->max_bytes, bytes_);
  c_->posted.fetch_add(1, std::memory_order_relaxed);
}

transport::PostStatus CountingTransport::post_write(int pipe, int peer, uint64_t local_offset,
                                                    uint64_t remote_offset, uint64_t bytes,
                                                    const transport::Signal* signal, uint64_t id) {
  const transport::PostStatus s =
      inner_->post_write(pipe, peer, local_offset, remote_offset, bytes, signal, id);
  if (s == transport::PostStatus::kPosted) {
    posted(pipe, bytes, true, id);
    if (signal != nullptr) c_->signals.fetch_add(1, std::memory_order_relaxed);
  }
  return s;
}

transport::PostStatus CountingTransport::post_atomic_add(int pipe, int peer, uint32_t slot,
                                                         int64_t value, uint64_t id) {
  const transport::PostStatus s = inner_->post_atomic_add(pipe, peer, slot, value, id);
  if (s == transport::PostStatus::kPosted) {
    if (writes_per_pipe_[pipe] > 0)
      c_->atomics_behind_writes.fetch_add(1, std::memory_order_relaxed);
    posted(pipe, 0, false, id);
    c_->atomics.fetch_add(1, std::memory_order_relaxed);
  }
  return s;
}

int CountingTransport::poll(transport::Completion* out, int max) {
  const int n = inner_->poll(out, max);
  for (int i = 0; i < n; ++i) {
    auto it = pending_.find(out[i].id);
    if (it == pending_.end()) continue;
    --per_pipe_[it->second.pipe];
    if (it->second.write) --writes_per_pipe_[it->second.pipe];
    bytes_ -= static_cast<int64_t>(it->second.bytes);
    pending_.erase(it);
    c_->completed.fetch_add(1, std::memory_order_relaxed);
  }
  return n;
}

Cluster::Cluster(const ClusterOptions& options) : options_(options) {
  static std::atomic<int> next{0};
  key_ = str_cat("cluster-", next++);
  const int num_threads = std::min<int>(options.num_threads, static_cast<int>(options.num_queues));
  for (int t = 0; t < num_threads; ++t) {
    fabrics_.push_back(transport::fake::shared_fabric(key_, t, options.num_ranks, options.fabric));
    if (options.policy) fabrics_.back()->set_policy(options.policy);
  }
  rdma_buffers_.assign(static_cast<size_t>(options.num_ranks),
                       std::vector<uint8_t>(options.rdma_buffer_bytes));
  counters_.resize(static_cast<size_t>(options.num_ranks));
  std::vector<std::vector<uint8_t>> addresses;
  for (int r = 0; r < options.num_ranks; ++r) {
    for (int t = 0; t < num_threads; ++t)
      counters_[r].push_back(std::make_shared<InflightCounters>());
    SessionOptions s;
    s.proxy.rank = r;
    s.proxy.num_ranks = options.num_ranks;
    s.proxy.local_rank = r;
    s.proxy.num_threads = options.num_threads;
    s.proxy.low_latency_mode = options.low_latency_mode;
    s.proxy.max_inflight_normal = options.max_inflight_normal;
    s.proxy.max_inflight_low_latency = options.max_inflight_low_latency;
    s.proxy.max_inflight_bytes = options.max_inflight_bytes;
    s.proxy.timeout_secs = options.timeout_secs;
    s.proxy.pin_threads = false;  // tests share few cores
    s.proxy.idle_spins_before_yield = 64;
    s.num_queues = options.num_queues;
    s.queue_capacity = options.capacity;
    s.rdma_buffer =
        transport::Region{rdma_buffers_[r].data(), options.rdma_buffer_bytes, false, ""};
    s.num_signal_slots = 1024;
    auto counters = counters_[r];
    s.make_transport = [fake = fake_transport_factory(key_, options.fabric), counters](
                           int thread, const std::string& name,
                           const transport::TransportOptions& t) {
      return std::make_unique<CountingTransport>(fake(thread, name, t), counters[thread]);
    };
    sessions_.push_back(std::make_unique<ProxySession>(s, queue::make_host_queue_allocator()));
    addresses.push_back(sessions_.back()->local_address());
  }
  for (auto& s : sessions_) s->connect(addresses);
  if (options.start) start();
}

Cluster::~Cluster() {
  for (auto& s : sessions_) s->stop(StopMode::kAbandon);
}

void Cluster::start() {
  for (auto& s : sessions_) s->start();
}

std::vector<StopResult> Cluster::stop(StopMode mode) {
  std::vector<StopResult> out;
  for (auto& s : sessions_) out.push_back(s->stop(mode));
  return out;
}

queue::HostProducer Cluster::producer(int rank, uint32_t queue) const {
  return queue::HostProducer(
      sessions_[rank]->queues().host_producer_handle(queue),
      std::chrono::nanoseconds(static_cast<int64_t>(options_.timeout_secs * 3e9)));
}

int64_t load_signal(const int64_t* signals, uint32_t slot) {
  return std::atomic_ref<int64_t>(const_cast<int64_t&>(signals[slot]))
      .load(std::memory_order_acquire);
}

}  // namespace uccl::ep::proxy::testing
