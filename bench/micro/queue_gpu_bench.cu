// GPU test and benchmark of the command queue on one GPU: kernels push from many warps into Q
// queues while 1-8 CPU threads consume them (null execution: count, checksum, order); reports
// commands/s and push->consume latency, and checks back-pressure, deadline and proxy errors.
//
//   uccl_ep_queue_gpu_bench [--device D] [--queues Q] [--capacity N] [--cpu-threads "1,2,4,8"]
//                           [--timeout-secs S] [--quick] [--json PATH]
//
// Exit status: 0 when every check passed, 1 on any failure, 2 on bad flags.
//
// Kernels and scenarios here; types, reporting and flags in queue_gpu_bench.h /
// queue_gpu_bench_report.cc; the consumer threads in queue_gpu_consumers.{h,cc}; the queue API
// it exercises lives in src/queue.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "clock_sync.cuh"
#include "common/cuda_check.h"
#include "common/error.h"
#include "common/testing/cuda_buffers.h"
#include "device/ptx.cuh"
#include "protocol/command.h"
#include "queue/consumer.h"
#include "queue/producer.cuh"
#include "queue/queue_memory.h"
#include "queue_gpu_bench.h"
#include "queue_gpu_consumers.h"
#include "runtime/error_report.h"

namespace {

using uccl::ep::bench::ClockModel;
using uccl::ep::bench::ClockSync;
using uccl::ep::testing::DeviceArray;
using uccl::ep::testing::Mapped;
using uccl::ep::testing::percentile;
using uccl::ep::testing::StampSample;

namespace queue = uccl::ep::queue;
namespace protocol = uccl::ep::protocol;
namespace device = uccl::ep::device;
using protocol::Command;
using uccl::ep::str_cat;
using Clock = std::chrono::steady_clock;
using uccl::ep::bench::queue_gpu::ConsumerPool;
using uccl::ep::bench::queue_gpu::Flags;
using uccl::ep::bench::queue_gpu::lane_active;
using uccl::ep::bench::queue_gpu::Mode;
using uccl::ep::bench::queue_gpu::mode_name;
using uccl::ep::bench::queue_gpu::now_ns;
using uccl::ep::bench::queue_gpu::parse_flags;
using uccl::ep::bench::queue_gpu::print_result;
using uccl::ep::bench::queue_gpu::producers_per_queue;
using uccl::ep::bench::queue_gpu::Result;
using uccl::ep::bench::queue_gpu::Scenario;
using uccl::ep::bench::queue_gpu::write_json;

constexpr uint32_t kMaxBatch = 16;
constexpr int kThreadsPerBlock = 128;

// ---- Device side

// The push time (56 bits of globaltimer ns) rides in word1, the producer in `peer` and its
// sequence number in the remote offset.
UCCL_HD Command stamp_command(uint32_t producer, uint32_t seq, uint64_t stamp) {
  return protocol::encode_write(producer, (stamp & 0xffffffffu) << 4, uint64_t{seq} << 4,
                                ((stamp >> 32) & 0xffffffu) << 4);
}

struct PushArgs {
  const queue::QueueDeviceHandle* queues;  // [num_queues], device memory
  uint32_t num_queues, warps_per_queue;
  uint32_t iterations;  // per producer (lane/batch: commands; warp: rounds of push_warp)
  uint32_t batch;       // batch mode, <= kMaxBatch
  Mode mode;
  uint64_t interval_ns;  // pause between pushes of a producer (latency runs)
  device::DeviceDiag diag;
  uint32_t* failures;  // pushes that returned false
};

__device__ void pace(uint64_t& last, uint64_t interval_ns) {
  if (interval_ns == 0) return;
  while (device::global_timer_ns() - last < interval_ns) {
  }
  last = device::global_timer_ns();
}

__device__ bool push_lanes(const PushArgs& a, const queue::QueueDeviceHandle& q,
                           uint32_t producer) {
  uint64_t last = device::global_timer_ns();
  for (uint32_t seq = 0; seq < a.iterations; ++seq) {
    pace(last, a.interval_ns);
    if (!queue::push(q, stamp_command(producer, seq, device::global_timer_ns()), a.diag))
      return false;
  }
  return true;
}

__device__ bool push_batches(const PushArgs& a, const queue::QueueDeviceHandle& q,
                             uint32_t producer) {
  Command commands[kMaxBatch];
  for (uint32_t seq = 0; seq < a.iterations; seq += a.batch) {
    const uint32_t n = min(a.batch, a.iterations - seq);
    const uint64_t stamp = device::global_timer_ns();
#pragma unroll
    for (uint32_t i = 0; i < kMaxBatch; ++i) commands[i] = stamp_command(producer, seq + i, stamp);
    if (!queue::push_batch<kMaxBatch>(q, commands, n, a.diag)) return false;
  }
  return true;
}

__device__ bool push_warps(const PushArgs& a, const queue::QueueDeviceHandle& q, uint32_t producer,
                           uint32_t lane) {
  uint32_t seq = 0;
  for (uint32_t it = 0; it < a.iterations; ++it) {
    const bool active = lane_active(it, lane);
    const Command c = stamp_command(producer, seq, device::global_timer_ns());
    if (!queue::push_warp(q, c, active, a.diag)) return false;
    seq += active ? 1 : 0;
  }
  return true;
}

// Warp w serves queue w % num_queues as its (w / num_queues)-th producer warp.
__global__ void __launch_bounds__(kThreadsPerBlock) push_kernel(PushArgs a) {
  const uint32_t warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
  const uint32_t lane = threadIdx.x % 32;
  if (warp >= a.num_queues * a.warps_per_queue) return;
  const queue::QueueDeviceHandle q = a.queues[warp % a.num_queues];
  const uint32_t producer_warp = warp / a.num_queues;
  if (a.mode == Mode::kWarp) {
    if (!push_warps(a, q, producer_warp * 32 + lane, lane) && lane == 0) atomicAdd(a.failures, 1);
  } else if (lane == 0) {
    const bool ok = a.mode == Mode::kBatch ? push_batches(a, q, producer_warp)
                                           : push_lanes(a, q, producer_warp);
    if (!ok) atomicAdd(a.failures, 1);
  }
}

// One lane: WRITE + FENCE(r), then wait for fence_done >= r; round trip times in round_ns.
__global__ void fence_kernel(queue::QueueDeviceHandle q, uint32_t rounds, device::DeviceDiag diag,
                             uint64_t* round_ns, uint32_t* failures) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  for (uint32_t r = 1; r <= rounds; ++r) {
    const uint64_t start = device::global_timer_ns();
    const Command commands[2] = {stamp_command(0, r - 1, start), protocol::encode_fence(r)};
    if (!queue::push_batch<2>(q, commands, 2, diag) || !queue::wait_fence(q, r, diag)) {
      atomicAdd(failures, 1);
      return;
    }
    round_ns[r - 1] = device::global_timer_ns() - start;
  }
}

