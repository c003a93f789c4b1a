// Scenarios of the command-path GPU test: GPU producers -> queues -> proxy -> ipc / libfabric /
// probe / fake transports, with checks at the target, back-pressure and deadlines.
#include "command_path_scenarios.h"

#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bootstrap/tcp_bootstrap.h"
#include "bootstrap/testing/child_process.h"
#include "command_path_kernels.cuh"
#include "common/cuda_check.h"
#include "common/error.h"
#include "common/testing/cuda_buffers.h"
#include "proxy/session.h"
#include "proxy/testing/fake_transport_factory.h"
#include "proxy/testing/probe_transport.h"
#include "runtime/error_report.h"
#include "transport/fake/fake_transport.h"

namespace uccl::ep::gpu_test {
namespace {

using uccl::ep::testing::DeviceArray;
using uccl::ep::testing::Mapped;

using Clock = std::chrono::steady_clock;
using proxy::ProxySession;
using proxy::SessionOptions;

// A kernel's error record, abort flag and failure counter.
struct Diag {
  Mapped<protocol::HostErrorRecord> record{1};
  DeviceArray<uint32_t> flags{2};  // [0] abort flag, [1] failed producers
  device::DeviceDiag make(double secs) const {
    return {record.dev, flags.ptr, static_cast<uint64_t>(secs * 1e9), 0};
  }
  uint32_t* failures() const { return flags.ptr + 1; }
};

bool wait_stream(cudaStream_t s, double secs) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(secs);
  for (;;) {
    const cudaError_t e = cudaStreamQuery(s);
    if (e == cudaSuccess) return true;
    if (e != cudaErrorNotReady) UCCL_EP_CUDA_CHECK(e);
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// A stream on `device`, destroyed with the object.
struct Stream {
  cudaStream_t s = nullptr;
  explicit Stream(int device) {
    UCCL_EP_CUDA_CHECK(cudaSetDevice(device));
    UCCL_EP_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  }
  ~Stream() { cudaStreamDestroy(s); }
};

// Device copies of a session's queue handles (on the current device).
std::unique_ptr<DeviceArray<queue::QueueDeviceHandle>> upload_handles(const ProxySession& s) {
  const std::vector<queue::QueueDeviceHandle> h = s.queues().device_handles();
  auto out = std::make_unique<DeviceArray<queue::QueueDeviceHandle>>(h.size());
  UCCL_EP_CUDA_CHECK(
      cudaMemcpy(out->ptr, h.data(), h.size() * sizeof(h[0]), cudaMemcpyHostToDevice));
  return out;
}

SessionOptions session_options(int rank, const std::string& transport, uint32_t queues,
                               const transport::Region& rdma_buffer, double timeout) {
  SessionOptions s;
  s.proxy = proxy::proxy_options_from_env(read_env_settings());
  s.proxy.rank = rank;
  s.proxy.num_ranks = 2;
  s.proxy.local_rank = rank;
  s.proxy.timeout_secs = timeout;
  s.transport = transport;
  s.num_queues = queues;
  s.queue_capacity = 256;
  s.rdma_buffer = rdma_buffer;
  return s;
}

// Every byte of writes [0, n) in `target` and every signal slot, on the host.
std::string verify_target(const uint8_t* target, const int64_t* signals, uint32_t n) {
  for (uint32_t k = 0; k < n; ++k) {
    const uint8_t* p = target + uint64_t{k} * kSlotBytes;
    for (uint32_t w = 0; w < write_bytes(k) / 4; ++w) {
      uint32_t v;
      std::memcpy(&v, p + 4 * w, 4);
      if (v != pattern_word(k, w))
        return str_cat("write ", k, ": word ", w, " is ", v, ", expected ", pattern_word(k, w));
    }
    if (write_signalled(k)) {
      const int64_t s = std::atomic_ref<int64_t>(const_cast<int64_t&>(signals[k / 4]))
                            .load(std::memory_order_acquire);
      if (s != write_value(k))
        return str_cat("signal slot ", k / 4, " = ", s, ", expected ", write_value(k),
                       " (lost or applied twice)");
    }
  }
  return "";
}

std::string kernel_failures(const Diag& d, double secs) {
  const std::vector<uint32_t> f = d.flags.read();
  if (f[1] == 0 && d.record.host->flag == 0) return "";
  return str_cat(
      f[1], " producer(s) failed",
      d.record.host->flag ? "; " + runtime::describe_error(*d.record.host, secs) : std::string());
}

// Loads every kernel of this test on `device` now. With CUDA's lazy loading (the default) the
// first launch of a kernel loads its module, which waits for the kernels running on the device;
// launching the FENCE kernel behind spinning writers would then stall this thread and, through
// the runtime's locks, the proxy threads the writers wait for.
void preload_kernels(int device) {
  UCCL_EP_CUDA_CHECK(cudaSetDevice(device));
  cudaFuncAttributes attr{};
  UCCL_EP_CUDA_CHECK(cudaFuncGetAttributes(&attr, write_kernel));
  UCCL_EP_CUDA_CHECK(cudaFuncGetAttributes(&attr, fence_kernel));
  UCCL_EP_CUDA_CHECK(cudaFuncGetAttributes(&attr, lane_kernel));
  UCCL_EP_CUDA_CHECK(cudaFuncGetAttributes(&attr, check_kernel));
}

// Launches the writers (and the FENCE kernel when several warps share a queue) on `s`.
void launch_writers(const WriteArgs& a, cudaStream_t s, const Diag& diag, double secs) {
  const uint32_t warps = a.num_queues * a.warps_per_queue;
  write_kernel<<<(warps * 32 + kThreadsPerBlock - 1) / kThreadsPerBlock, kThreadsPerBlock, 0, s>>>(
      a);
  UCCL_EP_CHECK_LAUNCH("write_kernel");
  // After the writers (also after LaneProducer::finish): a standard push continues the queues.
  if (!a.fence_each_round || a.lane_producers) {
    const uint32_t sequence = a.lane_producers ? a.rounds + 1 : 1;  // after the in-kernel ones
    fence_kernel<<<1, 128, 0, s>>>(a.queues, a.num_queues, sequence, diag.make(secs),
                                   diag.failures());
    UCCL_EP_CHECK_LAUNCH("fence_kernel");
  }
}

}  // namespace

// ---- ipc: GPU 0 -> GPU 1 in this process

std::string run_ipc(const TestEnv& env, uint32_t warps_per_queue, bool lane_producers) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count < 2) throw Skip{"needs 2 GPUs"};
  preload_kernels(1);
  preload_kernels(0);
  const uint32_t queues = 8, rounds = (warps_per_queue == 1 ? 32u : 16u) / (env.quick ? 4 : 1);
  const uint32_t n = queues * warps_per_queue * rounds * 32;
  const uint64_t bytes = uint64_t{n} * kSlotBytes;
  UCCL_EP_CUDA_CHECK(cudaSetDevice(1));
  DeviceArray<uint8_t> dst(bytes);
  DeviceArray<uint32_t> counters(4);
  UCCL_EP_CUDA_CHECK(cudaSetDevice(0));
  DeviceArray<uint8_t> src(bytes);
  SessionOptions o0 =
      session_options(0, "ipc", queues, {src.ptr, bytes, true, ""}, env.timeout_secs);
  SessionOptions o1 =
      session_options(1, "ipc", queues, {dst.ptr, bytes, true, ""}, env.timeout_secs);
  o0.cuda_device = 0;
  o1.cuda_device = 1;
  ProxySession s0(o0, queue::make_cuda_queue_allocator(0));
  ProxySession s1(o1, queue::make_host_queue_allocator());
  const std::vector<std::vector<uint8_t>> addresses{s0.local_address(), s1.local_address()};
  s0.connect(addresses);
  s1.connect(addresses);
  s0.start();
  s1.start();
  // The target's kernel reads its signal region (host memory) through a device alias.
  UCCL_EP_CUDA_CHECK(cudaSetDevice(1));
  const size_t sig_bytes = size_t{s1.num_signal_slots()} * 8;
  UCCL_EP_CUDA_CHECK(
      cudaHostRegister(s1.signals(), sig_bytes, cudaHostRegisterMapped | cudaHostRegisterPortable));
  std::string failure;
  try {
    int64_t* sig_dev = nullptr;
    UCCL_EP_CUDA_CHECK(
        cudaHostGetDevicePointer(reinterpret_cast<void**>(&sig_dev), s1.signals(), 0));
    Stream target(1);
    const CheckArgs check{sig_dev, dst.ptr, n / 4, static_cast<uint64_t>(env.timeout_secs * 1e9),
                          counters.ptr};
    check_kernel<<<(n / 4 + 127) / 128, 128, 0, target.s>>>(check);
    UCCL_EP_CHECK_LAUNCH("check_kernel");
    Stream producer(0);
    Diag diag;
    auto handles = upload_handles(s0);
    const WriteArgs a{handles->ptr,    queues,
                      warps_per_queue, rounds,
                      src.ptr,         warps_per_queue == 1,
                      false,           diag.make(env.timeout_secs),
                      diag.failures(), lane_producers && warps_per_queue == 1};
    launch_writers(a, producer.s, diag, env.timeout_secs);
    if (!wait_stream(producer.s, env.timeout_secs + 30)) failure = "the producers did not finish";
    if (failure.empty()) failure = kernel_failures(diag, env.timeout_secs);
    if (!wait_stream(target.s, env.timeout_secs + 30)) failure = "the target checker hangs";
    const std::vector<uint32_t> c = counters.read();
    if (failure.empty() && (c[0] != n / 4 || c[1] != 0 || c[2] != 0 || c[3] != 0))
      failure = str_cat("target checker: ", c[0], " of ", n / 4, " signals seen, ", c[1],
                        " wrong values, ", c[2], " signals visible before their data, ", c[3],
                        " timeouts");
    std::vector<uint8_t> host(bytes);
    UCCL_EP_CUDA_CHECK(cudaMemcpy(host.data(), dst.ptr, bytes, cudaMemcpyDeviceToHost));
    if (failure.empty()) failure = verify_target(host.data(), s1.signals(), n);
    if (failure.empty()) s0.check();
  } catch (const std::exception& e) {
    failure = e.what();
  }
  cudaSetDevice(1);
  cudaHostUnregister(s1.signals());
  const proxy::StopResult r0 = s0.stop(), r1 = s1.stop();
  if (failure.empty() && r0.status != proxy::StopStatus::kDrained) failure = r0.message;
  if (failure.empty() && r1.status != proxy::StopStatus::kDrained) failure = r1.message;
  return failure;
}

