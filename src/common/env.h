// Every environment variable uccl-ep reads, declared once (name, type, default, meaning).
// Values are parsed when a Buffer is constructed, never on the hot path.
#pragma once

#include <cstdint>
#include <string>

namespace uccl::ep {

struct EnvVarInfo {
  const char* name;
  const char* type;
  const char* default_value;
  const char* meaning;
};

/// The registry; docs/env.md is generated from it (tools/gen_env_docs.py) and CI checks it.
inline constexpr EnvVarInfo kEnvVars[] = {
    {"UCCL_EP_TIMEOUT_SECS", "float > 0", "100",
     "Deadline of every wait: GPU spin-waits (barriers, ring counters, command queues), CPU "
     "proxy waits (completions, FENCE, BARRIER) and the host wait for received-token counts. On "
     "expiry the call raises RuntimeError naming rank, peer, channel and counters, and the "
     "Buffer refuses further work."},
    {"UCCL_EP_LOG_LEVEL", "error|warn|info|debug", "warn",
     "Verbosity of messages printed to stderr."},
    {"UCCL_EP_TRANSPORT", "auto|libfabric|ipc|fake|null", "auto",
     "Transport of the GPU->CPU->network command path. auto: libfabric when one of its "
     "providers works, else an error listing what was tried; ipc: same-host GPUs through CUDA "
     "IPC and the copy engine (emulated nodes); fake: in-memory, for tests; null: completes "
     "every command without moving data (benchmarks of the command path only)."},
    {"UCCL_EP_FI_PROVIDER", "auto or a libfabric provider name", "auto",
     "libfabric provider of the RDM endpoint, e.g. efa, verbs;ofi_rxm, cxi, tcp;ofi_rxm, shm. "
     "auto tries those in that order and logs the choice (info level)."},
    {"UCCL_EP_NUM_PROXY_THREADS", "int in [1, 16]", "2",
     "CPU proxy threads per GPU. Queue q is served by thread q % N (one transport endpoint per "
     "thread). One thread executes 20-35 M commands/s on a 2-core VM (proxy_cpu_bench); two "
     "clear the 25 M commands/s target with headroom; more burn cores and help only when the "
     "transport calls themselves are the bottleneck."},
    {"UCCL_IB_MAX_INFLIGHT_NORMAL", "int in [1, 65536]", "8",
     "Normal (high-throughput) mode: operations of one command queue posted to the transport "
     "and not yet completed. When reached, the proxy stops draining that queue until "
     "completions arrive (the GPU then waits on the full queue)."},
    {"UCCL_IB_MAX_INFLIGHT_LOW_LATENCY", "int in [1, 65536]", "32",
     "Low-latency mode: the same per-queue limit of in-flight operations."},
    {"UCCL_IB_MAX_INFLIGHT_BYTES", "int > 0 (bytes, 64-bit)", "unlimited",
     "Bytes of writes in flight per GPU, split evenly over its proxy threads (a thread may "
     "always post one write, however large). Lower it for NICs that fail under deep queues "
     "(e.g. 1572864 on Broadcom Thor-2)."},
    {"UCCL_EP_DISABLE_CPU_AFFINITY", "0|1", "0",
     "1: do not pin proxy threads. 0: pin each proxy thread to its own CPU of the GPU's NUMA "
     "node (from sysfs), physical cores first; the choice is logged once (info level)."},
    {"UCCL_EP_COMBINE_TAIL_SHARE", "int in [0, 90] (percent)", "0",
     "Intranode combine (tuning experiment): percent of each channel's tokens that the sender "
     "block reduces once its pushes are done (the receiver block reduces the rest; capped at one "
     "ring of slots). On 2x H200 at EP 2, 25 made chunks of 32 tokens faster and chunks of 6-12 "
     "and the default config slower; the best config's figure did not change."},
};

constexpr int kMaxProxyThreads = 16;      // UCCL_EP_NUM_PROXY_THREADS upper bound
constexpr int kMaxInflightOps = 65536;    // UCCL_IB_MAX_INFLIGHT_* upper bound
constexpr int kMaxCombineTailShare = 90;  // UCCL_EP_COMBINE_TAIL_SHARE upper bound

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

/// Parsed values of the registry.
struct EnvSettings {
  double timeout_secs = 100.0;
  LogLevel log_level = LogLevel::kWarn;
  std::string transport = "auto";            // UCCL_EP_TRANSPORT
  std::string fi_provider = "auto";          // UCCL_EP_FI_PROVIDER
  int num_proxy_threads = 2;                 // UCCL_EP_NUM_PROXY_THREADS
  int max_inflight_normal = 8;               // UCCL_IB_MAX_INFLIGHT_NORMAL
  int max_inflight_low_latency = 32;         // UCCL_IB_MAX_INFLIGHT_LOW_LATENCY
  uint64_t max_inflight_bytes = UINT64_MAX;  // UCCL_IB_MAX_INFLIGHT_BYTES (UINT64_MAX: unlimited)
  bool disable_cpu_affinity = false;         // UCCL_EP_DISABLE_CPU_AFFINITY
  int combine_tail_share = 0;                // UCCL_EP_COMBINE_TAIL_SHARE (percent)
};

/// Reads and validates every variable now. Throws Error(kValue) naming the variable, its value
/// and the rule when a value does not parse.
EnvSettings read_env_settings();

/// Parses one value of `name` (exposed for tests). Throws like read_env_settings.
double parse_timeout_secs(const std::string& value);
LogLevel parse_log_level(const std::string& value);
/// UCCL_EP_TRANSPORT: one of auto, libfabric, ipc, fake, null (returned as given).
std::string parse_transport_name(const std::string& value);
/// UCCL_EP_FI_PROVIDER: "auto" or a provider name made of letters, digits, '_', '-' and ';'
/// (at most 64 characters). Whether it exists is checked when the transport starts.
std::string parse_fi_provider(const std::string& value);
/// An integer variable `name` in [min, max] (decimal digits only). Throws Error(kValue) naming
/// the variable, the value and the range.
int parse_int_var(const char* name, const std::string& value, int min, int max);
/// UCCL_IB_MAX_INFLIGHT_BYTES: a decimal integer in [1, 2^64 - 1], checked for overflow.
uint64_t parse_max_inflight_bytes(const std::string& value);
/// UCCL_EP_DISABLE_CPU_AFFINITY: "0" or "1".
bool parse_disable_cpu_affinity(const std::string& value);

}  // namespace uccl::ep
