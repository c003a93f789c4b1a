// The ipc transport: RDMA buffers shared through CUDA IPC, copy-engine writes, signals after event
// completion.
#include "transport/ipc/ipc_transport.h"

#include <cuda.h>  // types of cuMemGetAddressRange only; it is reached through the runtime
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "common/cuda_check.h"
#include "common/error.h"
#include "common/log.h"
#include "transport/factories.h"
#include "transport/wire.h"

namespace uccl::ep::transport {
namespace ipc {
namespace {

constexpr uint32_t kMagic = 0x49504555;  // "UEPI"
constexpr uint16_t kVersion = 2;

std::string read_host_id() {
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string boot;
  std::getline(f, boot);
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return str_cat(host, "/", boot);
}

// The start of the cudaMalloc allocation holding `ptr`, through the driver entry point (the
// runtime resolves it, so nothing links libcuda). IPC handles name whole allocations.
uint64_t allocation_base(const void* ptr) {
  using GetRange = CUresult (*)(CUdeviceptr*, size_t*, CUdeviceptr);
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult status{};
  UCCL_EP_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuMemGetAddressRange", &fn, 12000,
                                                      cudaEnableDefault, &status));
  UCCL_EP_CHECK_RUNTIME(fn != nullptr && status == cudaDriverEntryPointSuccess,
                        "ipc: the driver does not export cuMemGetAddressRange");
  CUdeviceptr base = 0;
  size_t size = 0;
  const CUresult rc =
      reinterpret_cast<GetRange>(fn)(&base, &size, reinterpret_cast<CUdeviceptr>(ptr));
  UCCL_EP_CHECK_RUNTIME(rc == CUDA_SUCCESS,
                        "ipc: cuMemGetAddressRange of the RDMA buffer failed "
                        "(error ",
                        static_cast<int>(rc), "): is it device memory from cudaMalloc?");
  return static_cast<uint64_t>(base);
}

}  // namespace

IpcTransport::IpcTransport(const TransportOptions& options) : options_(options) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();
    throw Error(ErrorKind::kRuntime,
                str_cat("ipc transport unavailable: no CUDA device visible (",
                        e == cudaSuccess ? "0 devices" : cudaGetErrorString(e), ")"));
  }
  if (options.cuda_device >= 0) {
    UCCL_EP_CHECK_VALUE(options.cuda_device < count, "ipc: cuda_device ", options.cuda_device,
                        " out of [0, ", count, ")");
    device_ = options.cuda_device;
  } else {
    UCCL_EP_CUDA_CHECK(cudaGetDevice(&device_));
  }
  host_id_ = read_host_id();
  static std::atomic<bool> logged{false};
  log_message(logged.exchange(true) ? LogLevel::kDebug : LogLevel::kInfo,
              str_cat("ipc transport: rank ", options.rank, " on CUDA device ", device_,
                      ": writes are copy-engine copies into peers' IPC-mapped buffers, signals "
                      "are applied after each copy's event completed"));
}

IpcTransport::~IpcTransport() {
  release();
}

void IpcTransport::release() noexcept {
  int cur = -1;
  if (cudaGetDevice(&cur) == cudaSuccess && cur != device_) cudaSetDevice(device_);
  for (Pipe& ln : pipes_) {
    // Copies into peers' memory must finish before their mappings go away.
    if (ln.stream) cudaStreamSynchronize(ln.stream);
    for (cudaEvent_t ev : ln.events) cudaEventDestroy(ev);
    if (ln.stream) cudaStreamDestroy(ln.stream);
  }
  pipes_.clear();
  for (Peer& p : peers_) {
    if (p.ipc_base) cudaIpcCloseMemHandle(p.ipc_base);
    if (p.shm_map) munmap(p.shm_map, p.shm_bytes);
    if (p.buffer_map) munmap(p.buffer_map, p.rdma_buffer_bytes);
  }
  peers_.clear();
  cudaGetLastError();
}

