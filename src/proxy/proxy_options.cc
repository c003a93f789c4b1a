// Options of the CPU proxy: defaults from the environment registry, validation.
#include "proxy/proxy_options.h"

#include "common/error.h"

namespace uccl::ep::proxy {

ProxyOptions proxy_options_from_env(const EnvSettings& env) {
  ProxyOptions o;
  o.num_threads = env.num_proxy_threads;
  o.max_inflight_normal = env.max_inflight_normal;
  o.max_inflight_low_latency = env.max_inflight_low_latency;
  o.max_inflight_bytes = env.max_inflight_bytes;
  o.timeout_secs = env.timeout_secs;
  o.pin_threads = !env.disable_cpu_affinity;
  return o;
}

transport::NetworkHints network_hints_from_env(const EnvSettings& env) {
  return transport::NetworkHints{.interface = env.socket_ifname,
                                 .gid_index = env.ib_gid_index,
                                 .service_level = env.ib_service_level,
                                 .traffic_class = env.ib_traffic_class};
}

void validate_options(const ProxyOptions& o) {
  UCCL_EP_CHECK_VALUE(o.num_ranks >= 1, "proxy: num_ranks=", o.num_ranks, " must be >= 1");
  UCCL_EP_CHECK_VALUE(o.rank >= 0 && o.rank < o.num_ranks, "proxy: rank=", o.rank,
                      " must be in [0, num_ranks=", o.num_ranks, ")");
  UCCL_EP_CHECK_VALUE(o.local_rank >= 0, "proxy: local_rank=", o.local_rank, " must be >= 0");
  UCCL_EP_CHECK_VALUE(o.num_threads >= 1 && o.num_threads <= kMaxProxyThreads,
                      "proxy: num_threads=", o.num_threads, " must be in [1, ", kMaxProxyThreads,
                      "] (UCCL_EP_NUM_PROXY_THREADS)");
  UCCL_EP_CHECK_VALUE(o.max_inflight_normal >= 1 && o.max_inflight_normal <= kMaxInflightOps,
                      "proxy: max_inflight_normal=", o.max_inflight_normal, " must be in [1, ",
                      kMaxInflightOps, "] (UCCL_IB_MAX_INFLIGHT_NORMAL)");
  UCCL_EP_CHECK_VALUE(
      o.max_inflight_low_latency >= 1 && o.max_inflight_low_latency <= kMaxInflightOps,
      "proxy: max_inflight_low_latency=", o.max_inflight_low_latency, " must be in [1, ",
      kMaxInflightOps, "] (UCCL_IB_MAX_INFLIGHT_LOW_LATENCY)");
  UCCL_EP_CHECK_VALUE(o.max_inflight_bytes >= 1, "proxy: max_inflight_bytes=", o.max_inflight_bytes,
                      " must be >= 1 (UCCL_IB_MAX_INFLIGHT_BYTES)");
  UCCL_EP_CHECK_VALUE(o.timeout_secs > 0, "proxy: timeout_secs=", o.timeout_secs,
                      " must be > 0 (UCCL_EP_TIMEOUT_SECS)");
  UCCL_EP_CHECK_VALUE(o.batch >= 1 && o.batch <= 1024, "proxy: batch=", o.batch,
                      " must be in [1, 1024]");
  if (o.num_barrier_groups > 0) {
    UCCL_EP_CHECK_VALUE(o.signals != nullptr && reinterpret_cast<uintptr_t>(o.signals) % 8 == 0,
                        "proxy: BARRIER needs this rank's signal region (8-byte aligned host "
                        "memory); got ",
                        o.signals == nullptr ? "null" : "a misaligned pointer");
    UCCL_EP_CHECK_VALUE(uint64_t{o.barrier_slot} + o.num_barrier_groups <= o.num_signal_slots,
                        "proxy: barrier slots [", o.barrier_slot, ", ",
                        uint64_t{o.barrier_slot} + o.num_barrier_groups,
                        ") exceed the signal region of ", o.num_signal_slots, " slots");
  }
}

}  // namespace uccl::ep::proxy
