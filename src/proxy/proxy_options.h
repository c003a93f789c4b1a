// Options of the CPU proxy of one GPU: threads, flow-control limits, deadlines, CPU pinning,
// and the queue -> thread -> pipe mapping every rank must agree on.
#pragma once

#include <cstdint>
#include <string>

#include "common/env.h"
#include "transport/transport.h"

namespace uccl::ep::proxy {

/// Default proxy threads per GPU (UCCL_EP_NUM_PROXY_THREADS). The target is >= 25 M commands/s
/// per GPU with at most 4 threads; the default is the fewest threads that clear it with
/// headroom, and more than one so that a slow transport call (a libfabric post running the
/// provider's progress) does not stall every queue. More threads burn busy-polling cores
/// (GPUs x N per node) and help only when transport calls are the bottleneck. The figures
/// behind 2: docs/command_path.md, "Measurements behind the code's choices".
constexpr int kDefaultNumThreads = 2;

/// Everything one GPU's proxy needs besides its queues and transports.
struct ProxyOptions {
  int rank = 0;
  int num_ranks = 1;
  int local_rank = 0;  // index of this GPU among the GPUs of its host (CPU choice only)
  int num_threads = kDefaultNumThreads;  // UCCL_EP_NUM_PROXY_THREADS

  bool low_latency_mode = false;      // per-queue limit: max_inflight_low_latency, else _normal
  int max_inflight_normal = 8;        // UCCL_IB_MAX_INFLIGHT_NORMAL
  int max_inflight_low_latency = 32;  // UCCL_IB_MAX_INFLIGHT_LOW_LATENCY
  uint64_t max_inflight_bytes = UINT64_MAX;  // per GPU, split over threads (UINT64_MAX: none)

  double timeout_secs = 100;        // UCCL_EP_TIMEOUT_SECS: every proxy wait, and stop()'s drain
  bool pin_threads = true;          // !UCCL_EP_DISABLE_CPU_AFFINITY
  std::string gpu_pci_bus_id{};     // e.g. "0000:3b:00.0": pin near this device (empty: any CPU)
  std::string sysfs_root = "/sys";  // tests point it at a fake tree

  uint32_t batch = 32;                          // commands taken from one queue per visit (1..1024)
  uint32_t idle_spins_before_yield = 1u << 14;  // busy polls before yielding the CPU when idle

  /// BARRIER support: this rank's signal region (host address; null: BARRIER is an error) and
  /// the slots reserved for it: group g counts arrivals in slot barrier_slot + g.
  int64_t* signals = nullptr;
  uint64_t num_signal_slots = 0;
  uint32_t barrier_slot = 0;
  uint32_t num_barrier_groups = 0;

  /// The per-queue limit of operations in flight for the chosen mode.
  int max_inflight_per_queue() const {
    return low_latency_mode ? max_inflight_low_latency : max_inflight_normal;
  }
};

/// Options with the environment's values (threads, limits, timeout, pinning); the caller fills
/// rank, ranks, mode, device and signal fields.
ProxyOptions proxy_options_from_env(const EnvSettings& env);

/// The transports' network hints from the environment: UCCL_SOCKET_IFNAME, UCCL_IB_GID_INDEX,
/// UCCL_IB_SL, UCCL_IB_TC (each -1 / "" when unset).
transport::NetworkHints network_hints_from_env(const EnvSettings& env);

/// Throws Error(kValue) naming the field, its value and the rule when an option is invalid.
void validate_options(const ProxyOptions& options);

/// Queue -> thread: queue q is served by thread q % num_threads (the same on every rank, so
/// every command of a queue goes through one thread and one transport pipe).
inline int thread_of_queue(uint32_t queue, int num_threads) {
  return static_cast<int>(queue % static_cast<uint32_t>(num_threads));
}
/// How many of `num_queues` queues thread `thread` serves.
inline uint32_t num_queues_of_thread(uint32_t num_queues, int num_threads, int thread) {
  const uint32_t n = static_cast<uint32_t>(num_threads), t = static_cast<uint32_t>(thread);
  return num_queues / n + (t < num_queues % n ? 1 : 0);
}
/// Pipes of thread `thread`'s transport: one per queue, at most transport::kMaxPipes.
inline int num_pipes_of_thread(uint32_t num_queues, int num_threads, int thread) {
  const uint32_t n = num_queues_of_thread(num_queues, num_threads, thread);
  constexpr uint32_t kMax = transport::kMaxPipes;
  return static_cast<int>(n == 0 ? 1 : (n < kMax ? n : kMax));
}
/// The pipe queue `queue` uses on its thread's transport (of `num_pipes` pipes).
inline int pipe_of_queue(uint32_t queue, int num_threads, int num_pipes) {
  return static_cast<int>((queue / static_cast<uint32_t>(num_threads)) %
                          static_cast<uint32_t>(num_pipes));
}
/// Operations thread `thread` can have in flight (its queues x the per-queue limit): the
/// transport's TransportOptions::max_inflight must be at least this.
inline int max_inflight_of_thread(const ProxyOptions& o, uint32_t num_queues, int thread) {
  const uint64_t n = uint64_t{num_queues_of_thread(num_queues, o.num_threads, thread)} *
                     static_cast<uint64_t>(o.max_inflight_per_queue());
  constexpr uint64_t kMax = transport::kMaxInflight;
  return static_cast<int>(n < 1 ? 1 : (n > kMax ? kMax : n));
}

}  // namespace uccl::ep::proxy
