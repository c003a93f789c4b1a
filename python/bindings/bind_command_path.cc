// Bindings of CommandPath (uccl_ep/command_path.h) for uccl.ep.initialize_uccl / destroy_uccl,
// and of the environment settings the Python side reads.
#include <cuda_runtime_api.h>
#include <nanobind/nanobind.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include <cstdint>
#include <string>
#include <tuple>

#include "all_gather.h"
#include "uccl_ep/command_path.h"
#include "uccl_ep/env.h"

namespace uccl::ep::bindings {
namespace {

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

}  // namespace

/// CommandPathOptions from the binding's keyword arguments (shared with the test module).
CommandPathOptions command_path_options(int rank, int num_ranks, int local_rank,
                                        uintptr_t rdma_buffer, uint64_t rdma_buffer_bytes,
                                        bool rdma_buffer_on_device, int device,
                                        bool low_latency_mode, const std::string& transport,
                                        uint32_t num_queues, uint32_t queue_capacity,
                                        bool host_queues) {
  CommandPathOptions o;
  o.rank = rank;
  o.num_ranks = num_ranks;
  o.local_rank = local_rank;
  o.rdma_buffer = reinterpret_cast<void*>(rdma_buffer);
  o.rdma_buffer_bytes = rdma_buffer_bytes;
  o.rdma_buffer_on_device = rdma_buffer_on_device;
  o.device = device;
  o.low_latency_mode = low_latency_mode;
  o.transport = transport;
  o.num_queues = num_queues;
  o.queue_capacity = queue_capacity;
  o.host_queues = host_queues;
  return o;
}

void bind_command_path(nb::module_& m) {
  nb::class_<CommandPath>(m, "CommandPath",
                          "One rank's command path: queues, signal region, transports and CPU "
                          "proxy threads over an RDMA buffer (see uccl.ep.initialize_uccl).")
      .def(
          "__init__",
          [](CommandPath* self, int rank, int num_ranks, int local_rank, uintptr_t rdma_buffer,
             uint64_t rdma_buffer_bytes, bool rdma_buffer_on_device, int device,
             bool low_latency_mode, const std::string& transport, uint32_t num_queues,
             uint32_t queue_capacity, bool host_queues, nb::object all_gather) {
            const CommandPathOptions o = command_path_options(
                rank, num_ranks, local_rank, rdma_buffer, rdma_buffer_bytes, rdma_buffer_on_device,
                device, low_latency_mode, transport, num_queues, queue_capacity, host_queues);
            const AllGather gather = python_all_gather(std::move(all_gather));
            nb::gil_scoped_release release;  // collective: other ranks may be threads here
            new (self) CommandPath(o, gather);
          },
          nb::arg("rank"), nb::arg("num_ranks"), nb::arg("local_rank"), nb::arg("rdma_buffer"),
          nb::arg("rdma_buffer_bytes"), nb::arg("rdma_buffer_on_device"), nb::arg("device"),
          nb::arg("low_latency_mode"), nb::arg("transport") = "", nb::arg("num_queues") = 32,
          nb::arg("queue_capacity") = 2048, nb::arg("host_queues") = false, nb::arg("all_gather"))
      .def("check", &CommandPath::check,
           "Raises RuntimeError with the proxies' first error, if any.")
      .def(
          "stop",
          [](CommandPath& c, bool drain) {
            CommandPathStop r;
            {
              nb::gil_scoped_release release;
              r = c.stop(drain);
            }
            return std::make_tuple(r.status, r.message);
          },
          nb::arg("drain") = true,
          "Stops the proxy threads; returns (status, message), status one of 'drained', "
          "'abandoned', 'failed', 'not started'.")
      .def_prop_ro("transport", &CommandPath::transport)
      .def_prop_ro("num_threads", &CommandPath::num_proxy_threads)
      .def_prop_ro("num_queues", &CommandPath::num_queues)
      .def_prop_ro("queue_capacity", &CommandPath::queue_capacity)
      .def("stats", &CommandPath::stats, "Counters summed over the proxy threads.");
  m.def("cuda_device_count", &cuda_device_count, "CUDA devices visible (0 without a driver).");
  m.def(
      "current_cuda_device",
      [] {
        int d = -1;
        if (cuda_device_count() == 0 || cudaGetDevice(&d) != cudaSuccess) {
          cudaGetLastError();
          return -1;
        }
        return d;
      },
      "The current CUDA device, or -1 without one.");
  m.def(
      "proxy_env_settings",
      [] {
        const EnvSettings e = read_env_settings();
        nb::dict d;
        d["transport"] = e.transport;
        d["fi_provider"] = e.fi_provider;
        d["timeout_secs"] = e.timeout_secs;
        d["num_proxy_threads"] = e.num_proxy_threads;
        d["max_inflight_normal"] = e.max_inflight_normal;
        d["max_inflight_low_latency"] = e.max_inflight_low_latency;
        d["max_inflight_bytes"] = e.max_inflight_bytes;
        d["disable_cpu_affinity"] = e.disable_cpu_affinity;
        d["num_local_ranks"] = e.num_local_ranks;
        d["socket_ifname"] = e.socket_ifname;
        d["ib_gid_index"] = e.ib_gid_index;
        d["ib_service_level"] = e.ib_service_level;
        d["ib_traffic_class"] = e.ib_traffic_class;
        d["aggressive_atomic"] = e.aggressive_atomic;
        return d;
      },
      "Parses the environment variables now; raises ValueError naming one that does not parse.");
}

}  // namespace uccl::ep::bindings
