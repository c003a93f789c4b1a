// Bindings of Buffer (uccl_ep/buffer.h): the collective set-up through a Python all-gather,
// health, destroy, stream helpers and views of the NVLink and RDMA buffers.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>

#include <cstdint>
#include <string>

#include "all_gather.h"
#include "byte_view.h"
#include "uccl_ep/buffer.h"

namespace uccl::ep::bindings {

void bind_buffer(nb::module_& m) {
  nb::class_<Buffer>(m, "Buffer",
                     "One rank's runtime: topology, NVLink domain, RDMA domain (when "
                     "num_rdma_bytes > 0) and health. Built collectively.")
      .def(
          "__init__",
          [](Buffer* self, int rank, int num_ranks, int num_local_ranks, int device,
             int64_t num_nvl_bytes, int64_t num_rdma_bytes, bool low_latency_mode,
             const std::string& host_name, nb::object all_gather) {
            BufferOptions o;
            o.rank = rank;
            o.num_ranks = num_ranks;
            o.num_local_ranks = num_local_ranks;
            o.device = device;
            o.num_nvl_bytes = num_nvl_bytes;
            o.num_rdma_bytes = num_rdma_bytes;
            o.low_latency_mode = low_latency_mode;
            o.host_name = host_name;
            const AllGather gather = python_all_gather(std::move(all_gather));
            nb::gil_scoped_release release;  // collective: the all-gather takes the GIL back
            new (self) Buffer(o, gather);
          },
          nb::arg("rank"), nb::arg("num_ranks"), nb::arg("num_local_ranks"), nb::arg("device"),
          nb::arg("num_nvl_bytes"), nb::arg("num_rdma_bytes"), nb::arg("low_latency_mode"),
          nb::arg("host_name"), nb::arg("all_gather"),
          "Collective. all_gather(bytes) -> list of bytes (one per rank). Raises the local error "
          "on a failing rank and RuntimeError naming the failed ranks on the others.")
      .def(
          "check", [](const Buffer& b, const std::string& op) { b.check(op.c_str()); },
          nb::arg("op") = "check", "Raises RuntimeError with the recorded error, if any.")
      .def("is_available", &Buffer::is_available)
      .def("destroy", &Buffer::destroy, nb::call_guard<nb::gil_scoped_release>(),
           "Collective: waits (on the GPU, with the deadline) for every rank, then frees.")
      .def(
          "stream_wait",
          [](Buffer& b, uintptr_t waiter, uintptr_t waitee) {
            b.stream_wait(reinterpret_cast<cudaStream_t>(waiter),
                          reinterpret_cast<cudaStream_t>(waitee));
          },
          nb::arg("waiter"), nb::arg("waitee"),
          "Makes stream `waiter` wait for the work queued on `waitee` so far (raw handles).")
      .def(
          "stream_wait_event",
          [](Buffer& b, uintptr_t waiter, uintptr_t event) {
            b.stream_wait_event(reinterpret_cast<cudaStream_t>(waiter),
                                reinterpret_cast<cudaEvent_t>(event));
          },
          nb::arg("waiter"), nb::arg("event"),
          "Makes stream `waiter` wait for a recorded CUDA event (raw handles; 0: no wait).")
      .def(
          "nvl_buffer",
          [](nb::handle self) {
            const auto& b = nb::cast<const Buffer&>(self);
            return byte_view(self, b.nvl_buffer(), b.options().num_nvl_bytes, b.options().device);
          },
          "1-D uint8 view (DLPack) of this rank's NVLink buffer; valid until destroy().")
      .def(
          "rdma_buffer",
          [](nb::handle self) {
            const auto& b = nb::cast<const Buffer&>(self);
            return byte_view(self, b.rdma_buffer(), b.options().num_rdma_bytes, b.options().device);
          },
          "1-D uint8 view (DLPack) of this rank's RDMA buffer (empty without one).")
      .def_prop_ro("rank", [](const Buffer& b) { return b.topology().rank; })
      .def_prop_ro("num_ranks", [](const Buffer& b) { return b.topology().num_ranks; })
      .def_prop_ro("num_local_ranks", [](const Buffer& b) { return b.topology().num_local_ranks; })
      .def_prop_ro("num_nodes", [](const Buffer& b) { return b.topology().num_nodes(); })
      .def_prop_ro("local_rank", [](const Buffer& b) { return b.topology().local_rank(); })
      .def_prop_ro("topology", [](const Buffer& b) { return b.topology().describe(); })
      .def_prop_ro(
          "transport", [](const Buffer& b) { return b.rdma_info().transport; },
          "The RDMA domain's transport ('' without one).")
      .def_prop_ro("num_proxy_threads",
                   [](const Buffer& b) { return b.rdma_info().num_proxy_threads; });
  m.def(
      "buffer_setup_failure",
      [](int rank, const std::string& message) {
        return to_bytes(buffer_setup_failure(rank, message));
      },
      nb::arg("rank"), nb::arg("message"),
      "What a rank that failed before building its Buffer sends in the Buffer's first "
      "all-gather, so that its peers raise instead of waiting.");
}

}  // namespace uccl::ep::bindings
