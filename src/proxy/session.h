// Everything one rank needs to run its command path: the command queues, the signal region,
// one transport per proxy thread ("plane"), the address exchange and the Proxy. The runtime,
// the Python lifecycle (initialize_uccl) and the GPU tests build on it.
//
// Planes: thread t of every rank talks to thread t of every other rank through its own
// transport endpoint, so a transport is driven by one thread only (the transport obligation)
// and no lock sits on the hot path. Queue q uses thread q % N on every rank, hence plane
// q % N, and a target's thread t polls the operations sent to it on plane t.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "proxy/proxy.h"
#include "queue/queue_memory.h"
#include "transport/shared_memory.h"
#include "transport/transport.h"

namespace uccl::ep::proxy {

/// Barrier groups reserved at the end of every signal region (BARRIER group g counts its
/// arrivals in slot num_signal_slots - kNumBarrierGroups + g).
constexpr uint32_t kNumBarrierGroups = 4;

/// Builds thread `thread`'s transport (plane `thread`) from the session's transport name and
/// the options the session derived for that thread. Tests wrap registry transports through it
/// or build ones the registry does not name (the fake transport:
/// proxy/testing/fake_transport_factory.h).
using TransportFactory = std::function<std::unique_ptr<transport::Transport>(
    int thread, const std::string& name, const transport::TransportOptions& options)>;

struct SessionOptions {
  /// Rank, ranks, local rank, threads, flow control, timeout, pinning. The signal and barrier
  /// fields are filled by the session.
  ProxyOptions proxy{};
  std::string transport = "auto";     // registry name: auto, libfabric, ipc, null
  std::string fi_provider{};          // libfabric provider ("" or "auto": the first that works)
  transport::NetworkHints network{};  // interface, GID index, SL, TC (network_hints_from_env)
  transport::SignalPath signal_path = transport::SignalPath::kAuto;
  int cuda_device = -1;            // ipc: the device of the RDMA buffer
  uint32_t num_queues = 32;        // command queues of this rank (same on every rank)
  uint32_t queue_capacity = 2048;  // slots per queue (a power of two)
  /// This rank's RDMA buffer (same layout on every rank; commands address it by offset). The caller
  /// owns it and keeps it alive while the session lives.
  transport::Region rdma_buffer{};
  uint32_t num_signal_slots = 65536;  // int64 counters of the signal region (POSIX shm)
  /// Builds each thread's transport, called with `transport` as the name; empty: the
  /// registry, transport::make_transport(transport, options).
  TransportFactory make_transport{};
};

class ProxySession {
 public:
  /// Allocates the queues (with `allocator`) and the signal region, creates and registers one
  /// transport per thread. The thread count is min(num_threads, num_queues). Throws
  /// uccl::ep::Error.
  ProxySession(const SessionOptions& options, std::unique_ptr<queue::QueueAllocator> allocator);
  /// Stops the proxy (abandon) if it still runs. If a thread could not be stopped, the queue
  /// and signal memory are leaked rather than freed under it.
  ~ProxySession();
  ProxySession(const ProxySession&) = delete;
  ProxySession& operator=(const ProxySession&) = delete;

  /// This rank's address for every plane (versioned, length-checked).
  std::vector<uint8_t> local_address() const;
  /// Connects every plane to the ranks' addresses (`addresses[r]` from rank r's
  /// local_address()). Collective. Throws Error(kValue) when ranks disagree on the thread
  /// count, the queue count or the transport, naming both.
  void connect(const std::vector<std::vector<uint8_t>>& addresses);
  /// all_gather of local_address() through `boot`, then connect().
  void connect(bootstrap::Bootstrap& boot);
  /// Starts the proxy threads (after connect()).
  void start();
  /// Stops the proxy (see Proxy::stop); a session that never started reports kNotStarted.
  StopResult stop(StopMode mode = StopMode::kDrain);
  /// Throws the proxy's first error (Error(kRuntime)).
  void check() const;

  queue::QueueSet& queues() { return queues_; }
  const queue::QueueSet& queues() const { return queues_; }
  /// This rank's signal region (host memory; POSIX shm named signal_name()).
  int64_t* signals() const { return static_cast<int64_t*>(signal_memory_.data()); }
  uint32_t num_signal_slots() const { return options_.num_signal_slots; }
  /// Slots [0, num_user_signal_slots()) are free for kernels; the rest are BARRIER's.
  uint32_t num_user_signal_slots() const { return options_.num_signal_slots - kNumBarrierGroups; }
  const std::string& signal_name() const { return signal_memory_.name(); }
  int num_threads() const { return options_.proxy.num_threads; }
  const SessionOptions& options() const { return options_; }
  const transport::Capabilities& capabilities() const { return caps_; }
  /// The proxy (null before start()).
  Proxy* proxy() { return proxy_.get(); }

 private:
  std::unique_ptr<transport::Transport> create_transport(int thread);

  SessionOptions options_;
  queue::QueueSet queues_;
  transport::SharedMemory signal_memory_;
  transport::Capabilities caps_;
  std::vector<std::unique_ptr<transport::Transport>> transports_;  // until start()
  std::unique_ptr<Proxy> proxy_;
  bool connected_ = false;
};

}  // namespace uccl::ep::proxy
