// uccl.ep._C._testing.transport_floor: the transport floor (src/transport/testing/floor.h) on
// the transport and memory a Buffer would use, chosen from the environment as the Buffer
// chooses them; bench/bench_low_latency.py compares the proxy path with it.
#include <nanobind/nanobind.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/vector.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../all_gather.h"
#include "common/env.h"
#include "common/error.h"
#include "common/log.h"
#include "proxy/proxy_options.h"
#include "runtime/collective.h"
#include "runtime/host_memory.h"
#include "runtime/rdma_domain.h"
#include "transport/testing/floor.h"
#include "uccl_ep/command_path.h"

namespace uccl::ep::bindings {
namespace {

namespace tt = transport::testing;

std::string host_name() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) return "unknown-host";
  return host;
}

/// Device memory, or pinned host memory mapped into `device` (the Buffer's fallback); with
/// device < 0, plain page-aligned host memory (no CUDA).
tt::FloorMemory allocate_region(int device, uint64_t bytes, bool on_device) {
  if (device < 0) {
    const uint64_t rounded = (bytes + 4095) / 4096 * 4096;
    std::shared_ptr<void> p(std::aligned_alloc(4096, rounded), std::free);
    UCCL_EP_CHECK_RUNTIME(p != nullptr, "transport floor: cannot allocate ", rounded,
                          " bytes of host memory");
    std::memset(p.get(), 0, rounded);
    return {transport::Region{p.get(), bytes, false, ""}, p};
  }
  auto m = std::make_shared<runtime::RdmaMemory>();
  m->allocate(static_cast<int64_t>(bytes), on_device, device);
  return {transport::Region{m->host_or_device(), bytes, on_device, ""}, m};
}

/// The floor's options from the environment: the Buffer's transport (UCCL_EP_TRANSPORT; auto is
/// ipc when every rank runs on one host), provider, deadline, and one pipe per command queue
/// with UCCL_IB_MAX_INFLIGHT_LOW_LATENCY operations in flight per pipe.
tt::FloorOptions floor_options(int rank, int num_ranks, int device, const EnvSettings& env,
                               const std::string& transport_name) {
  tt::FloorOptions o;
  transport::TransportOptions& t = o.transport;
  t.rank = rank;
  t.num_ranks = num_ranks;
  t.num_pipes = static_cast<int>(CommandPathOptions{}.num_queues);
  const int64_t inflight = int64_t{t.num_pipes} * env.max_inflight_low_latency;
  t.max_inflight = static_cast<int>(std::min<int64_t>(inflight, transport::kMaxInflight));
  t.provider = env.fi_provider == "auto" ? "" : env.fi_provider;
  t.timeout_secs = env.timeout_secs;
  t.cuda_device = device;
  t.network = proxy::network_hints_from_env(env);
  o.device_memory = device >= 0;
  o.host_fallback = transport_name != "ipc";
  return o;
}

std::vector<double> transport_floor(int rank, int num_ranks, int device,
                                    const std::vector<std::pair<int, uint64_t>>& ops,
                                    int num_warmups, int num_iters, nb::object all_gather) {
  UCCL_EP_CHECK_VALUE(num_ranks >= 1 && rank >= 0 && rank < num_ranks,
                      "transport_floor: rank=", rank, " must be in [0, num_ranks=", num_ranks, ")");
  const AllGather gather = python_all_gather(std::move(all_gather));
  nb::gil_scoped_release release;  // python_all_gather takes the GIL for each call
  const tt::FloorCollective collective = [&](const std::string& what,
                                             const std::function<Bytes()>& local) {
    return runtime::collective_step(gather, rank, num_ranks, what, local);
  };
  EnvSettings env;
  const std::vector<Bytes> hosts = collective("transport floor: environment", [&] {
    env = read_env_settings();  // raises ValueError naming a variable that does not parse
    set_log_level(env.log_level);
    const std::string h = host_name();
    return Bytes(h.begin(), h.end());
  });
  bool single_host = true;
  for (const Bytes& h : hosts) single_host = single_host && h == hosts.front();
  const std::string name = runtime::resolve_transport("", env, single_host);

  tt::FloorOptions o = floor_options(rank, num_ranks, device, env, name);
  o.ops.reserve(ops.size());
  for (const auto& [peer, bytes] : ops) o.ops.push_back({peer, bytes});
  o.num_warmups = num_warmups;
  o.num_iters = num_iters;
  const tt::FloorTransportFactory factory = [&name](const transport::TransportOptions& t) {
    return transport::make_transport(name, t);
  };
  const tt::FloorAllocator allocate = [device](uint64_t bytes, bool on_device) {
    return allocate_region(device, bytes, on_device);
  };
  std::unique_ptr<runtime::DeviceGuard> guard;
  if (device >= 0) guard = std::make_unique<runtime::DeviceGuard>(device);
  return tt::run_transport_floor(o, factory, allocate, collective).seconds;
}

}  // namespace

void bind_transport_floor(nb::module_& m) {
  m.def("transport_floor", &transport_floor, nb::kw_only(), nb::arg("rank"), nb::arg("num_ranks"),
        nb::arg("device"), nb::arg("ops"), nb::arg("num_warmups"), nb::arg("num_iters"),
        nb::arg("all_gather"),
        "The transport's own floor for this rank's list of operations (collective: every rank "
        "calls it with its own list). ops: [(peer, bytes)] in posting order; each is one write "
        "of `bytes` (a multiple of 16) to `peer` with a fused signal of 1 into the peer's slot "
        "for this rank, or (bytes 0) that signal alone. Posted straight from one CPU loop on "
        "the transport a Buffer would use (UCCL_EP_TRANSPORT, auto: ipc on one host; "
        "UCCL_EP_FI_PROVIDER), on `device`'s memory (pinned host memory where a libfabric "
        "provider cannot register it; -1: host memory). An iteration ends when this rank's "
        "operations completed and every peer's signals for it arrived; no barrier between "
        "iterations. all_gather(bytes) -> every rank's bytes, for the set-up steps. Returns "
        "the seconds of each of the num_iters timed iterations (after num_warmups). Raises "
        "RuntimeError naming rank, peer and counters at the deadline (UCCL_EP_TIMEOUT_SECS) "
        "or when a rank failed.");
}

}  // namespace uccl::ep::bindings
