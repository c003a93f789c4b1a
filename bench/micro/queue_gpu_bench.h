// uccl_ep_queue_gpu_bench: the scenario and result types shared by the program
// (queue_gpu_bench.cu: kernels, consumers, scenarios) and its reporting and flag parsing
// (queue_gpu_bench_report.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace uccl::ep::bench::queue_gpu {

/// How producers push: one lane per command, batches of commands, or warp-cooperatively.
enum class Mode : uint32_t { kLane, kBatch, kWarp };
const char* mode_name(Mode m);

struct Scenario {
  std::string name;
  Mode mode = Mode::kLane;
  uint32_t queues = 8, warps_per_queue = 1, iterations = 100000, batch = 1;
  uint32_t cpu_threads = 4, capacity = 2048;
  uint64_t interval_ns = 0;
  uint32_t pause_ms = 0;  // consumers start after this pause (back-pressure check)
};

struct Result {
  Scenario s;
  uint64_t commands = 0;
  double seconds = 0, kernel_seconds = 0, commands_per_s = 0, p50_ns = 0, p99_ns = 0;
  double min_ns = 0;          // push-to-consume minimum; < 0: the clock calibration is off
  uint64_t clock_rtt_ns = 0;  // latency scenarios: the offset is known to +- rtt / 2
  double drift_ns_per_s = 0;  // how far the clock offset moved during the scenario
  bool ok = false;
  std::string failure;
};

struct Flags {
  int device = 0;
  uint32_t queues = 8, capacity = 2048;
  std::vector<uint32_t> cpu_threads{1, 2, 4, 8};
  double timeout_secs = 10;
  bool quick = false;
  const char* json = nullptr;
};

/// Parses the command line; prints the usage and exits with status 2 on a bad flag.
Flags parse_flags(int argc, char** argv);
/// One table row (and the failure, if any) on stdout.
void print_result(const Result& r);
/// The results as JSON at `path` (a message on stderr when it cannot be written).
void write_json(const char* path, const char* gpu, const std::vector<Result>& results);

}  // namespace uccl::ep::bench::queue_gpu
