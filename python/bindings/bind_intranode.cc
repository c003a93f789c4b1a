// Bindings of the intranode mode (uccl_ep/intranode.h) and of get_dispatch_layout
// (uccl_ep/routing.h): every tensor argument is passed by keyword; unknown keywords raise
// TypeError. BufferInfo.check_* run the same validation without a GPU.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <tuple>
#include <vector>

#include "kwargs.h"
#include "uccl_ep/intranode.h"
#include "uccl_ep/routing.h"

namespace uccl::ep::bindings {
namespace {

LayoutTensors layout_tensors(Kw& k) {
  LayoutTensors t;
  t.topk_idx = k.tensor("topk_idx");
  t.num_experts = k.integer("num_experts", 0);
  t.num_tokens_per_rank = k.tensor("num_tokens_per_rank");
  t.num_tokens_per_rdma_rank = k.tensor("num_tokens_per_rdma_rank");
  t.num_tokens_per_expert = k.tensor("num_tokens_per_expert");
  t.is_token_in_rank = k.tensor("is_token_in_rank");
  return t;
}

DispatchTensors dispatch_tensors(Kw& k) {
  DispatchTensors t;
  t.x = k.tensor("x");
  t.x_scales = k.tensor("x_scales");
  t.topk_idx = k.tensor("topk_idx");
  t.topk_weights = k.tensor("topk_weights");
  t.is_token_in_rank = k.tensor("is_token_in_rank");
  t.rank_prefix_matrix = k.tensor("rank_prefix_matrix");
  t.channel_prefix_matrix = k.tensor("channel_prefix_matrix");
  t.num_experts = k.integer("num_experts", 0);
  t.num_worst_tokens = k.integer("num_worst_tokens", 0);
  t.cached = k.boolean("cached", false);
  t.config = k.config();
  t.recv_x = k.tensor("recv_x");
  t.recv_x_scales = k.tensor("recv_x_scales");
  t.recv_topk_idx = k.tensor("recv_topk_idx");
  t.recv_topk_weights = k.tensor("recv_topk_weights");
  t.recv_src_idx = k.tensor("recv_src_idx");
  t.recv_channel_prefix_matrix = k.tensor("recv_channel_prefix_matrix");
  t.send_head = k.tensor("send_head");
  return t;
}

/// The dispatch inputs plus the count tensors; dispatch outputs are not read.
NotifyTensors notify_tensors(Kw& k) {
  NotifyTensors t;
  DispatchTensors& d = t.dispatch;
  d.x = k.tensor("x");
  d.x_scales = k.tensor("x_scales");
  d.topk_idx = k.tensor("topk_idx");
  d.topk_weights = k.tensor("topk_weights");
  d.is_token_in_rank = k.tensor("is_token_in_rank");
  d.rank_prefix_matrix = k.tensor("rank_prefix_matrix");
  d.channel_prefix_matrix = k.tensor("channel_prefix_matrix");
  d.num_experts = k.integer("num_experts", 0);
  d.num_worst_tokens = k.integer("num_worst_tokens", 0);
  d.config = k.config();
  t.num_tokens_per_rank = k.tensor("num_tokens_per_rank");
  t.num_tokens_per_expert = k.tensor("num_tokens_per_expert");
  t.expert_alignment = k.integer("expert_alignment", 1);
  t.wait_for_counts = d.num_worst_tokens == 0;
  return t;
}

CombineTensors combine_tensors(Kw& k) {
  CombineTensors t;
  t.x = k.tensor("x");
  t.topk_weights = k.tensor("topk_weights");
  t.bias0 = k.tensor("bias0");
  t.bias1 = k.tensor("bias1");
  t.rank_prefix_matrix = k.tensor("rank_prefix_matrix");
  t.recv_channel_prefix_matrix = k.tensor("recv_channel_prefix_matrix");
  t.recv_src_idx = k.tensor("recv_src_idx");
  t.is_token_in_rank = k.tensor("is_token_in_rank");
  t.send_head = k.tensor("send_head");
  t.config = k.config();
  t.combined_x = k.tensor("combined_x");
  t.combined_topk_weights = k.tensor("combined_topk_weights");
  return t;
}

void bind_buffer_info(nb::module_& m) {
  nb::class_<BufferInfo>(m, "BufferInfo",
                         "Facts about a buffer that argument validation needs; check_* run the "
                         "validation of each call (IntranodeOps, InternodeOps, LowLatencyOps) "
                         "without a GPU.")
      .def(nb::init<>())
      .def(
          "__init__",
          [](BufferInfo* self, int rank, int num_ranks, int64_t num_nvl_bytes, int device_index,
             int64_t num_rdma_bytes, bool low_latency_mode, int num_local_ranks) {
            new (self) BufferInfo{rank,           num_ranks,        num_nvl_bytes,  device_index,
                                  num_rdma_bytes, low_latency_mode, num_local_ranks};
          },
          nb::arg("rank"), nb::arg("num_ranks"), nb::arg("num_nvl_bytes"),
          nb::arg("device_index") = 0, nb::arg("num_rdma_bytes") = 0,
          nb::arg("low_latency_mode") = false, nb::arg("num_local_ranks") = 0)
      .def_rw("rank", &BufferInfo::rank)
      .def_rw("num_ranks", &BufferInfo::num_ranks)
      .def_rw("num_nvl_bytes", &BufferInfo::num_nvl_bytes)
      .def_rw("device_index", &BufferInfo::device_index)
      .def_rw("num_rdma_bytes", &BufferInfo::num_rdma_bytes)
      .def_rw("low_latency_mode", &BufferInfo::low_latency_mode)
      .def_rw("num_local_ranks", &BufferInfo::num_local_ranks,
              "Ranks per NVLink domain (node); 0: every rank in one domain.")
      .def_prop_ro("num_nodes", &BufferInfo::num_nodes)
      .def("check_layout",
           [](const BufferInfo& info, nb::kwargs kw) {
             Kw k(kw, "get_dispatch_layout");
             const auto t = layout_tensors(k);
             k.finish();
             validate_layout(info, t);
           })
      .def("check_notify",
           [](const BufferInfo& info, nb::kwargs kw) {
             Kw k(kw, "notify_dispatch");
             const auto t = notify_tensors(k);
             k.finish();
             validate_notify(info, t);
           })
      .def("check_dispatch",
           [](const BufferInfo& info, nb::kwargs kw) {
             Kw k(kw, "dispatch");
             const auto t = dispatch_tensors(k);
             k.finish();
             validate_dispatch(info, t);
           })
      .def("check_combine", [](const BufferInfo& info, nb::kwargs kw) {
        Kw k(kw, "combine");
        const auto t = combine_tensors(k);
        k.finish();
        validate_combine(info, t);
      });
}

}  // namespace

void bind_intranode(nb::module_& m) {
  bind_buffer_info(m);
  // A method of Buffer (bound in bind_buffer.cc): the routing step of every normal mode.
  nb::type<Buffer>().attr("get_dispatch_layout") = nb::cpp_function(
      [](Buffer& b, nb::kwargs kw) {
        Kw k(kw, "get_dispatch_layout");
        const auto t = layout_tensors(k);
        const cudaStream_t s = k.stream();
        k.finish();
        get_dispatch_layout(b, t, s);
      },
      nb::is_method(), nb::name("get_dispatch_layout"), nb::scope(nb::type<Buffer>()),
      "The layout kernel (tensors by keyword).");
  nb::class_<IntranodeOps>(m, "IntranodeOps",
                           "The intranode mode's operations on a Buffer whose ranks share one "
                           "NVLink domain (2, 4 or 8 GPUs).")
      .def(nb::init<Buffer&>(), nb::arg("buffer"), nb::keep_alive<1, 2>())
      .def("notify_dispatch",
           [](IntranodeOps& ops, nb::kwargs kw) {
             Kw k(kw, "dispatch");
             const auto t = notify_tensors(k);
             const cudaStream_t s = k.stream();
             k.finish();
             NotifyResult r;
             {
               nb::gil_scoped_release release;
               r = ops.notify_dispatch(t, s);
             }
             return std::make_tuple(r.num_recv_tokens, r.num_recv_tokens_per_expert);
           })
      .def("dispatch",
           [](IntranodeOps& ops, nb::kwargs kw) {
             Kw k(kw, "dispatch");
             const auto t = dispatch_tensors(k);
             const cudaStream_t s = k.stream();
             k.finish();
             ops.dispatch(t, s);
           })
      .def("combine", [](IntranodeOps& ops, nb::kwargs kw) {
        Kw k(kw, "combine");
        const auto t = combine_tensors(k);
        const cudaStream_t s = k.stream();
        k.finish();
        ops.combine(t, s);
      });
}

}  // namespace uccl::ep::bindings