// ---- Host side: memory and clocks

template <typename T>
uint64_t load(T& word) {
  return std::atomic_ref<T>(word).load(std::memory_order_acquire);
}

struct Env {
  int device = 0;
  cudaStream_t stream = nullptr;
  double timeout_secs = 10;
};

// Diagnostics of one kernel launch: the error record, the abort flag and a failure counter.
struct Diag {
  Mapped<protocol::HostErrorRecord> record{1};
  DeviceArray<uint32_t> abort_and_failures{2};  // [0] abort flag, [1] failed pushes
  device::DeviceDiag make(double timeout_secs) const {
    return {record.dev, abort_and_failures.ptr, static_cast<uint64_t>(timeout_secs * 1e9), 0};
  }
  uint32_t* failures() const { return abort_and_failures.ptr + 1; }
};

// Waits up to `secs` for the stream; returns true when its work finished.
bool wait_stream(cudaStream_t stream, double secs) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(secs);
  for (;;) {
    const cudaError_t e = cudaStreamQuery(stream);
    if (e == cudaSuccess) return true;
    if (e != cudaErrorNotReady) UCCL_EP_CUDA_CHECK(e);
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

// ---- Scenarios

// Gives up on a kernel that does not finish: its memory cannot be freed safely.
[[noreturn]] void abandon(const std::string& what) {
  std::fprintf(stderr, "FATAL: %s; exiting without cleanup\n", what.c_str());
  std::fflush(stderr);
  std::_Exit(1);
}

// The queues of one scenario, their device handles and the diagnostics of its kernel.
struct Launch {
  queue::QueueSet set;
  DeviceArray<queue::QueueDeviceHandle> handles;
  Diag diag;
  Launch(const Scenario& s, const Env& env)
      : set(s.queues, s.capacity, queue::make_cuda_queue_allocator(env.device)), handles(s.queues) {
    const std::vector<queue::QueueDeviceHandle> h = set.device_handles();
    UCCL_EP_CUDA_CHECK(
        cudaMemcpy(handles.ptr, h.data(), h.size() * sizeof(h[0]), cudaMemcpyHostToDevice));
  }
  void push(const Scenario& s, const Env& env, double timeout_secs) {
    const PushArgs a{handles.ptr, s.queues,      s.warps_per_queue,       s.iterations,   s.batch,
                     s.mode,      s.interval_ns, diag.make(timeout_secs), diag.failures()};
    const uint32_t warps = s.queues * s.warps_per_queue;
    const uint32_t blocks = (warps * 32 + kThreadsPerBlock - 1) / kThreadsPerBlock;
    push_kernel<<<blocks, kThreadsPerBlock, 0, env.stream>>>(a);
    UCCL_EP_CHECK_LAUNCH("push_kernel");
  }
  // Waits for the kernel; one that overruns is stopped through the queues' error words.
  std::string wait(const Scenario& s, const Env& env) {
    if (wait_stream(env.stream, env.timeout_secs + 60)) return "";
    for (uint32_t q = 0; q < s.queues; ++q) queue::Consumer(set.host_view(q)).set_error(1);
    if (!wait_stream(env.stream, 5)) abandon(s.name + ": the kernel hangs");
    return "the kernel did not finish in time";
  }
  // Failed pushes and the error record, after the kernel finished.
  std::string device_failures() const {
    const std::vector<uint32_t> v = diag.abort_and_failures.read();
    if (v[1] == 0 && load(diag.record.host->flag) == 0) return "";
    return str_cat(v[1], " producer(s) failed; ",
                   uccl::ep::runtime::describe_error(*diag.record.host, 0));
  }
};

// After the kernel: device failures, the consumers' checks and counts.
void finish(Result& r, const Launch& launch, ConsumerPool& pool, std::string failure,
            std::vector<StampSample>& samples, uint64_t& last_ns) {
  const bool all = pool.wait_done(5);
  pool.stop();
  if (failure.empty()) failure = launch.device_failures();
  if (failure.empty()) failure = pool.verify(samples, last_ns);
  if (failure.empty() && !all) failure = "not every command was consumed";
  if (r.failure.empty()) r.failure = failure;
  r.commands = pool.consumed();
  r.ok = r.failure.empty();
}

// With the consumers paused, producers must block: the kernel still runs and every queue
// holds exactly `capacity` commands, in per-producer order (nothing overwritten).
std::string probe_full_queues(const Launch& launch, const Scenario& s, const Env& env) {
  if (cudaStreamQuery(env.stream) != cudaErrorNotReady)
    return "the kernel finished while no consumer ran (were slots overwritten?)";
  for (uint32_t q = 0; q < s.queues; ++q) {
    queue::Consumer probe(launch.set.host_view(q));
    std::vector<Command> out(s.capacity);
    const int n = probe.peek(out.data(), static_cast<int>(out.size()));
    std::vector<uint32_t> next(producers_per_queue(s), 0);
    for (int i = 0; i < n; ++i) {
      const protocol::CommandFields f = protocol::decode(out[i]);
      if (f.peer >= next.size() || (f.remote_offset >> 4) != next[f.peer]++)
        return str_cat("queue ", q, ": slot ", i, " out of order while paused");
    }
    if (static_cast<uint32_t>(n) != s.capacity)
      return str_cat("queue ", q, ": ", n, " commands while paused, expected ", s.capacity);
  }
  return "";
}

ClockSync calibrate(const Env& env) {
  return uccl::ep::bench::calibrate_clock(env.stream, [] { return now_ns(); });
}

// Runs the push kernel against the consumer pool. With `pause_ms`, the consumers start only
// after that pause and probe_full_queues (back-pressure; then nothing may be lost, and no
// latency is measured). Latencies use clock calibrations before and after the run.
Result run_push(const Scenario& s, const Env& env) {
  Result r{s};
  const bool timed = s.pause_ms == 0;
  ClockModel clock;
  if (timed) clock.before = calibrate(env);
  Launch launch(s, env);
  ConsumerPool pool(launch.set, s);
  if (s.pause_ms == 0) pool.start();
  cudaEvent_t events[2];
  for (cudaEvent_t& e : events) UCCL_EP_CUDA_CHECK(cudaEventCreate(&e));
  const uint64_t t0 = now_ns();
  UCCL_EP_CUDA_CHECK(cudaEventRecord(events[0], env.stream));
  launch.push(s, env, env.timeout_secs);
  UCCL_EP_CUDA_CHECK(cudaEventRecord(events[1], env.stream));
  if (s.pause_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(s.pause_ms));
    r.failure = probe_full_queues(launch, s, env);
    pool.start();
  }
  std::vector<StampSample> samples;
  uint64_t last_ns = 0;
  finish(r, launch, pool, launch.wait(s, env), samples, last_ns);
  float ms = 0;
  UCCL_EP_CUDA_CHECK(cudaEventElapsedTime(&ms, events[0], events[1]));
  for (cudaEvent_t e : events) cudaEventDestroy(e);
  r.kernel_seconds = ms * 1e-3;
  r.seconds = last_ns > t0 ? static_cast<double>(last_ns - t0) * 1e-9 : 0;
  if (s.pause_ms == 0 && r.seconds > 0)
    r.commands_per_s = static_cast<double>(r.commands) / r.seconds;
  if (!timed || !r.ok) return r;
  clock.after = calibrate(env);
  std::vector<int64_t> latencies = uccl::ep::bench::latencies(samples, clock);
  r.p50_ns = percentile(latencies, 0.5);
  r.p99_ns = percentile(latencies, 0.99);
  r.min_ns = percentile(latencies, 0.0);
  r.clock_rtt_ns = 2 * clock.half_rtt_ns();
  r.drift_ns_per_s = clock.drift_ns_per_s();
  return r;
}