void IpcTransport::ensure_device() const {
  int cur = -1;
  if (cudaGetDevice(&cur) != cudaSuccess || cur != device_)
    UCCL_EP_CUDA_CHECK(cudaSetDevice(device_));
}

Capabilities IpcTransport::capabilities() const {
  return Capabilities{.name = "ipc",
                      .native_atomics = true,    // the initiator adds directly, no target software
                      .ordered_delivery = true,  // stream order + in-order completion per pipe
                      .device_memory = true,
                      .target_progress = false,
                      .immediate_bytes = 0,
                      .max_fused_signal_value = INT64_MAX,
                      .max_signal_slots = UINT32_MAX};
}

void IpcTransport::register_regions(const Region& rdma_buffer, const Region& signals) {
  UCCL_EP_CHECK_VALUE(!registered_, "ipc: register_regions() called twice");
  UCCL_EP_CHECK_VALUE(rdma_buffer.base && rdma_buffer.bytes > 0 &&
                          (rdma_buffer.device || !rdma_buffer.shared_name.empty()),
                      "ipc: the RDMA buffer must be non-empty device memory (cudaMalloc) or "
                      "host memory that peers can map (POSIX shared memory, Region::shared_name)");
  UCCL_EP_CHECK_VALUE(signals.base && !signals.device && signals.bytes >= 8 &&
                          signals.bytes % 8 == 0 &&
                          reinterpret_cast<uintptr_t>(signals.base) % 8 == 0,
                      "ipc: the signal region must be host memory (8-byte aligned int64 slots) "
                      "that peers can map: POSIX shared memory, see Region::shared_name");
  ensure_device();
  if (rdma_buffer.device) {
    const uint64_t base = allocation_base(rdma_buffer.base);
    rdma_buffer_offset_ = reinterpret_cast<uint64_t>(rdma_buffer.base) - base;
    UCCL_EP_CUDA_CHECK(cudaIpcGetMemHandle(&rdma_buffer_handle_, reinterpret_cast<void*>(base)));
  }
  rdma_buffer_ = rdma_buffer;
  signals_ = signals;
  registered_ = true;
}

std::vector<uint8_t> IpcTransport::local_address() const {
  UCCL_EP_CHECK_VALUE(registered_, "ipc: local_address() before register_regions()");
  ByteWriter w;
  w.u32(kMagic);
  w.u16(kVersion);
  w.u32(static_cast<uint32_t>(options_.rank));
  w.u32(static_cast<uint32_t>(options_.num_ranks));
  w.str(host_id_);
  w.u32(static_cast<uint32_t>(getpid()));
  w.bytes(&rdma_buffer_handle_, sizeof(rdma_buffer_handle_));
  w.u64(rdma_buffer_offset_);
  w.u64(rdma_buffer_.bytes);
  w.u64(reinterpret_cast<uintptr_t>(rdma_buffer_.base));
  w.u32(host_mode() ? 1 : 0);
  w.str(rdma_buffer_.shared_name);
  w.str(signals_.shared_name);
  w.u64(signals_.bytes);
  w.u64(reinterpret_cast<uintptr_t>(signals_.base));
  return w.take();
}

