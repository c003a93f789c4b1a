// Bindings of the low-latency mode (uccl_ep/low_latency.h): LowLatencyOps, whose tensor
// arguments are passed by keyword (the field names of LowLatencyDispatchTensors /
// LowLatencyCombineTensors; unknown keywords raise TypeError), and BufferInfo's
// check_low_latency_* (the same validation without a GPU).
#include <nanobind/nanobind.h>
#include <nanobind/stl/tuple.h>

#include <cstdint>
#include <tuple>

#include "byte_view.h"
#include "kwargs.h"
#include "tensor_convert.h"
#include "uccl_ep/low_latency.h"

namespace uccl::ep::bindings {
namespace {

LowLatencyDispatchTensors dispatch_tensors(Kw& k) {
  LowLatencyDispatchTensors t;
  t.x = k.tensor("x");
  t.topk_idx = k.tensor("topk_idx");
  t.num_max_dispatch_tokens_per_rank = k.integer("num_max_dispatch_tokens_per_rank", 0);
  t.num_experts = k.integer("num_experts", 0);
  t.use_fp8 = k.boolean("use_fp8", true);
  t.round_scale = k.boolean("round_scale", false);
  t.use_ue8m0 = k.boolean("use_ue8m0", false);
  t.cumulative_local_expert_recv_stats = k.tensor("cumulative_local_expert_recv_stats");
  t.dispatch_wait_recv_cost_stats = k.tensor("dispatch_wait_recv_cost_stats");
  t.recv_x = k.tensor("recv_x");
  t.recv_x_scales = k.tensor("recv_x_scales");
  t.recv_count = k.tensor("recv_count");
  t.recv_src_info = k.tensor("recv_src_info");
  t.recv_layout_range = k.tensor("recv_layout_range");
  return t;
}

LowLatencyCombineTensors combine_tensors(Kw& k) {
  LowLatencyCombineTensors t;
  t.x = k.tensor("x");
  t.topk_idx = k.tensor("topk_idx");
  t.topk_weights = k.tensor("topk_weights");
  t.src_info = k.tensor("src_info");
  t.layout_range = k.tensor("layout_range");
  t.num_max_dispatch_tokens_per_rank = k.integer("num_max_dispatch_tokens_per_rank", 0);
  t.num_experts = k.integer("num_experts", 0);
  t.use_logfmt = k.boolean("use_logfmt", false);
  t.zero_copy = k.boolean("zero_copy", false);
  t.combine_wait_recv_cost_stats = k.tensor("combine_wait_recv_cost_stats");
  t.combined_x = k.tensor("combined_x");
  return t;
}

LowLatencyPhase to_phase(int phase, const char* op) {
  UCCL_EP_CHECK_VALUE(phase >= 1 && phase <= 3, op, ": phase=", phase,
                      " must be 1 (send), 2 (receive) or 3 (both)");
  return static_cast<LowLatencyPhase>(phase);
}

cudaStream_t to_stream(uintptr_t stream) {
  return reinterpret_cast<cudaStream_t>(stream);
}

/// (bytes, shape, strides): a 1-D uint8 view covering the elements of `v` (bfloat16), and the
/// shape and strides (in elements) that make it `v` again (torch: view(bfloat16).as_strided).
nb::tuple strided_bytes(nb::handle owner, const TensorView& v) {
  int64_t extent = 1;  // elements from the first to one past the last
  for (int i = 0; i < v.ndim; ++i) extent += (v.shape[i] - 1) * v.strides[i];
  for (int i = 0; i < v.ndim; ++i)
    if (v.shape[i] == 0) extent = 0;
  nb::list shape, strides;
  for (int i = 0; i < v.ndim; ++i) {
    shape.append(v.shape[i]);
    strides.append(v.strides[i]);
  }
  return nb::make_tuple(byte_view(owner, v.data, extent * dtype_size(v.dtype), v.device_index),
                        nb::tuple(shape), nb::tuple(strides));
}

void bind_checks() {
  // Methods of BufferInfo (bound in bind_intranode.cc).
  nb::handle info = nb::type<BufferInfo>();
  info.attr("check_low_latency_dispatch") = nb::cpp_function(
      [](const BufferInfo& b, nb::kwargs kw) {
        Kw k(kw, "low_latency_dispatch");
        const auto t = dispatch_tensors(k);
        k.finish();
        validate_low_latency_dispatch(b, t);
      },
      nb::is_method(), nb::name("check_low_latency_dispatch"), nb::scope(info),
      "The checks of LowLatencyOps.dispatch (tensors by keyword), without a GPU.");
  info.attr("check_low_latency_combine") = nb::cpp_function(
      [](const BufferInfo& b, nb::kwargs kw) {
        Kw k(kw, "low_latency_combine");
        const auto t = combine_tensors(k);
        k.finish();
        validate_low_latency_combine(b, t);
      },
      nb::is_method(), nb::name("check_low_latency_combine"), nb::scope(info),
      "The checks of LowLatencyOps.combine (tensors by keyword), without a GPU.");
}

}  // namespace

void bind_low_latency(nb::module_& m) {
  bind_checks();
  nb::class_<LowLatencyOps>(m, "LowLatencyOps",
                            "The low-latency mode's operations on a Buffer built with "
                            "low_latency_mode and an RDMA buffer. Streams are raw cudaStream_t "
                            "handles (int); phase: 1 send, 2 receive, 3 both. num_sms: at most "
                            "that many blocks per kernel; 0 (the default): up to every SM of "
                            "the device, as DeepEP's low-latency kernels.")
      .def(nb::init<Buffer&, bool, int, bool>(), nb::arg("buffer"), nb::arg("allow_nvlink"),
           nb::arg("num_sms") = 0, nb::arg("enable_shrink") = false, nb::keep_alive<1, 2>())
      .def(
          "dispatch",
          [](LowLatencyOps& ops, int phase, uintptr_t stream, nb::kwargs kw) {
            Kw k(kw, "low_latency_dispatch");
            const auto t = dispatch_tensors(k);
            k.finish();
            return ops.dispatch(t, to_phase(phase, "low_latency_dispatch"), to_stream(stream));
          },
          nb::arg("phase"), nb::arg("stream"), nb::arg("tensors"),
          "Launches the phases of a dispatch; returns the buffer half it uses.")
      .def(
          "dispatch_recv",
          [](LowLatencyOps& ops, int half, uintptr_t stream, nb::kwargs kw) {
            Kw k(kw, "low_latency_dispatch");
            const auto t = dispatch_tensors(k);
            k.finish();
            ops.dispatch_recv(t, half, to_stream(stream));
          },
          nb::arg("half"), nb::arg("stream"), nb::arg("tensors"),
          "The receive phase of a dispatch launched with phase 1 (same tensors, its half).")
      .def(
          "combine",
          [](LowLatencyOps& ops, int phase, uintptr_t stream, nb::kwargs kw) {
            Kw k(kw, "low_latency_combine");
            const auto t = combine_tensors(k);
            k.finish();
            return ops.combine(t, to_phase(phase, "low_latency_combine"), to_stream(stream));
          },
          nb::arg("phase"), nb::arg("stream"), nb::arg("tensors"),
          "Launches the phases of a combine; returns the buffer half it uses.")
      .def(
          "combine_recv",
          [](LowLatencyOps& ops, int half, uintptr_t stream, nb::kwargs kw) {
            Kw k(kw, "low_latency_combine");
            const auto t = combine_tensors(k);
            k.finish();
            ops.combine_recv(t, half, to_stream(stream));
          },
          nb::arg("half"), nb::arg("stream"), nb::arg("tensors"),
          "The receive phase of a combine launched with phase 1 (same tensors, its half).")
      .def(
          "clean",
          [](LowLatencyOps& ops, int num_max_dispatch_tokens_per_rank, int hidden, int num_experts,
             uintptr_t stream) {
            nb::gil_scoped_release release;  // collective
            ops.clean(num_max_dispatch_tokens_per_rank, hidden, num_experts, to_stream(stream));
          },
          nb::arg("num_max_dispatch_tokens_per_rank"), nb::arg("hidden"), nb::arg("num_experts"),
          nb::arg("stream"),
          "Collective: zeroes this rank's signals of both halves between two barriers.")
      .def(
          "next_combine_buffer",
          [](nb::handle self, int num_max_dispatch_tokens_per_rank, int hidden, int num_experts) {
            const auto& ops = nb::cast<const LowLatencyOps&>(self);
            const TensorView v =
                ops.next_combine_buffer(num_max_dispatch_tokens_per_rank, hidden, num_experts);
            return strided_bytes(self, v);
          },
          nb::arg("num_max_dispatch_tokens_per_rank"), nb::arg("hidden"), nb::arg("num_experts"),
          "The next combine's send buffer as (bytes, shape, strides): a 1-D uint8 DLPack view "
          "and the bfloat16 [E, N, H] shape and strides (in elements) to view it with.")
      .def("peer_is_direct", &LowLatencyOps::peer_is_direct, nb::arg("rank"),
           "Whether peer `rank` is written directly (NVLink) rather than through the proxies.")
      .def(
          "update_mask",
          [](LowLatencyOps& ops, int rank, bool masked, uintptr_t stream) {
            ops.update_mask(rank, masked, to_stream(stream));
          },
          nb::arg("rank"), nb::arg("masked"), nb::arg("stream"),
          "Masks (or unmasks) `rank` (enable_shrink), by a kernel on `stream`.")
      .def(
          "query_mask",
          [](const LowLatencyOps& ops, nb::handle out, uintptr_t stream) {
            Imports imports;
            ops.query_mask(imports.view(out, "mask_status"), to_stream(stream));
          },
          nb::arg("mask_status"), nb::arg("stream"),
          "Copies the rank mask (1 = masked) into `mask_status` (int32 [num_ranks], CUDA).")
      .def(
          "clean_mask",
          [](LowLatencyOps& ops, uintptr_t stream) { ops.clean_mask(to_stream(stream)); },
          nb::arg("stream"), "Unmasks every rank, by a kernel on `stream`.");
}

}  // namespace uccl::ep::bindings
