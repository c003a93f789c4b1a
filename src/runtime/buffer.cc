// Buffer: the collective set-up of the topology, the NVLink and RDMA domains and the health
// state; the destroy that waits for every rank; stream helpers.
#include <unistd.h>

#include <cstring>

#include "common/cuda_check.h"
#include "common/error.h"
#include "common/log.h"
#include "runtime/buffer_impl.h"
#include "runtime/collective.h"
#include "runtime/validate/buffer.h"
#include "transport/wire.h"

namespace uccl::ep {
namespace {

constexpr uint32_t kSetupMagic = 0x46554255;  // "UBUF"
constexpr uint16_t kSetupVersion = 2;

std::string this_host() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) return "unknown-host";
  return host;
}

/// What every rank learns of every other rank in the first step.
struct RankSetup {
  std::string host;
  std::string gpu;  // PCI bus id of the rank's GPU
  int64_t num_nvl_bytes = 0, num_rdma_bytes = 0;
  bool low_latency_mode = false;
  Bytes nvl_handle;
};

Bytes encode_setup(const RankSetup& s) {
  transport::ByteWriter w;
  w.u32(kSetupMagic);
  w.u16(kSetupVersion);
  w.str(s.host);
  w.str(s.gpu);
  w.u64(static_cast<uint64_t>(s.num_nvl_bytes));
  w.u64(static_cast<uint64_t>(s.num_rdma_bytes));
  w.u8(s.low_latency_mode ? 1 : 0);
  w.bytes(s.nvl_handle.data(), s.nvl_handle.size());
  return w.take();
}

RankSetup decode_setup(const Bytes& b, int rank) {
  transport::ByteReader in(b, str_cat("the Buffer set-up message of rank ", rank));
  in.header(kSetupMagic, kSetupVersion);
  RankSetup s;
  s.host = in.str(256);
  s.gpu = in.str(64);
  s.num_nvl_bytes = static_cast<int64_t>(in.u64());
  s.num_rdma_bytes = static_cast<int64_t>(in.u64());
  s.low_latency_mode = in.u8() != 0;
  s.nvl_handle = in.bytes(1024);
  in.finish();
  return s;
}

/// What every rank learns of every other rank in the second step: its transport address and,
/// in the low-latency mode with device memory, the IPC handle of its RDMA buffer.
Bytes encode_connect(const Bytes& address, const Bytes& rdma_handle) {
  transport::ByteWriter w;
  w.u32(kSetupMagic);
  w.u16(kSetupVersion);
  w.bytes(address.data(), address.size());
  w.bytes(rdma_handle.data(), rdma_handle.size());
  return w.take();
}

std::pair<Bytes, Bytes> decode_connect(const Bytes& b, int rank) {
  transport::ByteReader in(b, str_cat("the Buffer connect message of rank ", rank));
  in.header(kSetupMagic, kSetupVersion);
  Bytes address = in.bytes(1 << 20);
  Bytes handle = in.bytes(1024);
  in.finish();
  return {std::move(address), std::move(handle)};
}

}  // namespace

Bytes buffer_setup_failure(int rank, const std::string& message) {
  return runtime::encode_step_failure(rank, message);
}

// ---- Set-up steps

Bytes Buffer::Impl::setup_local() {
  runtime::validate_buffer_options(options);
  env = read_env_settings();  // raises ValueError naming a variable that does not parse
  set_log_level(env.log_level);
  if (options.host_name.empty()) options.host_name = this_host();
  runtime::DeviceGuard guard(options.device);
  health = std::make_unique<runtime::Health>(options.rank, options.device, env.timeout_secs);
  nvl = std::make_unique<runtime::NvlDomain>(options.device, options.num_nvl_bytes);
  UCCL_EP_CUDA_CHECK(cudaEventCreateWithFlags(&order_event, cudaEventDisableTiming));
  UCCL_EP_CUDA_CHECK(cudaStreamCreateWithFlags(&control_stream, cudaStreamNonBlocking));
  UCCL_EP_CUDA_CHECK(cudaDeviceSynchronize());
  char pci[64] = {};
  UCCL_EP_CUDA_CHECK(cudaDeviceGetPCIBusId(pci, sizeof(pci) - 1, options.device));
  return encode_setup({options.host_name, pci, options.num_nvl_bytes, options.num_rdma_bytes,
                       options.low_latency_mode, nvl->ipc_handle()});
}

