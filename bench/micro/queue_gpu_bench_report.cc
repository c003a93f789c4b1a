// Reporting and flag parsing of uccl_ep_queue_gpu_bench.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/error.h"
#include "queue_gpu_bench.h"

namespace uccl::ep::bench::queue_gpu {
namespace {

std::string json_escape(const std::string& in) {
  std::string out;
  for (char c : in) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(static_cast<unsigned char>(c) < 0x20 ? ' ' : c);
  }
  return out;
}

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "%s\nusage: uccl_ep_queue_gpu_bench [--device D] [--queues Q] [--capacity N] "
               "[--cpu-threads 1,2,4,8] [--timeout-secs S] [--quick] [--json PATH]\n",
               why.c_str());
  std::exit(2);
}

uint32_t parse_u32(const std::string& flag, const std::string& text, uint32_t lo, uint32_t hi) {
  char* end = nullptr;
  const unsigned long v = std::strtoul(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < lo || v > hi)
    usage(uccl::ep::str_cat(flag, ": bad value '", text, "' (", lo, "..", hi, ")"));
  return static_cast<uint32_t>(v);
}

}  // namespace

const char* mode_name(Mode m) {
  return m == Mode::kLane ? "lane" : m == Mode::kBatch ? "batch" : "warp";
}

void print_result(const Result& r) {
  const Scenario& s = r.s;
  std::printf("%-13s %-5s %3u %4u %3u %6u %10llu | %9.2f %9.2f %9.2f %9.2f %7.2f %s\n",
              s.name.c_str(), mode_name(s.mode), s.queues, s.warps_per_queue, s.cpu_threads,
              s.capacity, static_cast<unsigned long long>(r.commands), r.commands_per_s * 1e-6,
              r.p50_ns * 1e-3, r.p99_ns * 1e-3, r.min_ns * 1e-3, r.clock_rtt_ns * 0.5e-3,
              r.ok ? "ok" : "FAILED");
  if (!r.ok) std::printf("  failure: %s\n", r.failure.c_str());
  std::fflush(stdout);
}

void write_json(const char* path, const char* gpu, const std::vector<Result>& results) {
  FILE* f = std::fopen(path, "w");
  if (f == nullptr) {
    std::fprintf(stderr, "cannot write %s\n", path);
    return;
  }
  std::fprintf(f, "{\n  \"bench\": \"queue_gpu\",\n  \"gpu\": \"%s\",\n", json_escape(gpu).c_str());
  std::fprintf(f, "  \"results\": [\n");
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    const Scenario& s = r.s;
    std::fprintf(
        f,
        "    {\"name\": \"%s\", \"mode\": \"%s\", \"queues\": %u, \"warps_per_queue\": %u, "
        "\"batch\": %u, \"cpu_threads\": %u, \"capacity\": %u, \"commands\": %llu, "
        "\"seconds\": %.6f, \"kernel_seconds\": %.6f, \"commands_per_s\": %.1f, "
        "\"latency_p50_ns\": %.0f, \"latency_p99_ns\": %.0f, \"latency_min_ns\": %.0f, "
        "\"clock_rtt_ns\": %llu, \"clock_drift_ns_per_s\": %.0f, \"ok\": %s, \"failure\": "
        "\"%s\"}%s\n",
        s.name.c_str(), mode_name(s.mode), s.queues, s.warps_per_queue, s.batch, s.cpu_threads,
        s.capacity, static_cast<unsigned long long>(r.commands), r.seconds, r.kernel_seconds,
        r.commands_per_s, r.p50_ns, r.p99_ns, r.min_ns,
        static_cast<unsigned long long>(r.clock_rtt_ns), r.drift_ns_per_s, r.ok ? "true" : "false",
        json_escape(r.failure).c_str(), i + 1 < results.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
}

Flags parse_flags(int argc, char** argv) {
  Flags fl;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--quick") {
      fl.quick = true;
      continue;
    }
    if (i + 1 >= argc) usage("missing value after " + flag);
    const std::string v = argv[++i];
    if (flag == "--device")
      fl.device = static_cast<int>(parse_u32(flag, v, 0, 1023));
    else if (flag == "--queues")
      fl.queues = parse_u32(flag, v, 1, 1024);
    else if (flag == "--capacity")
      fl.capacity = parse_u32(flag, v, 16, 1u << 20);
    else if (flag == "--timeout-secs")
      fl.timeout_secs = parse_u32(flag, v, 1, 3600);
    else if (flag == "--json")
      fl.json = argv[i];
    else if (flag == "--cpu-threads") {
      fl.cpu_threads.clear();
      for (size_t pos = 0; pos <= v.size();) {
        const size_t comma = std::min(v.find(',', pos), v.size());
        fl.cpu_threads.push_back(parse_u32(flag, v.substr(pos, comma - pos), 1, 8));
        pos = comma + 1;
      }
    } else {
      usage("unknown flag " + flag);
    }
  }
  if ((fl.capacity & (fl.capacity - 1)) != 0) usage("--capacity must be a power of two");
  return fl;
}

}  // namespace uccl::ep::bench::queue_gpu