// ---- libfabric tcp;ofi_rxm between processes, host-pinned buffers

namespace {
constexpr const char* kProvider = "tcp;ofi_rxm";
constexpr uint32_t kFabricQueues = 8, kFabricWarps = 2, kFabricRounds = 8;
constexpr uint32_t kFabricWrites = kFabricQueues * kFabricWarps * kFabricRounds * 32;
constexpr double kFabricTimeout = 60;

std::unique_ptr<bootstrap::TcpBootstrap> open_boot(int rank, uint16_t port,
                                                   bootstrap::TcpListener listener) {
  return std::make_unique<bootstrap::TcpBootstrap>(
      bootstrap::TcpBootstrapOptions{
          .rank = rank, .num_ranks = 2, .port = port, .timeout_secs = kFabricTimeout},
      std::move(listener));
}

SessionOptions fabric_options(int rank, const transport::Region& rdma_buffer) {
  SessionOptions s = session_options(rank, "libfabric", kFabricQueues, rdma_buffer, kFabricTimeout);
  s.fi_provider = kProvider;
  return s;
}
}  // namespace

std::string run_libfabric(const TestEnv& env) {
  try {  // through the registry: links with the "built without libfabric" stub too
    transport::make_transport("libfabric", transport::TransportOptions{.provider = kProvider});
  } catch (const Error& e) {
    throw Skip{str_cat(kProvider, " is not available: ", e.what())};
  }
  bootstrap::TcpListener listener = bootstrap::TcpListener::bind("127.0.0.1", 0);
  const uint16_t port = listener.port();
  auto child =
      testing::ChildProcess::spawn({"--libfabric-child", "--port=" + std::to_string(port)});
  std::string failure;
  try {
    UCCL_EP_CUDA_CHECK(cudaSetDevice(0));
    const uint64_t bytes = uint64_t{kFabricWrites} * kSlotBytes;
    Mapped<uint8_t> src(bytes);  // host-pinned RDMA buffer; the kernel fills it through PCIe
    auto boot = open_boot(0, port, std::move(listener));
    ProxySession s0(fabric_options(0, {src.host, bytes, false, ""}),
                    queue::make_cuda_queue_allocator(0));
    s0.connect(*boot);
    s0.start();
    Stream producer(0);
    Diag diag;
    auto handles = upload_handles(s0);
    const WriteArgs a{handles->ptr,   kFabricQueues, kFabricWarps, kFabricRounds,
                      src.dev,        false,         false,        diag.make(kFabricTimeout),
                      diag.failures()};
    launch_writers(a, producer.s, diag, kFabricTimeout);
    if (!wait_stream(producer.s, kFabricTimeout + 30)) failure = "the producers did not finish";
    if (failure.empty()) failure = kernel_failures(diag, kFabricTimeout);
    if (failure.empty()) s0.check();
    boot->barrier();  // (1) every FENCE completed: everything landed at rank 1
    boot->barrier();  // (2) rank 1 checked it; no rank stops while the other needs progress
    const proxy::StopResult r = s0.stop();
    if (failure.empty() && r.status != proxy::StopStatus::kDrained) failure = r.message;
  } catch (const std::exception& e) {
    if (failure.empty()) failure = str_cat("rank 0: ", e.what());
  }
  const testing::ChildExit exit = child.wait(kFabricTimeout * 2);
  if (failure.empty() && !exit.ok()) failure = str_cat("rank 1 (child): ", exit.describe());
  return failure;
}

