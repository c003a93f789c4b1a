// GPU benchmark of the command path on one GPU: a kernel pushes WRITE commands from many warps
// into Q queues; the CPU proxy (1-4 threads) executes them through a null-like transport that
// checks every command and samples latency. Reports commands/s per GPU and push->execution
// latency p50/p99, loaded (full rate) and unloaded (one push in flight at a time, with
// queue::push and with queue::LaneProducer).
//
//   uccl_ep_proxy_gpu_bench [--device D] [--queues Q] [--warps-per-queue W] [--capacity N]
//                           [--proxy-threads 1,2,3,4] [--commands N] [--timeout-secs S]
//                           [--transport probe|null] [--quick] [--json PATH]
//
// --transport probe (default): the null transport plus a check of every command (count and
// sequence sum) and latency samples; null: the registry's null transport, counts only (no
// latency figures). Latency compares the GPU stamp of a push with the host clock when the
// proxy executes it; the offset between the clocks comes from ping calibrations before and
// after each run (clock_sync.cuh), interpolated. The unloaded rows also give the GPU time of
// one push (one clock, no offset).
//
// Targets (the issue's): >= 25 M commands/s per GPU with at most 4 proxy threads, unloaded
// p50 <= 2 us. The summary says whether they were met; the exit status only reflects checks
// (every command executed once, no device or proxy error): 0 ok, 1 failure, 2 bad flags,
// 77 no CUDA device.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "clock_sync.cuh"
#include "common/cuda_check.h"
#include "common/error.h"
#include "common/testing/cuda_buffers.h"
#include "device/ptx.cuh"
#include "protocol/command.h"
#include "proxy/session.h"
#include "proxy/testing/probe_transport.h"
#include "queue/producer.cuh"
#include "runtime/error_report.h"