Bytes Buffer::Impl::connect_domains(const std::vector<Bytes>& messages) {
  const int n = options.num_ranks;
  std::vector<RankSetup> ranks;
  std::vector<std::string> hosts, gpus;
  for (int r = 0; r < n; ++r) {
    ranks.push_back(decode_setup(messages[r], r));
    hosts.push_back(ranks.back().host);
    gpus.push_back(ranks.back().host + "/" + ranks.back().gpu);
    const RankSetup& a = ranks.front();
    const RankSetup& b = ranks.back();
    UCCL_EP_CHECK_VALUE(a.num_nvl_bytes == b.num_nvl_bytes &&
                            a.num_rdma_bytes == b.num_rdma_bytes &&
                            a.low_latency_mode == b.low_latency_mode,
                        "Buffer: ranks 0 and ", r, " disagree: num_nvl_bytes ", a.num_nvl_bytes,
                        " vs ", b.num_nvl_bytes, ", num_rdma_bytes ", a.num_rdma_bytes, " vs ",
                        b.num_rdma_bytes, ", low_latency_mode ", a.low_latency_mode, " vs ",
                        b.low_latency_mode, "; every rank must pass the same sizes and mode");
  }
  topology = make_topology(options.rank, hosts, options.num_local_ranks, env.num_local_ranks);
  runtime::validate_buffer_topology(options, topology);
  log_message(LogLevel::kInfo, str_cat("rank ", options.rank, ": ", topology.describe()));

  std::vector<Bytes> local_handles;
  for (int i = 0; i < topology.num_local_ranks; ++i)
    local_handles.push_back(ranks[topology.local_base() + i].nvl_handle);
  nvl->connect(topology.local_rank(), topology.local_base(), local_handles);
  if (options.num_rdma_bytes == 0) return {};

  CommandPathOptions path;
  path.rank = options.rank;
  path.num_ranks = n;
  path.local_rank = topology.local_rank();
  path.device = options.device;
  path.low_latency_mode = options.low_latency_mode;
  path.transport = runtime::resolve_transport("", env, topology.single_host);
  // Device memory where the transport can register it, else pinned host memory (logged);
  // the ipc transport in host mode (UCCL_EP_IPC_MEMORY, ipc_uses_host_memory): host memory only.
  const bool ipc_host =
      path.transport == "ipc" && ipc_uses_host_memory(env.ipc_memory, topology, gpus);
  if (ipc_host && env.ipc_memory == "auto")
    log_message(LogLevel::kInfo, str_cat("rank ", options.rank,
                                         ": ranks share a GPU across NVLink domains; the ipc "
                                         "transport keeps the RDMA buffer in host memory"));
  for (bool on_device : {true, false}) {
    if (on_device && ipc_host) continue;
    rdma_buffer.allocate(options.num_rdma_bytes, on_device, options.device);
    path.rdma_buffer = rdma_buffer.host_or_device();
    path.rdma_buffer_bytes = static_cast<uint64_t>(options.num_rdma_bytes);
    path.rdma_buffer_on_device = on_device;
    path.rdma_buffer_shared_name = rdma_buffer.shared_name();
    try {
      rdma = std::make_unique<runtime::RdmaDomain>(path, env, nullptr);
      break;
    } catch (const Error& e) {
      if (!on_device || path.transport == "ipc") throw;
      log_message(LogLevel::kWarn, str_cat("rank ", options.rank, ": transport ", path.transport,
                                           " cannot use the RDMA buffer in device memory (",
                                           e.what(), "); using pinned host memory"));
    }
  }
  health->add_source([domain = rdma.get()] { domain->check(); });
  Bytes handle;
  if (options.low_latency_mode && rdma_buffer.on_device()) {
    cudaIpcMemHandle_t h;
    UCCL_EP_CUDA_CHECK(cudaIpcGetMemHandle(&h, rdma_buffer.data()));
    handle.assign(reinterpret_cast<const uint8_t*>(&h),
                  reinterpret_cast<const uint8_t*>(&h) + sizeof(h));
  }
  return encode_connect(rdma->local_address(), handle);
}

