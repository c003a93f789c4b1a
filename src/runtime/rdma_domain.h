// The RDMA domain of one rank: the command path (queues, signal region, one transport per CPU
// proxy thread, the proxy) over an RDMA buffer, built in the steps a collective set-up needs.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <string>
#include <vector>

#include "common/env.h"
#include "device/diag.h"
#include "proxy/session.h"
#include "queue/queue_layout.h"
#include "uccl_ep/command_path.h"

namespace uccl::ep {

/// Tests build transports of their own (e.g. fake transports between threads) through this.
struct TransportInjection {
  proxy::TransportFactory factory;
  std::string name;  // the transport name the factory answers to
};

namespace runtime {

/// The transport of a command path: `requested` ("" = UCCL_EP_TRANSPORT) unless it is "auto",
/// which is ipc when every rank runs on one host (emulated nodes: GPU memory through CUDA IPC)
/// and libfabric otherwise.
std::string resolve_transport(const std::string& requested, const EnvSettings& env,
                              bool single_host);

class RdmaDomain {
 public:
  /// Local step: allocates the queues and the signal region, creates and registers one
  /// transport per proxy thread. `options.transport` must be resolved (not "" nor "auto"
  /// unless the registry may pick).
  RdmaDomain(const CommandPathOptions& options, const EnvSettings& env,
             const TransportInjection* injection);
  ~RdmaDomain();
  RdmaDomain(const RdmaDomain&) = delete;
  RdmaDomain& operator=(const RdmaDomain&) = delete;

  /// This rank's transport addresses (for the all-gather).
  Bytes local_address() const;
  /// Connects to every rank's address (collective, with the deadline) and starts the proxies.
  void connect_and_start(const std::vector<Bytes>& addresses);

  /// Throws the proxies' first error (Error(kRuntime)).
  void check() const;
  CommandPathStop stop(bool drain);
  bool stopped() const { return stopped_; }

  /// Enqueues a barrier of every rank of the command path on `stream` (queue 0, group 0).
  void barrier(const device::DeviceDiag& diag, cudaStream_t stream);
  /// The FENCE sequence to issue next on `queue` (each queue counts its own FENCEs).
  uint64_t next_fence_sequence(uint32_t queue);
  /// What kernels push into (device addresses).
  std::vector<queue::QueueDeviceHandle> device_handles() const;

  /// This rank's signal region as kernels see it (host memory mapped into the device; null
  /// with host queues).
  int64_t* device_signals() const { return device_signals_; }
  uint32_t num_user_signal_slots() const { return session_->num_user_signal_slots(); }

  proxy::ProxySession& session() { return *session_; }
  const proxy::ProxySession& session() const { return *session_; }
  bool host_queues() const { return host_queues_; }
  int device() const { return device_; }

 private:
  std::unique_ptr<proxy::ProxySession> session_;
  int64_t* device_signals_ = nullptr;
  bool host_queues_ = false;
  bool stopped_ = false;
  int device_ = -1;
  uint64_t barrier_seq_ = 0;
  std::vector<uint64_t> fence_seq_;
};

}  // namespace runtime

struct CommandPath::Impl {
  std::unique_ptr<runtime::RdmaDomain> domain;
};

}  // namespace uccl::ep