namespace {

using uccl::ep::testing::DeviceArray;
using uccl::ep::testing::Mapped;

namespace proxy = uccl::ep::proxy;
namespace queue = uccl::ep::queue;
namespace protocol = uccl::ep::protocol;
namespace device = uccl::ep::device;
namespace probe = uccl::ep::proxy::testing;
using uccl::ep::str_cat;
using Clock = std::chrono::steady_clock;

constexpr int kThreadsPerBlock = 128;
constexpr double kTargetCommandsPerSec = 25e6;
constexpr double kTargetP50Ns = 2000;

// ---- Device side

// loaded: every warp pushes with push_warp, full speed. unloaded: lane 0 of warp q pushes into
// queue q (queue::push: ticket atomic); unl_lane: the same with a queue::LaneProducer (no
// atomic). Unloaded pushes follow one schedule over all queues, interval_ns apart, so two are
// never in flight at once (concurrent system-scope fences slow each other down:
// docs/command_path.md, section 5).
enum class Scenario { kLoaded, kUnloaded, kUnloadedLane };
const char* scenario_name(Scenario s) {
  return s == Scenario::kLoaded ? "loaded" : s == Scenario::kUnloaded ? "unloaded" : "unl_lane";
}

struct PushArgs {
  const queue::QueueDeviceHandle* queues;  // [num_queues], device memory
  uint32_t num_queues, warps_per_queue;
  uint32_t rounds;  // loaded: push_warp rounds (32 commands each); unloaded: commands per queue
  Scenario scenario;
  uint64_t interval_ns;
  device::DeviceDiag diag;
  uint32_t* failures;
  uint64_t* push_ns;     // unloaded: [rounds * num_queues] GPU time of each push
  uint64_t* start_time;  // unloaded: the schedule's start (globaltimer), set by warp 0
};

// Unloaded: push k of queue q (lane 0 of warp q) is due at start + (k * Q + q) * interval_ns.
template <bool kLaneProducer>
__device__ void push_scheduled(const PushArgs& a, uint32_t q) {
  if (q == 0) device::st_release_gpu(a.start_time, device::global_timer_ns() + 200000);
  // Warp 0 may sit in a block not yet resident: give up (as a failure) after the deadline.
  uint64_t start = 0;
  const uint64_t waiting_since = device::global_timer_ns();
  while ((start = device::ld_acquire_gpu(a.start_time)) == 0) {
    if (device::global_timer_ns() - waiting_since > a.diag.timeout_ns) {
      atomicAdd(a.failures, 1);
      return;
    }
  }
  [[maybe_unused]] queue::LaneProducer producer;
  if constexpr (kLaneProducer) producer = queue::LaneProducer(a.queues[q]);
  bool ok = true;
  for (uint32_t k = 0; k < a.rounds && ok; ++k) {
    const uint32_t i = k * a.num_queues + q;  // the global push index (and sequence)
    const uint64_t due = start + uint64_t{i} * a.interval_ns;
    while (device::global_timer_ns() < due) {
    }
    const uint64_t stamp = device::global_timer_ns();
    const protocol::Command c = probe::stamp_write(1, i, stamp);
    if constexpr (kLaneProducer)
      ok = producer.push(c, a.diag);
    else
      ok = queue::push(a.queues[q], c, a.diag);
    a.push_ns[i] = device::global_timer_ns() - stamp;
  }
  if constexpr (kLaneProducer) producer.finish();
  if (!ok) atomicAdd(a.failures, 1);
}

// Warp w pushes into queue w % num_queues. Sequence numbers are unique over the launch.
__global__ void __launch_bounds__(kThreadsPerBlock) push_kernel(PushArgs a) {
  const uint32_t warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
  const uint32_t lane = threadIdx.x % 32;
  if (a.scenario != Scenario::kLoaded) {
    if (lane != 0 || warp >= a.num_queues) return;
    if (a.scenario == Scenario::kUnloadedLane)
      push_scheduled<true>(a, warp);
    else
      push_scheduled<false>(a, warp);
    return;
  }
  if (warp >= a.num_queues * a.warps_per_queue) return;
  const queue::QueueDeviceHandle q = a.queues[warp % a.num_queues];
  for (uint32_t r = 0; r < a.rounds; ++r) {
    const uint32_t seq = (warp * a.rounds + r) * 32 + lane;
    if (!queue::push_warp(q, probe::stamp_write(1, seq, device::global_timer_ns()), true, a.diag)) {
      if (lane == 0) atomicAdd(a.failures, 1);
      return;
    }
  }
}

// ---- Host side

struct Flags {
  int device = 0;
  uint32_t queues = 16, warps_per_queue = 8, capacity = 4096;
  std::vector<int> proxy_threads{1, 2, 3, 4};
  uint64_t commands = 16u << 20;  // per throughput run
  double timeout_secs = 20;
  bool quick = false;
  std::string transport = "probe";  // probe: null + per-command checks and latency; or null
  std::string json;
};

struct Result {
  int threads = 0;
  std::string scenario;
  uint64_t commands = 0;
  double seconds = 0, commands_per_s = 0, p50_ns = 0, p99_ns = 0;
  double min_ns = 0;          // < 0: the clock calibration is off by at least that much
  double push_p50_ns = 0;     // unloaded: GPU time of one push (stamp to return), one clock
  uint64_t clock_rtt_ns = 0;  // calibrations around this run: offset known to +- rtt / 2
  double drift_ns_per_s = 0;  // how far the clock offset moved during the run
  std::string cpus, failure;
};

// Session options of rank `rank` (0: this GPU's queues and the probe records; 1: a CPU-only
// peer that only provides an address).
proxy::SessionOptions probe_options(const Flags& fl, int rank, int threads, const char* bus,
                                    std::vector<uint8_t>& rdma_buffer,
                                    const std::vector<std::shared_ptr<probe::ProbeRecord>>& recs) {
  proxy::SessionOptions s;
  s.proxy = proxy::proxy_options_from_env(uccl::ep::read_env_settings());
  s.proxy.rank = rank;
  s.proxy.num_ranks = 2;
  s.proxy.local_rank = fl.device;
  s.proxy.num_threads = threads;
  s.proxy.low_latency_mode = true;
  s.proxy.timeout_secs = fl.timeout_secs;
  s.proxy.gpu_pci_bus_id = bus;
  s.proxy.pin_threads = s.proxy.pin_threads && rank == 0;
  s.transport = fl.transport;
  s.num_queues = fl.queues;
  s.queue_capacity = fl.capacity;
  s.rdma_buffer = uccl::ep::transport::Region{rdma_buffer.data(), rdma_buffer.size(), false, ""};
  if (fl.transport == "probe") {
    s.make_transport = [recs, rank](int t, const std::string&,
                                    const uccl::ep::transport::TransportOptions& o) {
      return std::make_unique<probe::ProbeTransport>(
          o, rank == 0 ? recs[t] : std::make_shared<probe::ProbeRecord>(0));
    };
  }
  return s;
}

// The kernel's error record and flags ([0] abort flag, [1] failed producers).
struct KernelDiag {
  Mapped<protocol::HostErrorRecord> record{1};
  DeviceArray<uint32_t> flags{2};
};

// Fills r's rate, latency and failure after a run.
void summarize(Result& r, const Flags& fl, bool paced, uint64_t expected,
               const std::vector<std::shared_ptr<probe::ProbeRecord>>& records,
               const uccl::ep::bench::ClockModel& clock, cudaError_t sync, const KernelDiag& diag,
               const proxy::Proxy& proxy, const proxy::StopResult& stop) {
  uint64_t sum = 0;
  std::vector<int64_t> latencies;
  for (const auto& rec : records) {
    r.commands += rec->executed.load();
    sum += rec->sequence_sum;
    const std::vector<int64_t> l = uccl::ep::bench::latencies(rec->samples, clock);
    latencies.insert(latencies.end(), l.begin(), l.end());
  }
  r.clock_rtt_ns = 2 * clock.half_rtt_ns();
  r.drift_ns_per_s = clock.drift_ns_per_s();
  if (fl.transport == "null") {  // no per-command record: count what the proxy completed
    r.commands = proxy.total_stats().completed;
    sum = expected * (expected + 1) / 2;
  }
  r.commands_per_s = paced ? 0 : static_cast<double>(r.commands) / r.seconds;
  r.p50_ns = uccl::ep::testing::percentile(latencies, 0.5);
  r.p99_ns = uccl::ep::testing::percentile(latencies, 0.99);
  r.min_ns = uccl::ep::testing::percentile(latencies, 0.0);
  if (sync != cudaSuccess)
    r.failure = str_cat("kernel: ", cudaGetErrorString(sync));
  else if (diag.flags.get(1) != 0 || diag.record.host->flag != 0)
    r.failure = str_cat(diag.flags.get(1), " producer(s) failed; ",
                        uccl::ep::runtime::describe_error(*diag.record.host, fl.timeout_secs));
  else if (proxy.failed())
    r.failure = proxy.error_message();
  else if (r.commands != expected || sum != expected * (expected + 1) / 2)
    r.failure = str_cat(r.commands, " of ", expected, " commands executed (sequence sum ", sum,
                        ", expected ", expected * (expected + 1) / 2, ")");
  else if (stop.status != proxy::StopStatus::kDrained)
    r.failure = stop.message;
}

// One run: a session (rank 0, this GPU's queues) and a CPU-only peer session (rank 1, never
// started) over the probe transport; the kernel pushes; the host waits for every command. The
// clock is calibrated before and after (`calibrate`), and latencies use the interpolation.
template <typename Calibrate>
Result run(const Flags& fl, int threads, Scenario scenario, Calibrate&& calibrate,
           cudaStream_t stream) {
  Result r;
  r.threads = threads;
  r.scenario = scenario_name(scenario);
  const bool paced = scenario != Scenario::kLoaded;
  const uint32_t warps = fl.queues * (paced ? 1 : fl.warps_per_queue);
  const uint32_t rounds =  // unloaded: about 1000 (quick) or 8000 commands in all
      paced ? std::max(1u, (fl.quick ? 1000u : 8000u) / fl.queues)
            : static_cast<uint32_t>(std::max<uint64_t>(1, fl.commands / (uint64_t{warps} * 32)));
  const uint64_t expected = uint64_t{warps} * rounds * (paced ? 1 : 32);
  std::vector<std::shared_ptr<probe::ProbeRecord>> records;
  for (int t = 0; t < threads; ++t) {
    records.push_back(std::make_shared<probe::ProbeRecord>(1u << 20));
    records.back()->sample_every = paced ? 1 : 64;
  }
  std::vector<uint8_t> rdma_buffer(4096);
  char bus[32] = {};
  UCCL_EP_CUDA_CHECK(cudaDeviceGetPCIBusId(bus, sizeof(bus), fl.device));
  proxy::ProxySession session(probe_options(fl, 0, threads, bus, rdma_buffer, records),
                              queue::make_cuda_queue_allocator(fl.device));
  proxy::ProxySession peer(probe_options(fl, 1, threads, bus, rdma_buffer, records),
                           queue::make_host_queue_allocator());
  session.connect({session.local_address(), peer.local_address()});
  session.start();
  for (int c : session.proxy()->cpus()) r.cpus += str_cat(r.cpus.empty() ? "" : ",", c);

  const std::vector<queue::QueueDeviceHandle> h = session.queues().device_handles();
  DeviceArray<queue::QueueDeviceHandle> handles(h.size());
  UCCL_EP_CUDA_CHECK(
      cudaMemcpy(handles.ptr, h.data(), h.size() * sizeof(h[0]), cudaMemcpyHostToDevice));
  KernelDiag diag;
  const device::DeviceDiag dd{diag.record.dev, diag.flags.ptr,
                              static_cast<uint64_t>(fl.timeout_secs * 1e9), 0};
  DeviceArray<uint64_t> push_ns(paced ? uint64_t{warps} * rounds : 1);
  DeviceArray<uint64_t> start_time(1);
  const PushArgs args{handles.ptr, fl.queues, fl.warps_per_queue, rounds,      scenario,
                      10000,       dd,        diag.flags.ptr + 1, push_ns.ptr, start_time.ptr};
  const uint32_t blocks = (warps * 32 + kThreadsPerBlock - 1) / kThreadsPerBlock;
  uccl::ep::bench::ClockModel clock;
  clock.before = calibrate();
  const uint64_t t0 = probe::host_now_ns();
  push_kernel<<<blocks, kThreadsPerBlock, 0, stream>>>(args);
  UCCL_EP_CHECK_LAUNCH("push_kernel");
  auto executed = [&] {
    if (fl.transport == "null") return session.proxy()->total_stats().completed;
    uint64_t n = 0;
    for (const auto& rec : records) n += rec->executed.load(std::memory_order_relaxed);
    return n;
  };
  const auto deadline = Clock::now() + std::chrono::duration<double>(fl.timeout_secs + 30);
  while (executed() < expected && Clock::now() < deadline && !session.proxy()->failed())
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  r.seconds = static_cast<double>(probe::host_now_ns() - t0) * 1e-9;
  const cudaError_t sync = cudaStreamSynchronize(stream);  // the kernel ends (deadline/error)
  const proxy::StopResult stop = session.stop(proxy::StopMode::kDrain);
  if (sync == cudaSuccess) clock.after = calibrate();
  summarize(r, fl, paced, expected, records, clock, sync, diag, *session.proxy(), stop);
  if (paced && sync == cudaSuccess) {
    std::vector<uint64_t> push = push_ns.read();
    r.push_p50_ns = uccl::ep::testing::percentile(push, 0.5);
  }
  return r;
}

std::vector<int> parse_list(const std::string& v) {
  std::vector<int> out;
  for (size_t pos = 0; pos <= v.size();) {
    const size_t comma = std::min(v.find(',', pos), v.size());
    out.push_back(std::atoi(v.substr(pos, comma - pos).c_str()));
    pos = comma + 1;
  }
  return out;
}

bool parse_flags(int argc, char** argv, Flags& fl) {
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "--quick") {
      fl.quick = true;
      continue;
    }
    if (i + 1 >= argc) return false;
    const std::string v = argv[++i];
    if (f == "--device")
      fl.device = std::atoi(v.c_str());
    else if (f == "--queues")
      fl.queues = static_cast<uint32_t>(std::atoi(v.c_str()));
    else if (f == "--warps-per-queue")
      fl.warps_per_queue = static_cast<uint32_t>(std::atoi(v.c_str()));
    else if (f == "--capacity")
      fl.capacity = static_cast<uint32_t>(std::atoi(v.c_str()));
    else if (f == "--proxy-threads")
      fl.proxy_threads = parse_list(v);
    else if (f == "--commands")
      fl.commands = std::strtoull(v.c_str(), nullptr, 10);
    else if (f == "--timeout-secs")
      fl.timeout_secs = std::atof(v.c_str());
    else if (f == "--transport")
      fl.transport = v;
    else if (f == "--json")
      fl.json = v;
    else
      return false;
  }
  if (fl.quick) fl.commands = std::min<uint64_t>(fl.commands, 2u << 20);
  const bool threads_ok = std::all_of(fl.proxy_threads.begin(), fl.proxy_threads.end(),
                                      [&](int t) { return t >= 1 && t <= 16; });
  return threads_ok && (fl.transport == "probe" || fl.transport == "null") && fl.queues >= 1 &&
         fl.queues <= 1024 && fl.warps_per_queue >= 1 && fl.capacity >= 64 &&
         (fl.capacity & (fl.capacity - 1)) == 0 && fl.timeout_secs > 0;
}