int run_libfabric_child(uint16_t port) {
  try {
    const uint64_t bytes = uint64_t{kFabricWrites} * kSlotBytes;
    std::vector<uint8_t> rdma_buffer(bytes);
    auto boot = open_boot(1, port, {});
    ProxySession s1(fabric_options(1, {rdma_buffer.data(), bytes, false, ""}),
                    queue::make_host_queue_allocator());
    s1.connect(*boot);
    s1.start();
    boot->barrier();  // (1) rank 0's fences completed: every write was delivered here
    // A fused signal is applied by this rank's proxy when it polls the remote CQ data, which
    // may be just after rank 0 saw the completion: wait for them (with a deadline).
    const auto deadline = Clock::now() + std::chrono::duration<double>(kFabricTimeout);
    for (uint32_t k = 0; k < kFabricWrites; k += 4) {
      while (std::atomic_ref<int64_t>(s1.signals()[k / 4]).load(std::memory_order_acquire) == 0) {
        s1.check();
        UCCL_EP_CHECK(Clock::now() < deadline, ErrorKind::kTimeout, "rank 1: signal slot ", k / 4,
                      " of write ", k, " never arrived");
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
    }
    const std::string bad = verify_target(rdma_buffer.data(), s1.signals(), kFabricWrites);
    s1.check();
    boot->barrier();  // (2)
    const proxy::StopResult r = s1.stop();
    UCCL_EP_CHECK_RUNTIME(bad.empty(), "rank 1: ", bad);
    UCCL_EP_CHECK_RUNTIME(r.status == proxy::StopStatus::kDrained, r.message);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "libfabric child: %s\n", e.what());
    return 1;
  }
}

