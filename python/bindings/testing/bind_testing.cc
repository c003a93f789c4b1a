// The submodule uccl.ep._C._testing: hooks for tests and diagnostics that reach inside the
// runtime (command encoders, host pushes into host queues, signal reads, fake transports,
// the RDMA domain's test writes, the wait profile, the transport floor). Not part of the public
// API.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "../all_gather.h"
#include "common/error.h"
#include "kernels/intranode/launch.h"
#include "kernels/rdma/launch.h"
#include "protocol/command.h"
#include "protocol/command_limits.h"
#include "proxy/testing/fake_transport_factory.h"
#include "queue/host_producer.h"
#include "runtime/buffer_impl.h"
#include "runtime/rdma_domain.h"

namespace uccl::ep::bindings {

CommandPathOptions command_path_options(int rank, int num_ranks, int local_rank,
                                        uintptr_t rdma_buffer, uint64_t rdma_buffer_bytes,
                                        bool rdma_buffer_on_device, int device,
                                        bool low_latency_mode, const std::string& transport,
                                        uint32_t num_queues, uint32_t queue_capacity,
                                        bool host_queues);

void bind_transport_floor(nb::module_& m);  // transport_floor.cc

namespace {

using Words = std::tuple<uint64_t, uint64_t>;

Words words(const protocol::Command& c) {
  return {c.word0, c.word1};
}

runtime::RdmaDomain& domain_of(CommandPath& c) {
  return *c.impl().domain;
}

/// A host producer of `queue` (host queues only).
queue::HostProducer producer(CommandPath& c, uint32_t queue, double timeout_secs) {
  runtime::RdmaDomain& d = domain_of(c);
  UCCL_EP_CHECK_VALUE(d.host_queues(),
                      "host pushes need host queues (initialize_uccl(..., _host_queues=True)); "
                      "these queues are pushed by GPU kernels");
  const double secs = timeout_secs > 0 ? timeout_secs : d.session().options().proxy.timeout_secs;
  return queue::HostProducer(d.session().queues().host_producer_handle(queue),
                             std::chrono::nanoseconds(static_cast<int64_t>(secs * 1e9)));
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

void bind_command_path_hooks(nb::module_& m) {
  m.def(
      "fake_command_path",
      [](const std::string& fabric_key, int rank, int num_ranks, uintptr_t rdma_buffer,
         uint64_t rdma_buffer_bytes, bool low_latency_mode, nb::object all_gather) {
        const CommandPathOptions o =
            command_path_options(rank, num_ranks, rank, rdma_buffer, rdma_buffer_bytes, false, -1,
                                 low_latency_mode, "fake", 32, 2048, true);
        const TransportInjection injection{proxy::testing::fake_transport_factory(fabric_key),
                                           "fake"};
        const AllGather gather = python_all_gather(std::move(all_gather));
        nb::gil_scoped_release release;
        return new CommandPath(o, gather, &injection);
      },
      nb::arg("fabric_key"), nb::arg("rank"), nb::arg("num_ranks"), nb::arg("rdma_buffer"),
      nb::arg("rdma_buffer_bytes"), nb::arg("low_latency_mode"), nb::arg("all_gather"),
      nb::rv_policy::take_ownership,
      "A CommandPath over in-memory fake transports shared by the ranks (threads) of this "
      "process with the same fabric_key; host queues, host RDMA buffer.");
  m.def(
      "signal",
      [](CommandPath& c, uint32_t slot) {
        proxy::ProxySession& s = domain_of(c).session();
        UCCL_EP_CHECK_VALUE(slot < s.num_signal_slots(), "signal slot ", slot, " out of range [0, ",
                            s.num_signal_slots(), ")");
        return std::atomic_ref<int64_t>(s.signals()[slot]).load(std::memory_order_acquire);
      },
      nb::arg("path"), nb::arg("slot"), "Acquire load of this rank's signal slot.");
  m.def(
      "push",
      [](CommandPath& c, uint32_t queue, uint64_t word0, uint64_t word1, double timeout_secs) {
        queue::HostProducer p = producer(c, queue, timeout_secs);
        nb::gil_scoped_release release;
        return p.push(protocol::Command{word0, word1});
      },
      nb::arg("path"), nb::arg("queue"), nb::arg("word0"), nb::arg("word1"),
      nb::arg("timeout_secs") = 0.0,
      "Pushes one command from the host (host queues only); returns its ticket.");
  m.def(
      "wait_fence",
      [](CommandPath& c, uint32_t queue, uint64_t sequence, double timeout_secs) {
        queue::HostProducer p = producer(c, queue, timeout_secs);
        nb::gil_scoped_release release;
        p.wait_fence(sequence);
      },
      nb::arg("path"), nb::arg("queue"), nb::arg("sequence"), nb::arg("timeout_secs") = 0.0);
  m.def(
      "wait_barrier",
      [](CommandPath& c, uint32_t queue, uint64_t sequence, double timeout_secs) {
        queue::HostProducer p = producer(c, queue, timeout_secs);
        nb::gil_scoped_release release;
        p.wait_barrier(sequence);
      },
      nb::arg("path"), nb::arg("queue"), nb::arg("sequence"), nb::arg("timeout_secs") = 0.0);
  m.def(
      "proxy_failed",
      [](CommandPath& c) {
        proxy::Proxy* p = domain_of(c).session().proxy();
        return p != nullptr && p->failed();
      },
      nb::arg("path"));
  m.def(
      "proxy_cpus",
      [](CommandPath& c) {
        proxy::Proxy* p = domain_of(c).session().proxy();
        return p != nullptr ? p->cpus() : std::vector<int>{};
      },
      nb::arg("path"));
}

void bind_buffer_hooks(nb::module_& m) {
  m.def(
      "rdma_test_write",
      [](Buffer& b, int peer, uint64_t local_offset, uint64_t remote_offset, uint64_t nbytes,
         uintptr_t stream) {
        Buffer::Impl& s = b.impl();
        s.require_ready("rdma_test_write");
        UCCL_EP_CHECK_VALUE(s.rdma != nullptr, "rdma_test_write: the Buffer has no RDMA domain");
        protocol::check_write_limits(static_cast<uint32_t>(peer), local_offset, remote_offset,
                                     nbytes);
        constexpr uint32_t kQueue = 1;  // queue 0 carries the runtime's barriers
        runtime::DeviceGuard guard(s.options.device);
        kernels::rdma::launch_test_write(
            {s.rdma->device_handles()[kQueue], peer, local_offset, remote_offset, nbytes,
             s.rdma->next_fence_sequence(kQueue), s.diag()},
            reinterpret_cast<cudaStream_t>(stream));
      },
      nb::arg("buffer"), nb::arg("peer"), nb::arg("local_offset"), nb::arg("remote_offset"),
      nb::arg("nbytes"), nb::arg("stream"),
      "Enqueues on `stream` a kernel that writes `nbytes` of this rank's RDMA buffer to `peer`'s "
      "through the command path and waits until they landed (a FENCE).");
  m.def(
      "wait_profile",
      [](const std::string& kernel, bool reset) {
        if (kernel == "dispatch") return kernels::intranode::read_dispatch_wait_profile(reset);
        if (kernel == "combine") return kernels::intranode::read_combine_wait_profile(reset);
        throw Error(ErrorKind::kValue,
                    str_cat("wait_profile kernel='", kernel, "' must be 'dispatch' or 'combine'"));
      },
      nb::arg("kernel"), nb::arg("reset") = true,
      "Diagnostic builds (-DUCCL_EP_WAIT_PROFILE=ON): summed wait ns per WaitSite (16), then "
      "summed warp run ns per role (send, self, recv, publish) since the last reset. Empty "
      "otherwise. Synchronize the device first.");
}

}  // namespace

void bind_testing(nb::module_& m) {
  nb::module_ t = m.def_submodule("_testing", "Test and diagnostic hooks (not a public API).");
  bind_encoders(t);
  bind_command_path_hooks(t);
  bind_buffer_hooks(t);
  bind_transport_floor(t);
}

}  // namespace uccl::ep::bindings