void IpcTransport::open_peer(int rank, const std::vector<uint8_t>& blob) {
  ByteReader in(blob, str_cat("ipc address of rank ", rank));
  in.header(kMagic, kVersion);
  const uint32_t r = in.u32(), n = in.u32();
  UCCL_EP_CHECK_VALUE(
      r == static_cast<uint32_t>(rank) && n == static_cast<uint32_t>(options_.num_ranks), in.what(),
      " says rank ", r, " of ", n);
  const std::string host = in.str(512);
  const uint32_t pid = in.u32();
  const std::vector<uint8_t> handle = in.bytes(sizeof(cudaIpcMemHandle_t));
  const uint64_t offset = in.u64(), rdma_buffer_bytes = in.u64(), rdma_buffer_base = in.u64();
  const bool peer_host_mode = in.u32() != 0;
  const std::string buffer_name = in.str(256);
  const std::string shm_name = in.str(256);
  const uint64_t sig_bytes = in.u64(), sig_base = in.u64();
  in.finish();
  if (rank == options_.rank) return;
  UCCL_EP_CHECK_RUNTIME(host == host_id_, "ipc: rank ", rank, " runs on host '", host, "', rank ",
                        options_.rank, " on '", host_id_,
                        "': the ipc transport needs every rank on one host (use libfabric)");
  UCCL_EP_CHECK_VALUE(handle.size() == sizeof(cudaIpcMemHandle_t), in.what(), ": IPC handle of ",
                      handle.size(), " bytes");
  UCCL_EP_CHECK_VALUE(peer_host_mode == host_mode(), "ipc: rank ", rank,
                      " keeps its RDMA buffer in ", peer_host_mode ? "host" : "device",
                      " memory, rank ", options_.rank, " in ", host_mode() ? "host" : "device",
                      " memory: every rank must use the same (UCCL_EP_IPC_MEMORY)");
  Peer& p = peers_[rank];
  p.rdma_buffer_bytes = rdma_buffer_bytes;
  p.signal_slots = sig_bytes / 8;
  if (host_mode() && pid != static_cast<uint32_t>(getpid())) {
    p.buffer_map = map_shared(buffer_name, rdma_buffer_bytes, rank, "RDMA buffer");
    p.rdma_buffer = static_cast<char*>(p.buffer_map);
    p.shm_map = map_shared(shm_name, sig_bytes, rank, "signal region");
    p.shm_bytes = sig_bytes;
    p.signals = static_cast<int64_t*>(p.shm_map);
    return;
  }
  if (pid == static_cast<uint32_t>(getpid())) {
    // Ranks in one process (threads): a process cannot open its own IPC handle; UVA pointers
    // are valid as they are.
    p.rdma_buffer = reinterpret_cast<char*>(rdma_buffer_base);
    p.signals = reinterpret_cast<int64_t*>(sig_base);
    if (!host_mode()) enable_peer_access(p.rdma_buffer, rank);
    return;
  }
  cudaIpcMemHandle_t h;
  std::memcpy(&h, handle.data(), sizeof(h));
  const cudaError_t e = cudaIpcOpenMemHandle(&p.ipc_base, h, cudaIpcMemLazyEnablePeerAccess);
  UCCL_EP_CHECK_RUNTIME(e == cudaSuccess, "ipc: rank ", options_.rank,
                        " cannot open the RDMA buffer of rank ", rank, ": ", cudaGetErrorString(e));
  p.rdma_buffer = static_cast<char*>(p.ipc_base) + offset;
  p.shm_map = map_shared(shm_name, sig_bytes, rank, "signal region");
  p.shm_bytes = sig_bytes;
  p.signals = static_cast<int64_t*>(p.shm_map);
}

void* IpcTransport::map_shared(const std::string& name, uint64_t bytes, int rank,
                               const char* what) const {
  UCCL_EP_CHECK_VALUE(!name.empty(), "ipc: rank ", rank, " is another process but its ", what,
                      " has no shared_name (allocate it with SharedMemory)");
  const int fd = shm_open(name.c_str(), O_RDWR, 0);
  UCCL_EP_CHECK_RUNTIME(fd >= 0, "ipc: shm_open('", name, "') of rank ", rank, "'s ", what,
                        " failed: ", std::strerror(errno));
  void* map = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int map_errno = errno;
  close(fd);
  UCCL_EP_CHECK_RUNTIME(map != MAP_FAILED, "ipc: mmap of rank ", rank, "'s ", what, " (", bytes,
                        " bytes) failed: ", std::strerror(map_errno));
  return map;
}