// No consumer at all: the push must stop at its deadline with the queue's counters recorded
// (proxy_error = false), or stop when the proxy sets the queue's error word (proxy_error =
// true: abort raised, no timeout recorded). The first `capacity` commands stay intact.
Result run_stopped_push(const Env& env, bool proxy_error) {
  const Scenario s{.name = proxy_error ? "proxy_error" : "deadline",
                   .queues = 1,
                   .iterations = 64,
                   .cpu_threads = 1,
                   .capacity = 16};
  Result r{s};
  Launch launch(s, env);
  launch.push(s, env, proxy_error ? env.timeout_secs : 0.2);
  if (proxy_error) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    queue::Consumer(launch.set.host_view(0)).set_error(5);
  }
  if (!wait_stream(env.stream, proxy_error ? 5 : 10)) abandon(s.name + ": the push did not stop");
  const std::vector<uint32_t> flags = launch.diag.abort_and_failures.read();
  const protocol::HostErrorRecord rec = *launch.diag.record.host;
  std::string& f = r.failure;
  if (flags[1] != 1) f = str_cat(flags[1], " failed producers, expected 1");
  if (f.empty() && flags[0] != 1) f = "the rank's abort flag was not raised";
  if (f.empty() && proxy_error &&
      (rec.flag != 1 || rec.site != static_cast<int32_t>(protocol::WaitSite::kProxyError)))
    f = str_cat("a proxy error was not recorded as one: flag ", rec.flag, " site ", rec.site);
  if (f.empty() && !proxy_error &&
      (rec.flag != 1 || rec.site != static_cast<int32_t>(protocol::WaitSite::kQueueFull) ||
       rec.queue != 0 || rec.expected != 1 || rec.observed != 0))
    f = str_cat("error record: flag ", rec.flag, " site ", rec.site, " queue ", rec.queue,
                " expected ", rec.expected, " observed ", rec.observed,
                " (want 1, kQueueFull, 0, 1, 0)");
  if (!proxy_error && rec.flag == 1)
    std::printf("  deadline report: %s\n", uccl::ep::runtime::describe_error(rec, 0.2).c_str());
  queue::Consumer c(launch.set.host_view(0));
  Command out[16];
  const int n = c.peek(out, 16);
  for (int i = 0; i < n && f.empty(); ++i)
    if ((protocol::decode(out[i]).remote_offset >> 4) != static_cast<uint64_t>(i))
      f = str_cat("slot ", i, " overwritten or out of order");
  if (f.empty() && n != 16) f = str_cat(n, " commands in the queue, expected 16");
  r.commands = static_cast<uint64_t>(n);
  r.ok = f.empty();
  return r;
}

