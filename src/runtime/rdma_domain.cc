// The RDMA domain: the command path's local set-up, connection, barrier and stop; and the
// public CommandPath built on it.
#include "runtime/rdma_domain.h"

#include "common/cuda_check.h"
#include "common/error.h"
#include "common/log.h"
#include "kernels/rdma/launch.h"
#include "protocol/command_limits.h"
#include "queue/queue_memory.h"
#include "runtime/collective.h"
#include "runtime/host_memory.h"

namespace uccl::ep {
namespace runtime {

std::string resolve_transport(const std::string& requested, const EnvSettings& env,
                              bool single_host) {
  const std::string name = requested.empty() ? env.transport : parse_transport_name(requested);
  if (name != "auto") return name;
  return single_host ? "ipc" : "libfabric";
}

RdmaDomain::RdmaDomain(const CommandPathOptions& o, const EnvSettings& env,
                       const TransportInjection* injection)
    : host_queues_(o.host_queues || o.device < 0), device_(o.device) {
  UCCL_EP_CHECK_VALUE(o.rdma_buffer != nullptr && o.rdma_buffer_bytes > 0,
                      "command path: the RDMA buffer is empty (",
                      o.rdma_buffer == nullptr ? "null" : "set", ", ", o.rdma_buffer_bytes,
                      " bytes)");
  protocol::check_buffer_limits("the RDMA buffer size", o.rdma_buffer_bytes);
  UCCL_EP_CHECK_VALUE(o.num_ranks >= 1 && o.rank >= 0 && o.rank < o.num_ranks,
                      "command path: rank=", o.rank, " must be in [0, num_ranks=", o.num_ranks,
                      ")");
  proxy::SessionOptions s;
  s.proxy = proxy::proxy_options_from_env(env);
  s.proxy.rank = o.rank;
  s.proxy.num_ranks = o.num_ranks;
  s.proxy.local_rank = o.local_rank;
  s.proxy.low_latency_mode = o.low_latency_mode;
  s.transport = injection != nullptr ? injection->name : o.transport;
  if (injection != nullptr) s.make_transport = injection->factory;
  s.fi_provider = env.fi_provider == "auto" ? "" : env.fi_provider;
  s.network = proxy::network_hints_from_env(env);
  s.cuda_device = o.device;
  s.num_queues = o.num_queues;
  s.queue_capacity = o.queue_capacity;
  s.rdma_buffer = transport::Region{o.rdma_buffer, o.rdma_buffer_bytes, o.rdma_buffer_on_device,
                                    o.rdma_buffer_shared_name};
  if (o.device >= 0) {
    char bus[32] = {};
    if (cudaDeviceGetPCIBusId(bus, sizeof(bus), o.device) == cudaSuccess)
      s.proxy.gpu_pci_bus_id = bus;
    cudaGetLastError();
  }
  session_ = std::make_unique<proxy::ProxySession>(
      s, host_queues_ ? queue::make_host_queue_allocator()
                      : queue::make_cuda_queue_allocator(o.device));
  if (!host_queues_) {
    // Kernels poll the signal region (POSIX shared memory) through a device alias.
    DeviceGuard guard(device_);
    void* signals = session_->signals();
    UCCL_EP_CUDA_CHECK(cudaHostRegister(signals, size_t{session_->num_signal_slots()} * 8,
                                        cudaHostRegisterMapped | cudaHostRegisterPortable));
    void* alias = nullptr;
    const cudaError_t err = cudaHostGetDevicePointer(&alias, signals, 0);
    if (err != cudaSuccess) cudaHostUnregister(signals);
    UCCL_EP_CUDA_CHECK(err);
    device_signals_ = static_cast<int64_t*>(alias);
  }
}

RdmaDomain::~RdmaDomain() {
  if (!stopped_) stop(false);
  if (device_signals_ != nullptr) cudaHostUnregister(session_->signals());
}

Bytes RdmaDomain::local_address() const {
  return session_->local_address();
}

void RdmaDomain::connect_and_start(const std::vector<Bytes>& addresses) {
  session_->connect(addresses);
  session_->start();
}

void RdmaDomain::check() const {
  session_->check();
}

CommandPathStop RdmaDomain::stop(bool drain) {
  stopped_ = true;
  const proxy::StopResult r =
      session_->stop(drain ? proxy::StopMode::kDrain : proxy::StopMode::kAbandon);
  return {proxy::stop_status_name(r.status), r.message};
}

void RdmaDomain::barrier(const device::DeviceDiag& diag, cudaStream_t stream) {
  UCCL_EP_CHECK_RUNTIME(!host_queues_, "the RDMA domain's barrier needs GPU queues");
  DeviceGuard guard(device_);
  kernels::rdma::launch_barrier({session_->queues().device_handle(0), 0, ++barrier_seq_, diag},
                                stream);
}

uint64_t RdmaDomain::next_fence_sequence(uint32_t queue) {
  if (fence_seq_.size() < session_->queues().num_queues())
    fence_seq_.resize(session_->queues().num_queues(), 0);
  UCCL_EP_CHECK_VALUE(queue < fence_seq_.size(), "queue ", queue, " out of range [0, ",
                      fence_seq_.size(), ")");
  return ++fence_seq_[queue];
}

std::vector<queue::QueueDeviceHandle> RdmaDomain::device_handles() const {
  return session_->queues().device_handles();
}

}  // namespace runtime

// ---- CommandPath

CommandPath::CommandPath(const CommandPathOptions& options, const AllGather& all_gather,
                         const TransportInjection* injection)
    : impl_(std::make_unique<Impl>()) {
  const int rank = options.rank, n = options.num_ranks;
  const auto addresses = runtime::collective_step(all_gather, rank, n, "command path set-up", [&] {
    const EnvSettings env = read_env_settings();  // raises ValueError naming a bad variable
    set_log_level(env.log_level);
    CommandPathOptions o = options;
    if (injection == nullptr)
      o.transport = o.transport.empty() ? env.transport : parse_transport_name(o.transport);
    impl_->domain = std::make_unique<runtime::RdmaDomain>(o, env, injection);
    return impl_->domain->local_address();
  });
  runtime::collective_step(all_gather, rank, n, "command path connect", [&] {
    impl_->domain->connect_and_start(addresses);
    return Bytes{};
  });
}

CommandPath::~CommandPath() = default;

void CommandPath::check() const {
  impl_->domain->check();
}

CommandPathStop CommandPath::stop(bool drain) {
  return impl_->domain->stop(drain);
}

std::string CommandPath::transport() const {
  return impl_->domain->session().capabilities().name;
}

int CommandPath::num_proxy_threads() const {
  return impl_->domain->session().num_threads();
}

uint32_t CommandPath::num_queues() const {
  return impl_->domain->session().queues().num_queues();
}

uint32_t CommandPath::queue_capacity() const {
  return impl_->domain->session().queues().capacity();
}

std::map<std::string, uint64_t> CommandPath::stats() const {
  proxy::Proxy* p = impl_->domain->session().proxy();
  const proxy::ThreadStats s = p != nullptr ? p->total_stats() : proxy::ThreadStats{};
  return {{"commands", s.commands},
          {"posted", s.posted},
          {"completed", s.completed},
          {"bytes", s.bytes},
          {"fences", s.fences},
          {"barriers", s.barriers},
          {"split_signals", s.split_signals},
          {"flow_stalls", s.flow_stalls},
          {"retries", s.retries},
          {"inflight", s.inflight}};
}

}  // namespace uccl::ep