void IpcTransport::enable_peer_access(const void* peer_buffer, int rank) {
  // Without peer access a copy between two devices is staged by the driver, whose first use
  // allocates on the target device and so waits for a kernel spinning there on a signal of this
  // very copy. Direct peer copies have no such dependency.
  cudaPointerAttributes attr{};
  UCCL_EP_CUDA_CHECK(cudaPointerGetAttributes(&attr, peer_buffer));
  if (attr.type != cudaMemoryTypeDevice || attr.device == device_) return;
  int can = 0;
  UCCL_EP_CUDA_CHECK(cudaDeviceCanAccessPeer(&can, device_, attr.device));
  if (!can) {
    log_message(LogLevel::kWarn, str_cat("ipc transport: CUDA device ", device_,
                                         " cannot access device ", attr.device, " (rank ", rank,
                                         ") directly: copies are staged by the driver and slower"));
    return;
  }
  const cudaError_t e = cudaDeviceEnablePeerAccess(attr.device, 0);
  if (e == cudaErrorPeerAccessAlreadyEnabled) {
    cudaGetLastError();
    return;
  }
  UCCL_EP_CHECK_RUNTIME(e == cudaSuccess, "ipc: enabling peer access from device ", device_,
                        " to device ", attr.device, " (rank ", rank,
                        ") failed: ", cudaGetErrorString(e));
}

void IpcTransport::create_pipes() {
  const uint32_t per_pipe =
      std::max<uint32_t>(16, (options_.max_inflight + options_.num_pipes - 1) / options_.num_pipes);
  pipes_.resize(options_.num_pipes);
  for (Pipe& ln : pipes_) {
    UCCL_EP_CUDA_CHECK(cudaStreamCreateWithFlags(&ln.stream, cudaStreamNonBlocking));
    ln.ring.resize(per_pipe);
    ln.events.resize(per_pipe, nullptr);
    for (cudaEvent_t& ev : ln.events)
      UCCL_EP_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  }
}

void IpcTransport::warm_up_copies() {
  // The first copy of a kind may make the CUDA runtime load code (lazy loading) or allocate on a
  // device, which waits for running kernels; once the proxy runs, a kernel of this rank may be
  // spinning on the completion of that very copy. The runtime picks its copy code by size and
  // alignment, so every direction the transport copies in (peer -> local, local -> peer,
  // local -> local) runs here once per size class and alignment the traffic can have: 16 B to
  // 4 MiB, 128-byte aligned and 16 bytes off. Peer data is read and written back unchanged,
  // before any traffic.
  constexpr uint64_t kSizes[] = {16, 4096, 65536 + 16, uint64_t{1} << 20, uint64_t{4} << 20};
  constexpr uint64_t kOffsets[] = {0, 16};
  constexpr uint64_t kBounce = (uint64_t{4} << 20) + 256;
  char* bounce = nullptr;
  UCCL_EP_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&bounce), 2 * kBounce));
  const cudaStream_t s = pipes_.empty() ? nullptr : pipes_[0].stream;
  cudaError_t e = cudaSuccess;
  for (uint64_t size : kSizes) {
    for (uint64_t off : kOffsets) {
      if (e == cudaSuccess)
        e = cudaMemcpyAsync(bounce + kBounce + off, bounce + off, size, cudaMemcpyDeviceToDevice,
                            s);
      for (const Peer& p : peers_) {
        if (e != cudaSuccess || p.rdma_buffer == nullptr || p.rdma_buffer_bytes < off + size)
          continue;
        e = cudaMemcpyAsync(bounce + off, p.rdma_buffer + off, size, cudaMemcpyDeviceToDevice, s);
        if (e == cudaSuccess)
          e = cudaMemcpyAsync(p.rdma_buffer + off, bounce + off, size, cudaMemcpyDeviceToDevice, s);
      }
    }
  }
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);
  cudaFree(bounce);
  UCCL_EP_CHECK_RUNTIME(e == cudaSuccess, "ipc: rank ", options_.rank,
                        ": warm-up copies failed: ", cudaGetErrorString(e));
}

