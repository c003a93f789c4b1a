// Every environment variable uccl-ep reads, declared once (name, type, default, meaning), and
// their parsed values. Values are read when a Buffer or CommandPath is constructed, never on
// the hot path.
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
    {"UCCL_EP_TRANSPORT", "auto|libfabric|ipc|null", "auto",
     "Transport of the GPU->CPU->network command path. auto: ipc when every rank runs on one "
     "host (emulated nodes, UCCL_EP_NUM_LOCAL_RANKS), else libfabric when one of its providers "
     "works (else an error listing what was tried); ipc: same-host GPUs through CUDA IPC and the "
     "copy engine; null: completes every command without moving data (benchmarks of the command "
     "path only)."},
    {"UCCL_EP_FI_PROVIDER", "auto or a libfabric provider name", "auto",
     "libfabric provider of the RDM endpoint, e.g. efa, verbs;ofi_rxm, cxi, tcp;ofi_rxm, shm. "
     "auto tries those in that order and logs the choice (info level)."},
    {"UCCL_EP_IPC_MEMORY", "auto|device|host", "auto",
     "Where the ipc transport keeps the RDMA buffer. device: GPU memory, writes are copy-engine "
     "copies (fastest; the proxy path stalls when ranks share a GPU under CUDA MPS, "
     "docs/troubleshooting.md); host: POSIX shared memory, writes are CPU copies and no GPU "
     "stream is involved (the low-latency mode then writes only this rank directly); auto: host "
     "when the ranks span several NVLink domains and some GPU serves two of them, else device. "
     "Must be the same on every rank."},
    {"UCCL_EP_NUM_PROXY_THREADS", "int in [1, 16]", "2",
     "CPU proxy threads per GPU. Queue q is served by thread q % N (one transport endpoint per "
     "thread). Each thread busy-polls a core; more threads help only when the transport calls "
     "themselves are the bottleneck (docs/command_path.md explains the default of 2)."},
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
    {"UCCL_EP_NUM_LOCAL_RANKS", "int >= 1 dividing the rank count, or unset", "unset",
     "Ranks per NVLink domain (node). Unset: the ranks of each host form one domain. Set: "
     "consecutive groups of this many ranks form the domains, which splits one host into "
     "emulated nodes whose peers are reached through the CPU proxies and the transport (so the "
     "network path runs on one machine)."},
    {"UCCL_EP_DISABLE_CPU_AFFINITY", "0|1", "0",
     "1: do not pin proxy threads. 0: pin each proxy thread to its own CPU of the GPU's NUMA "
     "node (from sysfs), physical cores first; the choice is logged once (info level)."},
    {"UCCL_SOCKET_IFNAME", "one interface name, or unset", "unset",
     "Network interface of host-side traffic. Maps to: the C++ TCP bootstrap (rank 0 listens "
     "on, the other ranks connect from, its IPv4 address) and libfabric's FI_TCP_IFACE (tcp "
     "provider) and FI_VERBS_IFACE (verbs). The FI_* variables are exported unless already set "
     "(a set one wins, with a warning) before the libfabric transport's fi_getinfo; verbs "
     "reads its variables only when libfabric initializes, so set them yourself if another "
     "library initializes libfabric earlier in the process. It must name an existing interface "
     "(exact match; an NCCL-style leading '=' is accepted); a comma list or an NCCL-style '^' "
     "exclusion is refused. Buffer's all-gather runs over torch.distributed, which torch "
     "configures (e.g. GLOO_SOCKET_IFNAME), not this variable."},
    {"UCCL_IB_GID_INDEX", "int in [0, 255], or unset", "unset",
     "RoCE GID index. Maps to FI_VERBS_GID_IDX (verbs provider), exported like "
     "UCCL_SOCKET_IFNAME's FI_* variables. With any other provider it is ignored, with a "
     "one-line warning (once)."},
    {"UCCL_IB_SL", "int in [0, 15], or unset", "unset",
     "InfiniBand service level. Parsed and range-checked only: libfabric (1.17) has no provider "
     "setting for it, so the provider's default applies; when set, a one-line warning (once) "
     "says so."},
    {"UCCL_IB_TC", "int in [0, 255], or unset", "unset",
     "Traffic class (RoCE: the IP TOS byte, DSCP << 2 plus ECN). Parsed and range-checked only: "
     "libfabric (1.17) has no provider setting for it, so the provider's default applies; when "
     "set, a one-line warning (once) says so."},
    {"UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC", "0|1", "0",
     "1: the low-latency kernels' signals (direct words and proxy slots) use relaxed "
     "system-scope loads and stores with explicit fences (fence.acq_rel.sys before the store; "
     "after the load that sees the awaited value) instead of st.release / ld.acquire; the "
     "ordering guarantees are the same. The normal mode's ring tails, the NVLink barrier and "
     "the command queues always use release/acquire."},
};

constexpr int kMaxProxyThreads = 16;     // UCCL_EP_NUM_PROXY_THREADS upper bound
constexpr int kMaxInflightOps = 65536;   // UCCL_IB_MAX_INFLIGHT_* upper bound
constexpr int kMaxIbGidIndex = 255;      // UCCL_IB_GID_INDEX upper bound
constexpr int kMaxIbServiceLevel = 15;   // UCCL_IB_SL upper bound (4-bit field)
constexpr int kMaxIbTrafficClass = 255;  // UCCL_IB_TC upper bound (8-bit field)

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

/// Parsed values of the registry.
struct EnvSettings {
  double timeout_secs = 100.0;
  LogLevel log_level = LogLevel::kWarn;
  std::string transport = "auto";            // UCCL_EP_TRANSPORT
  std::string fi_provider = "auto";          // UCCL_EP_FI_PROVIDER
  std::string ipc_memory = "auto";           // UCCL_EP_IPC_MEMORY
  int num_proxy_threads = 2;                 // UCCL_EP_NUM_PROXY_THREADS
  int max_inflight_normal = 8;               // UCCL_IB_MAX_INFLIGHT_NORMAL
  int max_inflight_low_latency = 32;         // UCCL_IB_MAX_INFLIGHT_LOW_LATENCY
  uint64_t max_inflight_bytes = UINT64_MAX;  // UCCL_IB_MAX_INFLIGHT_BYTES (UINT64_MAX: unlimited)
  bool disable_cpu_affinity = false;         // UCCL_EP_DISABLE_CPU_AFFINITY
  int num_local_ranks = 0;                   // UCCL_EP_NUM_LOCAL_RANKS (0: unset)
  std::string socket_ifname{};               // UCCL_SOCKET_IFNAME ("": unset)
  int ib_gid_index = -1;                     // UCCL_IB_GID_INDEX (-1: unset)
  int ib_service_level = -1;                 // UCCL_IB_SL (-1: unset)
  int ib_traffic_class = -1;                 // UCCL_IB_TC (-1: unset)
  bool aggressive_atomic = false;            // UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC
};

/// Reads and validates every variable now. Throws Error(kValue) naming the variable, its value
/// and the rule when a value does not parse.
EnvSettings read_env_settings();

}  // namespace uccl::ep