void Buffer::Impl::start_proxies(const std::vector<Bytes>& messages) {
  if (rdma == nullptr) return;
  std::vector<Bytes> addresses, handles;
  for (int r = 0; r < options.num_ranks; ++r) {
    auto [address, handle] = decode_connect(messages[r], r);
    addresses.push_back(std::move(address));
    handles.push_back(std::move(handle));
  }
  if (options.low_latency_mode && rdma_buffer.on_device()) map_direct_peers(handles);
  rdma->connect_and_start(addresses);
}

void Buffer::Impl::map_direct_peers(const std::vector<Bytes>& handles) {
  runtime::DeviceGuard guard(options.device);
  rdma_direct.assign(topology.num_local_ranks, nullptr);
  for (int i = 0; i < topology.num_local_ranks; ++i) {
    const int r = topology.local_base() + i;
    if (r == options.rank) {
      rdma_direct[i] = static_cast<uint8_t*>(rdma_buffer.data());
      continue;
    }
    if (handles[r].size() != sizeof(cudaIpcMemHandle_t)) {  // the peer's buffer is host memory
      unmap_direct_peers();
      return;
    }
    cudaIpcMemHandle_t h;
    std::memcpy(&h, handles[r].data(), sizeof(h));
    void* p = nullptr;
    const cudaError_t err = cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess);
    UCCL_EP_CHECK_RUNTIME(err == cudaSuccess, "rank ", options.rank,
                          " cannot map the RDMA buffer of rank ", r, ": ", cudaGetErrorString(err));
    rdma_opened.push_back(p);
    rdma_direct[i] = static_cast<uint8_t*>(p);
  }
}

void Buffer::Impl::unmap_direct_peers() noexcept {
  for (void* p : rdma_opened) cudaIpcCloseMemHandle(p);
  rdma_opened.clear();
  rdma_direct.clear();
}

// ---- Buffer

Buffer::Impl::~Impl() {
  unmap_direct_peers();
  if (order_event != nullptr) cudaEventDestroy(order_event);
  if (control_stream != nullptr) cudaStreamDestroy(control_stream);
}

Buffer::Buffer(const BufferOptions& options, const AllGather& all_gather)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.options = options;
  const int rank = options.rank, n = options.num_ranks;
  const auto setup = runtime::collective_step(all_gather, rank, n, "Buffer set-up",
                                              [&] { return s.setup_local(); });
  const auto addresses = runtime::collective_step(all_gather, rank, n, "Buffer connect",
                                                  [&] { return s.connect_domains(setup); });
  runtime::collective_step(all_gather, rank, n, "Buffer start", [&] {
    s.start_proxies(addresses);
    return Bytes{};
  });
  s.available = true;
}

Buffer::~Buffer() {
  try {
    destroy();
  } catch (const std::exception& e) {
    log_message(LogLevel::kError, str_cat("destroying the Buffer failed: ", e.what()));
  }
}

const BufferOptions& Buffer::options() const {
  return impl_->options;
}

const Topology& Buffer::topology() const {
  return impl_->topology;
}

BufferInfo Buffer::info() const {
  const BufferOptions& o = impl_->options;
  return {o.rank,
          o.num_ranks,
          o.num_nvl_bytes,
          o.device,
          o.num_rdma_bytes,
          o.low_latency_mode,
          impl_->topology.num_local_ranks};
}