// ---- Back-pressure and deadlines (one GPU)

namespace {
// A probe session for rank 0 (CUDA queues) and its peer (never started).
struct ProbePair {
  std::vector<uint8_t> rdma_buffer = std::vector<uint8_t>(4096);
  std::shared_ptr<proxy::testing::ProbeRecord> record =
      std::make_shared<proxy::testing::ProbeRecord>(0);
  std::unique_ptr<ProxySession> s0, s1;
  ProbePair(uint32_t queues, uint32_t capacity, double timeout) {
    for (int rank = 0; rank < 2; ++rank) {
      SessionOptions o = session_options(
          rank, "probe", queues, {rdma_buffer.data(), rdma_buffer.size(), false, ""}, timeout);
      o.proxy.num_threads = 1;
      o.queue_capacity = capacity;
      auto rec = rank == 0 ? record : std::make_shared<proxy::testing::ProbeRecord>(0);
      o.make_transport = [rec](int, const std::string&, const transport::TransportOptions& t) {
        return std::make_unique<proxy::testing::ProbeTransport>(t, rec);
      };
      (rank == 0 ? s0 : s1) = std::make_unique<ProxySession>(
          o, rank == 0 ? queue::make_cuda_queue_allocator(0) : queue::make_host_queue_allocator());
    }
    s0->connect({s0->local_address(), s1->local_address()});
    s0->start();
  }
};
}  // namespace