// One lane pushes WRITE + FENCE(r) and waits for fence_done >= r; latency = the round trip.
Result run_fence(const Env& env, uint32_t rounds) {
  const Scenario s{.name = "fence", .queues = 1, .iterations = rounds, .cpu_threads = 1};
  Result r{s};
  Launch launch(s, env);
  ConsumerPool pool(launch.set, s);
  DeviceArray<uint64_t> round_ns(rounds);
  pool.start();
  fence_kernel<<<1, 1, 0, env.stream>>>(launch.set.device_handle(0), rounds,
                                        launch.diag.make(env.timeout_secs), round_ns.ptr,
                                        launch.diag.failures());
  UCCL_EP_CHECK_LAUNCH("fence_kernel");
  std::vector<StampSample> ignored;
  uint64_t last_ns = 0;
  finish(r, launch, pool, launch.wait(s, env), ignored, last_ns);
  const uint64_t done = pool.consumers()[0].fence_done();
  if (r.ok && done != rounds) r.failure = str_cat("fence_done ", done, ", expected ", rounds);
  std::vector<uint64_t> trips = round_ns.read();
  r.p50_ns = percentile(trips, 0.5);
  r.p99_ns = percentile(trips, 0.99);
  r.ok = r.failure.empty();
  return r;
}