void IpcTransport::connect(const std::vector<std::vector<uint8_t>>& addresses) {
  UCCL_EP_CHECK_VALUE(registered_ && !connected_,
                      "ipc: connect() needs register_regions() first and runs once");
  UCCL_EP_CHECK_VALUE(static_cast<int>(addresses.size()) == options_.num_ranks,
                      "ipc: connect() got ", addresses.size(), " addresses for ",
                      options_.num_ranks, " ranks");
  ensure_device();
  peers_.assign(options_.num_ranks, Peer{});
  try {
    for (int r = 0; r < options_.num_ranks; ++r) open_peer(r, addresses[r]);
    create_pipes();
    if (!host_mode()) warm_up_copies();
  } catch (...) {
    release();
    throw;
  }
  connected_ = true;
}

void IpcTransport::check_post(int pipe, int peer, uint32_t slot, bool has_slot) const {
  UCCL_EP_CHECK_VALUE(connected_, "ipc: rank ", options_.rank, " posts before connect()");
  UCCL_EP_CHECK_VALUE(pipe >= 0 && pipe < options_.num_pipes, "ipc: pipe ", pipe, " out of [0, ",
                      options_.num_pipes, ")");
  UCCL_EP_CHECK_VALUE(peer >= 0 && peer < options_.num_ranks && peer != options_.rank, "ipc: peer ",
                      peer, " out of [0, ", options_.num_ranks,
                      ") or this rank: local moves bypass the transport");
  UCCL_EP_CHECK_VALUE(!has_slot || slot < peers_[peer].signal_slots, "ipc: signal slot ", slot,
                      " of peer ", peer, " out of range (", peers_[peer].signal_slots, " slots)");
}

PostStatus IpcTransport::enqueue(int pipe, const Pending& p, uint64_t local_offset,
                                 uint64_t remote_offset) {
  Pipe& ln = pipes_[pipe];
  if (ln.count == ln.ring.size() || inflight_ >= static_cast<uint64_t>(options_.max_inflight))
    return PostStatus::kRetry;
  ensure_device();
  if (p.bytes > 0) {
    const cudaError_t e =
        cudaMemcpyAsync(peers_[p.peer].rdma_buffer + remote_offset,
                        static_cast<const char*>(rdma_buffer_.base) + local_offset, p.bytes,
                        cudaMemcpyDeviceToDevice, ln.stream);
    UCCL_EP_CHECK_RUNTIME(e == cudaSuccess, "ipc: cudaMemcpyAsync of ", p.bytes,
                          " bytes from rank ", options_.rank, " to peer ", p.peer, " on pipe ",
                          pipe, " failed: ", cudaGetErrorString(e));
  }
  const uint32_t slot = (ln.head + ln.count) % ln.ring.size();
  // The event completes only after the copy above (stream order): the signal waits for it.
  const cudaError_t e = cudaEventRecord(ln.events[slot], ln.stream);
  UCCL_EP_CHECK_RUNTIME(e == cudaSuccess, "ipc: cudaEventRecord on pipe ", pipe,
                        " failed: ", cudaGetErrorString(e));
  ln.ring[slot] = p;
  ++ln.count;
  ++inflight_;
  return PostStatus::kPosted;
}

PostStatus IpcTransport::post_write(int pipe, int peer, uint64_t local_offset,
                                    uint64_t remote_offset, uint64_t bytes, const Signal* signal,
                                    uint64_t id) {
  check_post(pipe, peer, signal ? signal->slot : 0, signal != nullptr);
  UCCL_EP_CHECK_VALUE(
      local_offset <= rdma_buffer_.bytes && bytes <= rdma_buffer_.bytes - local_offset,
      "ipc: write from rank ", options_.rank, ": local range [", local_offset, ", +", bytes,
      ") exceeds the RDMA buffer of ", rdma_buffer_.bytes, " bytes");
  UCCL_EP_CHECK_VALUE(remote_offset <= peers_[peer].rdma_buffer_bytes &&
                          bytes <= peers_[peer].rdma_buffer_bytes - remote_offset,
                      "ipc: write to peer ", peer, ": remote range [", remote_offset, ", +", bytes,
                      ") exceeds its RDMA buffer of ", peers_[peer].rdma_buffer_bytes, " bytes");
  if (host_mode()) {
    // A CPU copy between the shared buffers: done, and its signal after it, on return.
    if (inflight_ >= static_cast<uint64_t>(options_.max_inflight)) return PostStatus::kRetry;
    std::memcpy(peers_[peer].rdma_buffer + remote_offset,
                static_cast<const char*>(rdma_buffer_.base) + local_offset, bytes);
    if (signal != nullptr)
      std::atomic_ref<int64_t>(peers_[peer].signals[signal->slot])
          .fetch_add(signal->value, std::memory_order_release);
    done_at_post_.push_back(id);
    ++inflight_;
    return PostStatus::kPosted;
  }
  return enqueue(pipe,
                 Pending{.id = id,
                         .peer = peer,
                         .has_signal = signal != nullptr,
                         .slot = signal ? signal->slot : 0,
                         .value = signal ? signal->value : 0,
                         .bytes = bytes},
                 local_offset, remote_offset);
}