void write_json(const Flags& fl, const char* gpu, const std::vector<Result>& rs,
                bool throughput_met, const std::string& latency_status) {
  uint64_t rtt = 0;  // the worst calibration of the benchmark
  for (const Result& r : rs) rtt = std::max(rtt, r.clock_rtt_ns);
  std::FILE* f = std::fopen(fl.json.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "cannot write %s\n", fl.json.c_str());
    return;
  }
  std::fprintf(f,
               "{\n  \"bench\": \"proxy_gpu\",\n  \"gpu\": \"%s\",\n  \"transport\": \"%s\",\n"
               "  \"queues\": %u,\n"
               "  \"warps_per_queue\": %u,\n  \"capacity\": %u,\n  \"clock_rtt_ns\": %llu,\n"
               "  \"targets\": {\"commands_per_s\": %.0f, \"unloaded_p50_ns\": %.0f, "
               "\"throughput_met\": %s, \"latency\": \"%s\"},\n  \"results\": [\n",
               gpu, fl.transport.c_str(), fl.queues, fl.warps_per_queue, fl.capacity,
               static_cast<unsigned long long>(rtt), kTargetCommandsPerSec, kTargetP50Ns,
               throughput_met ? "true" : "false", latency_status.c_str());
  for (size_t i = 0; i < rs.size(); ++i) {
    const Result& r = rs[i];
    std::string failure = r.failure;
    for (char& c : failure) c = (c == '"' || c == '\\' || c < 0x20) ? ' ' : c;
    std::fprintf(f,
                 "    {\"scenario\": \"%s\", \"proxy_threads\": %d, \"cpus\": \"%s\", "
                 "\"commands\": %llu, \"seconds\": %.6f, \"commands_per_s\": %.1f, "
                 "\"latency_p50_ns\": %.0f, \"latency_p99_ns\": %.0f, \"latency_min_ns\": %.0f, "
                 "\"push_p50_ns\": %.0f, \"clock_rtt_ns\": %llu, \"clock_drift_ns_per_s\": %.0f, "
                 "\"ok\": %s, \"failure\": \"%s\"}%s\n",
                 r.scenario.c_str(), r.threads, r.cpus.c_str(),
                 static_cast<unsigned long long>(r.commands), r.seconds, r.commands_per_s, r.p50_ns,
                 r.p99_ns, r.min_ns, r.push_p50_ns, static_cast<unsigned long long>(r.clock_rtt_ns),
                 r.drift_ns_per_s, r.failure.empty() ? "true" : "false", failure.c_str(),
                 i + 1 < rs.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
}

}  // namespace