std::vector<Result> run_all(const Flags& fl, const Env& env) {
  const uint32_t div = fl.quick ? 10 : 1;
  const uint32_t most_threads = *std::max_element(fl.cpu_threads.begin(), fl.cpu_threads.end());
  std::vector<Result> results;
  auto add = [&](Result r) {
    print_result(r);
    results.push_back(std::move(r));
  };
  Scenario base{.queues = fl.queues, .capacity = fl.capacity};
  for (uint32_t threads : fl.cpu_threads) {  // one producer lane per queue
    Scenario s = base;
    s.name = "lane", s.iterations = 200000 / div, s.cpu_threads = threads;
    add(run_push(s, env));
  }
  for (uint32_t threads : fl.cpu_threads) {  // 16 warps share each queue
    Scenario s = base;
    s.name = "many_warps", s.warps_per_queue = 16, s.iterations = 20000 / div;
    s.cpu_threads = threads;
    add(run_push(s, env));
  }
  Scenario batch = base;
  batch.name = "batch", batch.mode = Mode::kBatch, batch.warps_per_queue = 4, batch.batch = 8;
  batch.iterations = 100000 / div, batch.cpu_threads = most_threads;
  add(run_push(batch, env));
  Scenario warp = base;
  warp.name = "warp", warp.mode = Mode::kWarp, warp.warps_per_queue = 4;
  warp.iterations = 4000 / div, warp.cpu_threads = most_threads;
  add(run_push(warp, env));
  Scenario latency = base;  // paced: one push every 5 us, the unloaded latency
  latency.name = "latency", latency.queues = 1, latency.iterations = 20000 / div;
  latency.cpu_threads = 1, latency.interval_ns = 5000;
  add(run_push(latency, env));
  const Scenario backpressure{.name = "backpressure",
                              .queues = 4,
                              .warps_per_queue = 2,
                              .iterations = 2000 / div,
                              .cpu_threads = 2,
                              .capacity = 64,
                              .pause_ms = 300};
  add(run_push(backpressure, env));
  add(run_stopped_push(env, false));
  add(run_stopped_push(env, true));
  add(run_fence(env, 2000 / div));
  return results;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags fl = parse_flags(argc, argv);
  try {
    Env env;
    env.device = fl.device;
    env.timeout_secs = fl.timeout_secs;
    UCCL_EP_CUDA_CHECK(cudaSetDevice(fl.device));
    cudaDeviceProp prop{};
    UCCL_EP_CUDA_CHECK(cudaGetDeviceProperties(&prop, fl.device));
    UCCL_EP_CUDA_CHECK(cudaStreamCreateWithFlags(&env.stream, cudaStreamNonBlocking));
    std::printf(
        "%s (device %d); latencies from a host/GPU clock calibration before and after each "
        "scenario, known to +- the 'clk+-' column\n",
        prop.name, fl.device);
    std::printf("%-13s %-5s %3s %4s %3s %6s %10s | %9s %9s %9s %9s %7s\n", "scenario", "mode", "Q",
                "W/Q", "CPU", "cap", "commands", "Mcmd/s", "p50 us", "p99 us", "min us", "clk+-us");
    const std::vector<Result> results = run_all(fl, env);
    if (fl.json != nullptr) write_json(fl.json, prop.name, results);
    const bool ok =
        std::all_of(results.begin(), results.end(), [](const Result& r) { return r.ok; });
    std::printf("%s\n", ok ? "all checks passed" : "SOME CHECKS FAILED");
    cudaStreamDestroy(env.stream);
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FAILED: %s\n", e.what());
    return 1;
  }
}
