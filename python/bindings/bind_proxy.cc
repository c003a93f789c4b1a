// Bindings of the command path's control plane: one rank's ProxySession (queues, signal
// region, transports, CPU proxy threads) for uccl.ep.initialize_uccl / destroy_uccl, the
// command encoders, and a host producer for tests.
#include <cuda_runtime_api.h>
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "common/env.h"
#include "common/error.h"
#include "common/log.h"
#include "protocol/command.h"
#include "protocol/command_limits.h"
#include "proxy/session.h"
#include "queue/host_producer.h"
#include "queue/queue_memory.h"

namespace uccl::ep::bindings {

namespace nb = nanobind;

namespace {

using Words = std::tuple<uint64_t, uint64_t>;

Words words(const protocol::Command& c) {
  return {c.word0, c.word1};
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

// The session plus what the bindings need around it.
class PySession {
 public:
  struct Args {
    int rank, num_ranks, local_rank;
    uintptr_t scratch_ptr;
    uint64_t scratch_nbytes;
    bool scratch_is_device;
    int device;  // -1: no GPU (host queues)
    bool low_latency_mode, host_queues;
    uint32_t num_queues, queue_capacity;
    std::string transport;  // "" = UCCL_EP_TRANSPORT
    std::string fake_fabric_key;
  };

  explicit PySession(const Args& a) {
    const EnvSettings env = read_env_settings();  // raises ValueError naming a bad variable
    set_log_level(env.log_level);
    UCCL_EP_CHECK_VALUE(a.scratch_ptr != 0 && a.scratch_nbytes > 0,
                        "initialize_uccl: the scratch (RDMA) buffer is empty (ptr ", a.scratch_ptr,
                        ", ", a.scratch_nbytes, " bytes)");
    protocol::check_buffer_limits("initialize_uccl: scratch_nbytes", a.scratch_nbytes);
    proxy::SessionOptions o;
    o.proxy = proxy::proxy_options_from_env(env);
    o.proxy.rank = a.rank;
    o.proxy.num_ranks = a.num_ranks;
    o.proxy.local_rank = a.local_rank;
    o.proxy.low_latency_mode = a.low_latency_mode;
    o.transport = a.transport.empty() ? env.transport : parse_transport_name(a.transport);
    o.fi_provider = env.fi_provider == "auto" ? "" : env.fi_provider;
    o.cuda_device = a.device;
    o.num_queues = a.num_queues;
    o.queue_capacity = a.queue_capacity;
    o.data = transport::Region{reinterpret_cast<void*>(a.scratch_ptr), a.scratch_nbytes,
                               a.scratch_is_device, ""};
    o.fake_fabric_key = a.fake_fabric_key;
    if (a.device >= 0) {
      char bus[32] = {};
      if (cudaDeviceGetPCIBusId(bus, sizeof(bus), a.device) == cudaSuccess)
        o.proxy.gpu_pci_bus_id = bus;
      cudaGetLastError();
    }
    host_queues_ = a.host_queues || a.device < 0;
    session_ = std::make_unique<proxy::ProxySession>(
        o, host_queues_ ? queue::make_host_queue_allocator()
                        : queue::make_cuda_queue_allocator(a.device));
    timeout_ = std::chrono::nanoseconds(static_cast<int64_t>(o.proxy.timeout_secs * 1e9));
  }

  proxy::ProxySession& session() { return *session_; }

  /// Host producer of `queue` (tests; host queues only).
  queue::HostProducer producer(uint32_t queue, double timeout_secs) const {
    UCCL_EP_CHECK_VALUE(host_queues_,
                        "host pushes need host queues (initialize_uccl(..., _host_queues=True)); "
                        "these queues are pushed by GPU kernels");
    const auto t = timeout_secs > 0
                       ? std::chrono::nanoseconds(static_cast<int64_t>(timeout_secs * 1e9))
                       : timeout_;
    return queue::HostProducer(session_->queues().host_producer_handle(queue), t);
  }

 private:
  std::unique_ptr<proxy::ProxySession> session_;
  bool host_queues_ = false;
  std::chrono::nanoseconds timeout_{};
};

nb::dict stats_dict(const proxy::ThreadStats& s) {
  nb::dict d;
  d["commands"] = s.commands;
  d["posted"] = s.posted;
  d["completed"] = s.completed;
  d["bytes"] = s.bytes;
  d["fences"] = s.fences;
  d["barriers"] = s.barriers;
  d["split_signals"] = s.split_signals;
  d["flow_stalls"] = s.flow_stalls;
  d["retries"] = s.retries;
  d["inflight"] = s.inflight;
  return d;
}

void bind_encoders(nb::module_& m) {
  m.def(
      "encode_write",
      [](uint32_t peer, uint64_t local_offset, uint64_t remote_offset, uint64_t nbytes) {
        protocol::check_write_limits(peer, local_offset, remote_offset, nbytes);
        return words(protocol::encode_write(peer, local_offset, remote_offset, nbytes));
      },
      nb::arg("peer"), nb::arg("local_offset"), nb::arg("remote_offset"), nb::arg("nbytes"),
      "(word0, word1) of a WRITE command; raises ValueError when a field does not fit.");
  m.def(
      "encode_write_signal",
      [](uint32_t peer, uint64_t local_offset, uint64_t remote_offset, uint64_t nbytes,
         uint32_t slot, uint32_t value) {
        protocol::check_write_limits(peer, local_offset, remote_offset, nbytes);
        protocol::check_fused_signal_limits(slot, value);
        return words(
            protocol::encode_write_signal(peer, local_offset, remote_offset, nbytes, slot, value));
      },
      nb::arg("peer"), nb::arg("local_offset"), nb::arg("remote_offset"), nb::arg("nbytes"),
      nb::arg("slot"), nb::arg("value"));
  m.def(
      "encode_atomic_add",
      [](uint32_t peer, uint32_t slot, int64_t value) {
        protocol::check_atomic_limits(peer, slot, value);
        return words(protocol::encode_atomic_add(peer, slot, static_cast<int32_t>(value)));
      },
      nb::arg("peer"), nb::arg("slot"), nb::arg("value"));
  m.def(
      "encode_fence", [](uint32_t sequence) { return words(protocol::encode_fence(sequence)); },
      nb::arg("sequence"));
  m.def(
      "encode_barrier",
      [](uint32_t group, uint32_t sequence) {
        return words(protocol::encode_barrier(group, sequence));
      },
      nb::arg("group"), nb::arg("sequence"));
}

// Test hooks: host pushes into host queues, fence/barrier waits, signal reads.
void bind_session_test_hooks(nb::class_<PySession>& c) {
  c.def(
       "signal",
       [](PySession& s, uint32_t slot) {
         UCCL_EP_CHECK_VALUE(slot < s.session().num_signal_slots(), "signal slot ", slot,
                             " out of range [0, ", s.session().num_signal_slots(), ")");
         return std::atomic_ref<int64_t>(s.session().signals()[slot])
             .load(std::memory_order_acquire);
       },
       nb::arg("slot"), "Acquire load of this rank's signal slot.")
      .def(
          "push",
          [](PySession& s, uint32_t queue, uint64_t word0, uint64_t word1, double timeout_secs) {
            queue::HostProducer p = s.producer(queue, timeout_secs);
            nb::gil_scoped_release release;
            return p.push(protocol::Command{word0, word1});
          },
          nb::arg("queue"), nb::arg("word0"), nb::arg("word1"), nb::arg("timeout_secs") = 0.0,
          "Tests: pushes one command from the host (host queues only); returns its ticket.")
      .def(
          "wait_fence",
          [](PySession& s, uint32_t queue, uint64_t sequence, double timeout_secs) {
            queue::HostProducer p = s.producer(queue, timeout_secs);
            nb::gil_scoped_release release;
            p.wait_fence(sequence);
          },
          nb::arg("queue"), nb::arg("sequence"), nb::arg("timeout_secs") = 0.0)
      .def(
          "wait_barrier",
          [](PySession& s, uint32_t queue, uint64_t sequence, double timeout_secs) {
            queue::HostProducer p = s.producer(queue, timeout_secs);
            nb::gil_scoped_release release;
            p.wait_barrier(sequence);
          },
          nb::arg("queue"), nb::arg("sequence"), nb::arg("timeout_secs") = 0.0);
}

void bind_session(nb::module_& m) {
  nb::class_<PySession> c(m, "ProxySession",
                          "One rank's command path: queues, signal region, transports and CPU "
                          "proxy threads (see uccl.ep.initialize_uccl).");
  c.def(
       "__init__",
       [](PySession* self, int rank, int num_ranks, int local_rank, uintptr_t scratch_ptr,
          uint64_t scratch_nbytes, bool scratch_is_device, int device, bool low_latency_mode,
          uint32_t num_queues, uint32_t queue_capacity, const std::string& transport,
          bool host_queues, const std::string& fake_fabric_key) {
         new (self)
             PySession(PySession::Args{rank, num_ranks, local_rank, scratch_ptr, scratch_nbytes,
                                       scratch_is_device, device, low_latency_mode, host_queues,
                                       num_queues, queue_capacity, transport, fake_fabric_key});
       },
       nb::arg("rank"), nb::arg("num_ranks"), nb::arg("local_rank"), nb::arg("scratch_ptr"),
       nb::arg("scratch_nbytes"), nb::arg("scratch_is_device"), nb::arg("device"),
       nb::arg("low_latency_mode"), nb::arg("num_queues") = 32, nb::arg("queue_capacity") = 2048,
       nb::arg("transport") = "", nb::arg("host_queues") = false,
       nb::arg("fake_fabric_key") = "python")
      .def("local_address",
           [](PySession& s) {
             const std::vector<uint8_t> a = s.session().local_address();
             return nb::bytes(reinterpret_cast<const char*>(a.data()), a.size());
           })
      .def(
          "connect",
          [](PySession& s, const std::vector<nb::bytes>& addresses) {
            std::vector<std::vector<uint8_t>> raw;
            for (const nb::bytes& b : addresses) {
              const auto* p = static_cast<const uint8_t*>(b.data());
              raw.emplace_back(p, p + b.size());
            }
            nb::gil_scoped_release release;  // collective: other ranks may be threads here
            s.session().connect(raw);
          },
          nb::arg("addresses"))
      .def("start", [](PySession& s) { s.session().start(); })
      .def(
          "stop",
          [](PySession& s, bool drain) {
            proxy::StopResult r;
            {
              nb::gil_scoped_release release;
              r = s.session().stop(drain ? proxy::StopMode::kDrain : proxy::StopMode::kAbandon);
            }
            return std::make_tuple(std::string(proxy::stop_status_name(r.status)), r.message);
          },
          nb::arg("drain") = true,
          "Stops the proxy threads; returns (status, message), status one of 'drained', "
          "'abandoned', 'failed', 'not started'.")
      .def(
          "check", [](PySession& s) { s.session().check(); },
          "Raises RuntimeError with the proxy's first error, if any.")
      .def_prop_ro(
          "failed",
          [](PySession& s) { return s.session().proxy() && s.session().proxy()->failed(); })
      .def_prop_ro("num_threads", [](PySession& s) { return s.session().num_threads(); })
      .def_prop_ro("num_queues", [](PySession& s) { return s.session().queues().num_queues(); })
      .def_prop_ro("queue_capacity", [](PySession& s) { return s.session().queues().capacity(); })
      .def_prop_ro("transport", [](PySession& s) { return s.session().capabilities().name; })
      .def_prop_ro("num_signal_slots", [](PySession& s) { return s.session().num_signal_slots(); })
      .def_prop_ro("num_user_signal_slots",
                   [](PySession& s) { return s.session().num_user_signal_slots(); })
      .def_prop_ro("signal_name", [](PySession& s) { return s.session().signal_name(); })
      .def_prop_ro("cpus",
                   [](PySession& s) {
                     return s.session().proxy() ? s.session().proxy()->cpus() : std::vector<int>{};
                   })
      .def("stats", [](PySession& s) {
        return stats_dict(s.session().proxy() ? s.session().proxy()->total_stats()
                                              : proxy::ThreadStats{});
      });
  bind_session_test_hooks(c);
}

}  // namespace

void bind_proxy(nb::module_& m) {
  bind_encoders(m);
  bind_session(m);
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
        return d;
      },
      "Parses the command-path variables now; raises ValueError naming one that does not "
      "parse.");
}

}  // namespace uccl::ep::bindings
