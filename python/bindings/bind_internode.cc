// Bindings of the internode mode (uccl_ep/internode.h): InternodeOps, whose tensor arguments are
// passed by keyword (the handle's fields by their DeepEP names; unknown keywords raise
// TypeError), the buffer-size functions, and BufferInfo's check_internode_* (the same
// validation without a GPU).
#include <nanobind/nanobind.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <tuple>
#include <vector>

#include "kwargs.h"
#include "uccl_ep/internode.h"

namespace uccl::ep::bindings {
namespace {

/// The handle's 10 fields, read by name.
InternodeHandle handle_tensors(Kw& k) {
  InternodeHandle h;
  h.is_token_in_rank = k.tensor("is_token_in_rank");
  h.rdma_channel_prefix_matrix = k.tensor("rdma_channel_prefix_matrix");
  h.gbl_channel_prefix_matrix = k.tensor("gbl_channel_prefix_matrix");
  h.recv_rdma_channel_prefix_matrix = k.tensor("recv_rdma_channel_prefix_matrix");
  h.recv_rdma_rank_prefix_sum = k.tensor("recv_rdma_rank_prefix_sum");
  h.recv_gbl_channel_prefix_matrix = k.tensor("recv_gbl_channel_prefix_matrix");
  h.recv_gbl_rank_prefix_sum = k.tensor("recv_gbl_rank_prefix_sum");
  h.recv_src_meta = k.tensor("recv_src_meta");
  h.send_rdma_head = k.tensor("send_rdma_head");
  h.send_nvl_head = k.tensor("send_nvl_head");
  return h;
}

/// The dispatch inputs (x, scales, top-k, modes, config, handle).
void read_dispatch_inputs(Kw& k, InternodeDispatchTensors& t) {
  t.x = k.tensor("x");
  t.x_scales = k.tensor("x_scales");
  t.topk_idx = k.tensor("topk_idx");
  t.topk_weights = k.tensor("topk_weights");
  t.num_experts = k.integer("num_experts", 0);
  t.num_worst_tokens = k.integer("num_worst_tokens", 0);
  t.config = k.config();
  t.handle = handle_tensors(k);
}

InternodeDispatchTensors dispatch_tensors(Kw& k) {
  InternodeDispatchTensors t;
  read_dispatch_inputs(k, t);
  t.cached = k.boolean("cached", false);
  t.recv_x = k.tensor("recv_x");
  t.recv_x_scales = k.tensor("recv_x_scales");
  t.recv_topk_idx = k.tensor("recv_topk_idx");
  t.recv_topk_weights = k.tensor("recv_topk_weights");
  return t;
}

/// The dispatch inputs plus the count tensors; dispatch outputs are not read.
InternodeNotifyTensors notify_tensors(Kw& k) {
  InternodeNotifyTensors t;
  read_dispatch_inputs(k, t.dispatch);
  t.num_tokens_per_rank = k.tensor("num_tokens_per_rank");
  t.num_tokens_per_rdma_rank = k.tensor("num_tokens_per_rdma_rank");
  t.num_tokens_per_expert = k.tensor("num_tokens_per_expert");
  t.expert_alignment = k.integer("expert_alignment", 1);
  t.wait_for_counts = t.dispatch.num_worst_tokens == 0;
  return t;
}

InternodeCombineTensors combine_tensors(Kw& k) {
  InternodeCombineTensors t;
  t.x = k.tensor("x");
  t.topk_weights = k.tensor("topk_weights");
  t.bias0 = k.tensor("bias0");
  t.bias1 = k.tensor("bias1");
  t.handle = handle_tensors(k);
  t.config = k.config();
  t.combined_x = k.tensor("combined_x");
  t.combined_topk_weights = k.tensor("combined_topk_weights");
  return t;
}

/// BufferInfo.check_internode_* (BufferInfo is bound in bind_intranode.cc).
void bind_checks() {
  nb::handle info = nb::type<BufferInfo>();
  info.attr("check_internode_notify") = nb::cpp_function(
      [](const BufferInfo& b, nb::kwargs kw) {
        Kw k(kw, "notify_dispatch");
        const auto t = notify_tensors(k);
        k.finish();
        validate_internode_notify(b, t);
      },
      nb::is_method(), nb::name("check_internode_notify"), nb::scope(info),
      "The argument checks of InternodeOps.notify_dispatch (tensors by keyword).");
  info.attr("check_internode_dispatch") = nb::cpp_function(
      [](const BufferInfo& b, nb::kwargs kw) {
        Kw k(kw, "dispatch");
        const auto t = dispatch_tensors(k);
        k.finish();
        validate_internode_dispatch(b, t);
      },
      nb::is_method(), nb::name("check_internode_dispatch"), nb::scope(info),
      "The argument checks of InternodeOps.dispatch (tensors by keyword).");
  info.attr("check_internode_combine") = nb::cpp_function(
      [](const BufferInfo& b, nb::kwargs kw) {
        Kw k(kw, "combine");
        const auto t = combine_tensors(k);
        k.finish();
        validate_internode_combine(b, t);
      },
      nb::is_method(), nb::name("check_internode_combine"), nb::scope(info),
      "The argument checks of InternodeOps.combine (tensors by keyword).");
}

}  // namespace

void bind_internode(nb::module_& m) {
  bind_checks();
  nb::class_<InternodeOps>(m, "InternodeOps",
                           "The internode mode's operations on a Buffer whose ranks span several "
                           "NVLink domains (nodes), with an RDMA buffer.")
      .def(nb::init<Buffer&>(), nb::arg("buffer"), nb::keep_alive<1, 2>())
      .def(
          "notify_dispatch",
          [](InternodeOps& ops, nb::kwargs kw) {
            Kw k(kw, "dispatch");
            const auto t = notify_tensors(k);
            const cudaStream_t s = k.stream();
            k.finish();
            InternodeNotifyResult r;
            {
              nb::gil_scoped_release release;  // may wait for the peers' counts
              r = ops.notify_dispatch(t, s);
            }
            return std::make_tuple(r.num_recv_tokens, r.num_rdma_recv_tokens,
                                   r.num_recv_tokens_per_expert);
          },
          "Count exchange (tensors by keyword). Returns (num_recv_tokens, num_rdma_recv_tokens, "
          "num_recv_tokens_per_expert list); -1, -1, [] when num_worst_tokens > 0 (no wait).")
      .def(
          "dispatch",
          [](InternodeOps& ops, nb::kwargs kw) {
            Kw k(kw, "dispatch");
            const auto t = dispatch_tensors(k);
            const cudaStream_t s = k.stream();
            k.finish();
            ops.dispatch(t, s);
          },
          "The dispatch kernels (tensors by keyword; after notify_dispatch, or cached=True).")
      .def(
          "combine",
          [](InternodeOps& ops, nb::kwargs kw) {
            Kw k(kw, "combine");
            const auto t = combine_tensors(k);
            const cudaStream_t s = k.stream();
            k.finish();
            ops.combine(t, s);
          },
          "The combine kernels (tensors by keyword, the handle's fields by name).");
  m.def("internode_rdma_bytes", &internode_rdma_bytes, nb::arg("config"), nb::arg("num_ranks"),
        nb::arg("num_local_ranks"), nb::arg("hidden_bytes"), nb::arg("num_scales"),
        nb::arg("num_topk"),
        "RDMA-buffer bytes an internode dispatch or combine with these parameters needs.");
  m.def("internode_nvl_bytes", &internode_nvl_bytes, nb::arg("config"), nb::arg("num_local_ranks"),
        nb::arg("hidden_bytes"), nb::arg("num_scales"), nb::arg("num_topk"),
        "NVLink-buffer bytes an internode dispatch or combine with these parameters needs.");
}

}  // namespace uccl::ep::bindings