std::string run_backpressure(const TestEnv& env) {
  preload_kernels(0);  // sets device 0
  constexpr uint32_t kQueues = 2, kCapacity = 64, kWarps = 2, kRounds = 32;
  constexpr uint64_t kCommands = uint64_t{kQueues} * kWarps * kRounds * 32;
  ProbePair p(kQueues, kCapacity, env.timeout_secs);
  p.s0->proxy()->pause();
  Stream producer(0);
  Diag diag;
  auto handles = upload_handles(*p.s0);
  const WriteArgs a{handles->ptr,   kQueues, kWarps, kRounds,
                    nullptr,        false,   true,   diag.make(env.timeout_secs),
                    diag.failures()};
  write_kernel<<<(kQueues * kWarps * 32 + kThreadsPerBlock - 1) / kThreadsPerBlock,
                 kThreadsPerBlock, 0, producer.s>>>(a);
  UCCL_EP_CHECK_LAUNCH("write_kernel");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::string failure;
  if (cudaStreamQuery(producer.s) != cudaErrorNotReady)
    failure = "the producers finished while the proxy was paused (slots overwritten?)";
  if (failure.empty() && p.s0->proxy()->total_stats().commands != 0)
    failure = "the paused proxy executed commands";
  for (uint32_t q = 0; q < kQueues && failure.empty(); ++q) {
    queue::Consumer probe(p.s0->queues().host_view(q));  // read-only look while paused
    std::vector<protocol::Command> out(kCapacity);
    const int n = probe.peek(out.data(), static_cast<int>(kCapacity));
    if (n != static_cast<int>(kCapacity))
      failure = str_cat("queue ", q, " holds ", n, " commands while paused, expected ", kCapacity);
  }
  p.s0->proxy()->resume();
  if (!wait_stream(producer.s, env.timeout_secs + 30)) return "the producers did not finish";
  if (failure.empty()) failure = kernel_failures(diag, env.timeout_secs);
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (p.record->executed.load() < kCommands && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const proxy::StopResult r = p.s0->stop();
  const uint64_t sum = p.record->sequence_sum;
  if (failure.empty() &&
      (p.record->executed.load() != kCommands || sum != kCommands * (kCommands + 1) / 2))
    failure = str_cat(p.record->executed.load(), " of ", kCommands,
                      " commands executed after resume (sequence sum ", sum, ", expected ",
                      kCommands * (kCommands + 1) / 2, "): lost or duplicated");
  if (failure.empty() && r.status != proxy::StopStatus::kDrained) failure = r.message;
  return failure;
}

std::string run_proxy_deadline(const TestEnv& env) {
  preload_kernels(0);  // sets device 0
  constexpr double kProxyTimeout = 2;
  // Rank 0's sixth operation is dropped: it never completes.
  auto fabric = transport::fake::shared_fabric("gpu-deadline", 0, 2);
  fabric->set_policy([](const transport::fake::FakeOpInfo& op) {
    using Kind = transport::fake::FakeAction::Kind;
    return transport::fake::FakeAction{op.rank == 0 && op.index == 5 ? Kind::kDrop : Kind::kDeliver,
                                       0};
  });
  std::vector<uint8_t> d0(1 << 20), d1(1 << 20);
  std::unique_ptr<ProxySession> s[2];
  for (int rank = 0; rank < 2; ++rank) {
    std::vector<uint8_t>& d = rank == 0 ? d0 : d1;
    SessionOptions o =
        session_options(rank, "fake", 1, {d.data(), d.size(), false, ""}, kProxyTimeout);
    o.proxy.num_threads = 1;
    o.make_transport = proxy::testing::fake_transport_factory("gpu-deadline");
    s[rank] = std::make_unique<ProxySession>(
        o, rank == 0 ? queue::make_cuda_queue_allocator(0) : queue::make_host_queue_allocator());
  }
  for (auto& x : s) x->connect({s[0]->local_address(), s[1]->local_address()});
  for (auto& x : s) x->start();
  Stream producer(0);
  Diag diag;  // the device deadline is longer: the proxy's error must stop the kernel first
  lane_kernel<<<1, 32, 0, producer.s>>>(s[0]->queues().device_handle(0), 10, true, true,
                                        diag.make(env.timeout_secs), diag.failures());
  UCCL_EP_CHECK_LAUNCH("lane_kernel");
  if (!wait_stream(producer.s, env.timeout_secs + 30)) return "the kernel did not stop";
  const std::vector<uint32_t> f = diag.flags.read();
  // The kernel records the proxy's error (site kProxyError), not a timeout of its own.
  const int site = diag.record.host->site;
  if (f[1] != 1 || f[0] != 1 || diag.record.host->flag != 1 ||
      site != static_cast<int>(protocol::WaitSite::kProxyError))
    return str_cat("kernel: ", f[1], " failure(s), abort flag ", f[0], ", record ",
                   diag.record.host->flag, " at site ", site, " (want 1, 1, 1 at site ",
                   static_cast<int>(protocol::WaitSite::kProxyError),
                   ": stopped by the proxy's error)");
  std::string message;
  try {
    s[0]->check();
    return "the proxy recorded no error";
  } catch (const Error& e) {
    message = e.what();
  }
  std::printf("  proxy error: %s\n", message.c_str());
  for (const char* part : {"rank 0", "queue 0", "ticket 5", "WRITE", "peer 1", "proxy timeout",
                           "in flight", "posted 10", "completed 9"})
    if (message.find(part) == std::string::npos)
      return str_cat("'", part, "' missing in: ", message);
  return "";
}

std::string run_device_deadline(const TestEnv& env) {
  preload_kernels(0);  // sets device 0
  constexpr uint32_t kCapacity = 16;
  constexpr double kDeviceTimeout = 1;
  ProbePair p(1, kCapacity, env.timeout_secs);
  p.s0->proxy()->pause();
  Stream producer(0);
  Diag diag;
  lane_kernel<<<1, 32, 0, producer.s>>>(p.s0->queues().device_handle(0), kCapacity + 1, false,
                                        false, diag.make(kDeviceTimeout), diag.failures());
  UCCL_EP_CHECK_LAUNCH("lane_kernel");
  if (!wait_stream(producer.s, 30)) return "the push did not stop at its deadline";
  p.s0->stop(proxy::StopMode::kAbandon);
  const protocol::HostErrorRecord r = *diag.record.host;
  if (diag.flags.read()[1] != 1 || r.flag != 1 ||
      r.site != static_cast<int32_t>(protocol::WaitSite::kQueueFull) || r.queue != 0 ||
      r.rank != 0 || r.expected != 1 || r.observed != 0)
    return str_cat("error record: flag ", r.flag, " site ", r.site, " rank ", r.rank, " queue ",
                   r.queue, " expected ", r.expected, " observed ", r.observed,
                   " (want 1, kQueueFull, 0, 0, 1, 0)");
  const std::string message = runtime::describe_error(r, kDeviceTimeout);
  std::printf("  device deadline: %s\n", message.c_str());
  for (const char* part : {"rank 0", "command queue 0", "expected 1", "observed 0"})
    if (message.find(part) == std::string::npos)
      return str_cat("'", part, "' missing in: ", message);
  return "";
}

}  // namespace uccl::ep::gpu_test