RdmaInfo Buffer::rdma_info() const {
  const Impl& s = *impl_;
  if (s.rdma == nullptr) return {};
  const proxy::ProxySession& session = s.rdma->session();
  return {session.capabilities().name, session.num_threads(),
          static_cast<int>(session.queues().num_queues())};
}

void Buffer::Impl::require_ready(const char* op) const {
  UCCL_EP_CHECK_RUNTIME(!destroyed, op, ": the Buffer was destroyed");
  UCCL_EP_CHECK_RUNTIME(available, op, ": the Buffer is not connected to its peers");
  health->check(op);
}

void Buffer::check(const char* op) const {
  impl_->require_ready(op);
}

bool Buffer::is_available() const {
  return impl_->available && !impl_->destroyed;
}

std::string Buffer::Impl::barrier_before_free() {
  if (health->failed()) return "";  // peers may be gone: nothing to wait for
  const bool local_only = rdma == nullptr;
  if (local_only && topology.num_local_ranks == 1) return "";
  try {
    if (local_only) {
      nvl->barrier(health->diag(), control_stream);
    } else {
      rdma->barrier(health->diag(), control_stream);
    }
    UCCL_EP_CUDA_CHECK(cudaStreamSynchronize(control_stream));
    health->check("destroy");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void Buffer::destroy() {
  Impl& s = *impl_;
  if (s.destroyed) return;
  s.destroyed = true;
  std::string failure;
  if (s.health != nullptr) {
    runtime::DeviceGuard guard(s.options.device);
    const cudaError_t sync = cudaDeviceSynchronize();
    if (sync != cudaSuccess)
      failure = str_cat("device synchronize: ", cudaGetErrorString(sync), "; ");
    if (s.available) failure += s.barrier_before_free();
  }
  s.available = false;
  if (s.rdma != nullptr) {
    const CommandPathStop stop = s.rdma->stop(failure.empty());
    if (stop.status == "failed" && failure.empty()) failure = stop.message;
  }
  s.unmap_direct_peers();
  s.rdma.reset();
  s.rdma_buffer.release();
  s.nvl.reset();
  if (s.order_event != nullptr) cudaEventDestroy(s.order_event);
  if (s.control_stream != nullptr) cudaStreamDestroy(s.control_stream);
  s.order_event = nullptr;
  s.control_stream = nullptr;
  s.health.reset();
  UCCL_EP_CHECK_RUNTIME(failure.empty(), "uccl-ep: rank ", s.options.rank,
                        ": destroy: the ranks did not all reach the final barrier; the memory "
                        "was freed anyway: ",
                        failure);
}

void* Buffer::nvl_buffer() const {
  UCCL_EP_CHECK_RUNTIME(!impl_->destroyed, "the Buffer was destroyed");
  return impl_->options.num_nvl_bytes > 0 ? impl_->nvl->data() : nullptr;
}

void* Buffer::rdma_buffer() const {
  UCCL_EP_CHECK_RUNTIME(!impl_->destroyed, "the Buffer was destroyed");
  return impl_->rdma_buffer.data();
}

void Buffer::stream_wait(cudaStream_t waiter, cudaStream_t waitee) {
  UCCL_EP_CHECK_RUNTIME(!impl_->destroyed, "stream_wait: the Buffer was destroyed");
  if (waiter == waitee) return;
  runtime::DeviceGuard guard(impl_->options.device);
  UCCL_EP_CUDA_CHECK(cudaEventRecord(impl_->order_event, waitee));
  UCCL_EP_CUDA_CHECK(cudaStreamWaitEvent(waiter, impl_->order_event, 0));
}

void Buffer::stream_wait_event(cudaStream_t waiter, cudaEvent_t event) {
  UCCL_EP_CHECK_RUNTIME(!impl_->destroyed, "stream_wait_event: the Buffer was destroyed");
  if (event == nullptr) return;
  runtime::DeviceGuard guard(impl_->options.device);
  UCCL_EP_CUDA_CHECK(cudaStreamWaitEvent(waiter, event, 0));
}

}  // namespace uccl::ep