PostStatus IpcTransport::post_atomic_add(int pipe, int peer, uint32_t slot, int64_t value,
                                         uint64_t id) {
  check_post(pipe, peer, slot, true);
  if (pipes_[pipe].count == 0) {
    // Every earlier write of the pipe has completed: the add needs no event behind them. (An
    // event recorded on the pipe's stream may share a hardware queue with a kernel that spins
    // until this very add lands, and would never complete.)
    if (inflight_ >= static_cast<uint64_t>(options_.max_inflight)) return PostStatus::kRetry;
    std::atomic_ref<int64_t>(peers_[peer].signals[slot])
        .fetch_add(value, std::memory_order_release);
    done_at_post_.push_back(id);
    ++inflight_;
    return PostStatus::kPosted;
  }
  return enqueue(pipe,
                 Pending{.id = id, .peer = peer, .has_signal = true, .slot = slot, .value = value},
                 0, 0);
}

int IpcTransport::poll(Completion* out, int max) {
  UCCL_EP_CHECK_VALUE(max >= 1, "ipc: poll(max=", max, ") needs max >= 1");
  int n = 0;
  size_t reported = 0;
  while (n < max && reported < done_at_post_.size()) {
    Completion& done = out[n++];
    done.id = done_at_post_[reported++];
    done.ok = true;
    done.error.clear();
    --inflight_;
  }
  done_at_post_.erase(done_at_post_.begin(), done_at_post_.begin() + reported);
  const uint32_t num = static_cast<uint32_t>(pipes_.size());
  for (uint32_t k = 0; k < num && n < max; ++k) {
    const uint32_t c = (next_pipe_ + k) % num;
    Pipe& ln = pipes_[c];
    while (n < max && ln.count > 0) {
      const Pending& p = ln.ring[ln.head];
      const cudaError_t e = cudaEventQuery(ln.events[ln.head]);
      if (e == cudaErrorNotReady) break;
      Completion& done = out[n++];
      done.id = p.id;
      done.ok = e == cudaSuccess;
      if (done.ok) {
        done.error.clear();
        if (p.has_signal) {
          // The copy is complete: publish the signal (release) in the peer's host-visible slot.
          std::atomic_ref<int64_t>(peers_[p.peer].signals[p.slot])
              .fetch_add(p.value, std::memory_order_release);
        }
      } else {
        done.error =
            str_cat("ipc: copy of ", p.bytes, " bytes (id ", p.id, ") from rank ", options_.rank,
                    " to peer ", p.peer, " on pipe ", c, " failed: ", cudaGetErrorString(e));
      }
      ln.head = (ln.head + 1) % ln.ring.size();
      --ln.count;
      --inflight_;
    }
  }
  if (num > 0) next_pipe_ = (next_pipe_ + 1) % num;
  return n;
}

}  // namespace ipc

std::unique_ptr<Transport> make_ipc_transport(const TransportOptions& options) {
  return std::make_unique<ipc::IpcTransport>(options);
}

}  // namespace uccl::ep::transport