int main(int argc, char** argv) {
  Flags fl;
  if (!parse_flags(argc, argv, fl)) {
    std::fprintf(stderr,
                 "usage: %s [--device D] [--queues Q] [--warps-per-queue W] [--capacity N] "
                 "[--proxy-threads 1,2,3,4] [--commands N] [--timeout-secs S] "
                 "[--transport probe|null] [--quick] [--json PATH]\n",
                 argv[0]);
    return 2;
  }
  int devices = 0;
  if (const cudaError_t e = cudaGetDeviceCount(&devices); e != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "no CUDA device (%s): nothing to measure\n",
                 e == cudaSuccess ? "0 devices" : cudaGetErrorString(e));
    return 77;
  }
  try {
    UCCL_EP_CUDA_CHECK(cudaSetDevice(fl.device));
    cudaDeviceProp prop{};
    UCCL_EP_CUDA_CHECK(cudaGetDeviceProperties(&prop, fl.device));
    cudaStream_t stream = nullptr;
    UCCL_EP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    // The clock is calibrated before and after every run (the host and GPU clocks drift apart
    // by up to microseconds per second). Latencies stay signed: a minimum below -rtt/2 means
    // the calibration was wrong, and the latency target is then reported as inconclusive.
    auto calibrate = [&] {
      return uccl::ep::bench::calibrate_clock(stream, [] { return probe::host_now_ns(); });
    };
    std::printf(
        "%s (device %d), %u queues x %u warps, capacity %u; host/GPU clock calibrated before "
        "and after each run (offset known to +- the 'clk+-' column)\n",
        prop.name, fl.device, fl.queues, fl.warps_per_queue, fl.capacity);
    std::printf("%-9s %-7s %-12s %-8s %-7s %-7s %-7s %-8s %-7s %-9s %s\n", "scenario", "threads",
                "cpus", "Mcmd/s", "p50 us", "p99 us", "min us", "push us", "clk+-us", "drift/s",
                "check");
    std::vector<Result> results;
    bool ok = true, throughput_met = false, latency_met = false, calibration_ok = true;
    for (Scenario scenario : {Scenario::kLoaded, Scenario::kUnloaded, Scenario::kUnloadedLane}) {
      const bool paced = scenario != Scenario::kLoaded;
      for (int t : fl.proxy_threads) {
        Result r;
        try {
          r = run(fl, t, scenario, calibrate, stream);
        } catch (const std::exception& e) {
          r.threads = t;
          r.scenario = scenario_name(scenario);
          r.failure = e.what();
        }
        ok = ok && r.failure.empty();
        if (r.failure.empty() && t <= 4) {
          throughput_met = throughput_met || r.commands_per_s >= kTargetCommandsPerSec;
          if (paced && fl.transport == "probe") {
            calibration_ok =
                calibration_ok && r.min_ns >= -0.5 * static_cast<double>(r.clock_rtt_ns);
            latency_met = latency_met || r.p50_ns <= kTargetP50Ns;
          }
        }
        std::printf("%-9s %-7d %-12s %-8.2f %-7.2f %-7.2f %-7.2f %-8.2f %-7.2f %-9.0f %s\n",
                    r.scenario.c_str(), t, r.cpus.c_str(), r.commands_per_s * 1e-6, r.p50_ns * 1e-3,
                    r.p99_ns * 1e-3, r.min_ns * 1e-3, r.push_p50_ns * 1e-3, r.clock_rtt_ns * 0.5e-3,
                    r.drift_ns_per_s, r.failure.empty() ? "ok" : r.failure.c_str());
        std::fflush(stdout);
        results.push_back(r);
      }
    }
    const std::string latency_status =
        fl.transport != "probe" ? "not measured"
        : !calibration_ok       ? "inconclusive (a latency below -rtt/2: clock calibration off)"
        : latency_met           ? "met"
                                : "NOT met";
    std::printf("target >= %.0f M commands/s with <= 4 threads: %s; unloaded p50 <= %.1f us: %s\n",
                kTargetCommandsPerSec * 1e-6, throughput_met ? "met" : "NOT met",
                kTargetP50Ns * 1e-3, latency_status.c_str());
    if (!fl.json.empty()) write_json(fl, prop.name, results, throughput_met, latency_status);
    cudaStreamDestroy(stream);
    std::printf("%s\n", ok ? "all checks passed" : "SOME CHECKS FAILED");
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FAILED: %s\n", e.what());
    return 1;
  }
}
