// Argument validation of the internode calls (notify, dispatch, combine): the dtype, shape and
// contiguity rules of DeepEP V1's internode API. The RDMA and NVLink buffer sizes are checked by
// InternodeOps, which owns their layout.
#include "runtime/validate/internode.h"

#include <string>

#include "protocol/intranode_layout.h"
#include "runtime/validate/arg.h"
#include "uccl_ep/internode.h"

namespace uccl::ep {

using protocol::kMaxChannels;
using protocol::kMaxLocalExperts;
using protocol::kMaxScales;
using protocol::kMaxTopK;
using runtime::validate::Arg;
using runtime::validate::check_absent;
using runtime::validate::kAny;

namespace {

/// R ranks in N NVLink domains (nodes) of L ranks.
struct Nodes {
  int64_t num_ranks, num_local_ranks, num_nodes;
};

Nodes check_nodes(const BufferInfo& info, const char* op) {
  const int r = info.num_ranks, l = info.local_ranks();
  UCCL_EP_CHECK_VALUE(r >= 1 && l >= 1 && r % l == 0, op, ": num_local_ranks=", l,
                      " must divide num_ranks=", r);
  UCCL_EP_CHECK_VALUE(r / l > 1, op,
                      ": the internode mode needs ranks on several NVLink domains, but all ", r,
                      " ranks share one (num_local_ranks=", l, "): use the intranode mode");
  return {r, l, r / l};
}

void check_config(const Config& c, const char* op) {
  UCCL_EP_CHECK_VALUE(c.num_sms() > 0 && c.num_sms() % 2 == 0, op, ": config.num_sms=", c.num_sms(),
                      " must be a positive even number (one channel is two blocks)");
  UCCL_EP_CHECK_VALUE(c.num_channels() <= kMaxChannels, op, ": config.num_sms=", c.num_sms(),
                      " must be at most ", 2 * kMaxChannels);
}

/// `name` prefixed by where it comes from ("handle." for a handle's field).
std::string field(const char* prefix, const char* name) {
  return std::string(prefix) + name;
}

/// A prefix matrix [rows, C]: int32, contiguous, on the device, with C = config's channels.
void check_prefix_matrix(const BufferInfo& info, const TensorView& t, const std::string& name,
                         int64_t rows, const char* meaning, const Config& c) {
  Arg(t, name.c_str()).tensor({DType::kInt32}, {rows, kAny}, meaning, info);
  UCCL_EP_CHECK_VALUE(t.size(1) == c.num_channels(), "config.num_sms=", c.num_sms(), " gives ",
                      c.num_channels(), " channels but ", name, " has ", t.size(1),
                      " channels (num_sms=", 2 * t.size(1),
                      "): use the num_sms of the dispatch that created the handle");
}

/// Handle fields 0-6 and 8: the routing mask, and what notify fills from it and the counts (or a
/// handle holds): the prefix sums and send_rdma_head [T, N] int32.
void check_handle_inputs(const BufferInfo& info, const Nodes& n, const InternodeHandle& h,
                         int64_t num_tokens, const Config& c, const char* prefix) {
  const int64_t r = n.num_ranks, num_nodes = n.num_nodes;
  Arg(h.is_token_in_rank, field(prefix, "is_token_in_rank").c_str())
      .tensor({DType::kBool}, {num_tokens, r}, "(num_tokens, num_ranks)", info);
  check_prefix_matrix(info, h.rdma_channel_prefix_matrix,
                      field(prefix, "rdma_channel_prefix_matrix"), num_nodes,
                      "(num_nodes, num_channels)", c);
  check_prefix_matrix(info, h.gbl_channel_prefix_matrix, field(prefix, "gbl_channel_prefix_matrix"),
                      r, "(num_ranks, num_channels)", c);
  check_prefix_matrix(info, h.recv_rdma_channel_prefix_matrix,
                      field(prefix, "recv_rdma_channel_prefix_matrix"), num_nodes,
                      "(num_nodes, num_channels)", c);
  Arg(h.recv_rdma_rank_prefix_sum, field(prefix, "recv_rdma_rank_prefix_sum").c_str())
      .tensor({DType::kInt32}, {num_nodes}, "(num_nodes)", info);
  check_prefix_matrix(info, h.recv_gbl_channel_prefix_matrix,
                      field(prefix, "recv_gbl_channel_prefix_matrix"), r,
                      "(num_ranks, num_channels)", c);
  Arg(h.recv_gbl_rank_prefix_sum, field(prefix, "recv_gbl_rank_prefix_sum").c_str())
      .tensor({DType::kInt32}, {r}, "(num_ranks)", info);
  Arg(h.send_rdma_head, field(prefix, "send_rdma_head").c_str())
      .tensor({DType::kInt32}, {num_tokens, num_nodes}, "(num_tokens, num_nodes)", info);
}

/// Handle fields 7 and 9, the ones a dispatch writes: recv_src_meta [Nr, 8] uint8 and
/// send_nvl_head [Nf, L] int32.
void check_handle_outputs(const BufferInfo& info, const Nodes& n, const InternodeHandle& h,
                          int64_t num_recv, const char* prefix) {
  Arg(h.recv_src_meta, field(prefix, "recv_src_meta").c_str())
      .tensor({DType::kUInt8}, {num_recv, 8}, "(num_recv_tokens, 8)", info);
  Arg(h.send_nvl_head, field(prefix, "send_nvl_head").c_str())
      .tensor({DType::kInt32}, {kAny, n.num_local_ranks}, "(num_rdma_recv_tokens, num_local_ranks)",
              info);
}

void check_topk(const BufferInfo& info, const TensorView& idx, const TensorView& w,
                int64_t num_tokens) {
  UCCL_EP_CHECK_VALUE(idx.defined() == w.defined(),
                      "topk_idx and topk_weights must be given together (got ",
                      idx.defined() ? "topk_idx only" : "topk_weights only", ")");
  if (!idx.defined()) return;
  Arg(idx, "topk_idx").dtype({DType::kInt64}).shape({num_tokens, kAny}, "(num_tokens, num_topk)");
  const int64_t k = idx.size(1);
  UCCL_EP_CHECK_VALUE(k >= 1 && k <= kMaxTopK, "topk_idx.shape[1]=", k,
                      " (num_topk) must be in [1, ", kMaxTopK, "]");
  Arg(idx, "topk_idx").contiguous().on(info);
  Arg(w, "topk_weights").tensor({DType::kFloat32}, {num_tokens, k}, "(num_tokens, num_topk)", info);
}

/// x (rows move as raw bytes, as in DeepEP: any element type with 16-byte rows) and its scales
/// (only with 1-byte data). Returns the number of scales (0 without).
int check_x(const BufferInfo& info, const TensorView& x, const TensorView& scales) {
  Arg(x, "x").required().shape({kAny, kAny}, "(num_tokens, hidden)").contiguous().on(info);
  if (x.dtype == DType::kUnknown) throw_error(ErrorKind::kType, "x has an unknown dtype");
  const int64_t hidden_bytes = x.size(1) * dtype_size(x.dtype);
  UCCL_EP_CHECK_VALUE(hidden_bytes > 0 && hidden_bytes % 16 == 0,
                      "x.shape[1] * element size = ", hidden_bytes,
                      " bytes must be a positive multiple of 16");
  if (!scales.defined()) return 0;
  if (dtype_size(x.dtype) != 1)
    throw_error(ErrorKind::kType,
                str_cat("x given as (data, scales) needs 1-byte data (float8_e4m3fn, ...), got ",
                        dtype_name(x.dtype)));
  Arg(scales, "x_scales")
      .dtype({DType::kFloat32, DType::kInt32})
      .shape({x.size(0), kAny}, "(num_tokens, num_scales)")
      .on(info);
  const int64_t num_scales = scales.size(1);
  UCCL_EP_CHECK_VALUE(num_scales >= 1 && num_scales <= kMaxScales, "x_scales.shape[1]=", num_scales,
                      " (num_scales) must be in [1, ", kMaxScales, "]");
  UCCL_EP_CHECK_VALUE(scales.stride(0) >= 0 && scales.stride(1) >= 0,
                      "x_scales strides must be non-negative");
  return static_cast<int>(num_scales);
}

/// What a dispatch reads: x, scales, top-k, the modes, the config and handle fields 0-6 and 8.
void validate_dispatch_inputs(const BufferInfo& info, const InternodeDispatchTensors& t) {
  const Nodes n = check_nodes(info, "dispatch");
  check_config(t.config, "dispatch");
  check_x(info, t.x, t.x_scales);
  const int64_t num_tokens = t.x.size(0);
  check_topk(info, t.topk_idx, t.topk_weights, num_tokens);
  UCCL_EP_CHECK_VALUE(t.num_worst_tokens >= 0, "num_worst_tokens=", t.num_worst_tokens,
                      " must be >= 0");
  if (t.cached) {
    UCCL_EP_CHECK_VALUE(!t.topk_idx.defined(),
                        "cached dispatch (handle given) takes no topk_idx/topk_weights");
    UCCL_EP_CHECK_VALUE(t.num_worst_tokens == 0, "cached dispatch takes no num_worst_tokens");
  } else {
    runtime::validate::check_experts(t.num_experts, info.num_ranks, "num_experts",
                                     kMaxLocalExperts);
  }
  UCCL_EP_CHECK_VALUE(t.num_worst_tokens == 0 || t.topk_idx.defined(),
                      "num_worst_tokens > 0 needs topk_idx and topk_weights");
  check_handle_inputs(info, n, t.handle, num_tokens, t.config, t.cached ? "handle." : "");
}

}  // namespace

void validate_internode_notify(const BufferInfo& info, const InternodeNotifyTensors& t) {
  const Nodes n = check_nodes(info, "notify_dispatch");
  UCCL_EP_CHECK_VALUE(!t.dispatch.cached, "notify_dispatch is only for non-cached dispatch");
  validate_dispatch_inputs(info, t.dispatch);
  Arg(t.num_tokens_per_rank, "num_tokens_per_rank")
      .tensor({DType::kInt32}, {n.num_ranks}, "(num_ranks)", info);
  Arg(t.num_tokens_per_rdma_rank, "num_tokens_per_rdma_rank")
      .tensor({DType::kInt32}, {n.num_nodes}, "(num_nodes)", info);
  Arg(t.num_tokens_per_expert, "num_tokens_per_expert")
      .required()
      .dtype({DType::kInt32})
      .shape({kAny}, "(num_experts)");
  UCCL_EP_CHECK_VALUE(t.num_tokens_per_expert.size(0) == t.dispatch.num_experts,
                      "num_tokens_per_expert.shape[0]=", t.num_tokens_per_expert.size(0),
                      " must equal num_experts=", t.dispatch.num_experts);
  Arg(t.num_tokens_per_expert, "num_tokens_per_expert").contiguous().on(info);
  UCCL_EP_CHECK_VALUE(t.expert_alignment >= 1, "expert_alignment=", t.expert_alignment,
                      " must be >= 1");
  UCCL_EP_CHECK_VALUE(t.wait_for_counts == (t.dispatch.num_worst_tokens == 0),
                      "notify_dispatch waits for counts exactly when num_worst_tokens == 0");
}

void validate_internode_dispatch(const BufferInfo& info, const InternodeDispatchTensors& t) {
  validate_dispatch_inputs(info, t);
  runtime::validate_internode_dispatch_outputs(info, t);
}

void runtime::validate_internode_dispatch_outputs(const BufferInfo& info,
                                                  const InternodeDispatchTensors& t) {
  const Nodes n = check_nodes(info, "dispatch");
  const int num_topk = t.topk_idx.defined() ? static_cast<int>(t.topk_idx.size(1)) : 0;
  Arg(t.recv_x, "recv_x")
      .tensor({t.x.dtype}, {kAny, t.x.size(1)}, "(num_recv_tokens, hidden)", info);
  const int64_t num_recv = t.recv_x.size(0);
  if (t.num_worst_tokens > 0)
    UCCL_EP_CHECK_VALUE(num_recv == t.num_worst_tokens, "recv_x.shape[0]=", num_recv,
                        " must equal num_worst_tokens=", t.num_worst_tokens);
  if (t.x_scales.defined())
    Arg(t.recv_x_scales, "recv_x_scales")
        .tensor({t.x_scales.dtype}, {num_recv, t.x_scales.size(1)}, "(num_recv_tokens, num_scales)",
                info);
  else
    check_absent(t.recv_x_scales, "recv_x_scales", "without x_scales");
  if (num_topk > 0) {
    Arg(t.recv_topk_idx, "recv_topk_idx")
        .tensor({DType::kInt64}, {num_recv, num_topk}, "(num_recv_tokens, num_topk)", info);
    Arg(t.recv_topk_weights, "recv_topk_weights")
        .tensor({DType::kFloat32}, {num_recv, num_topk}, "(num_recv_tokens, num_topk)", info);
  } else {
    check_absent(t.recv_topk_idx, "recv_topk_idx", "without topk_idx");
    check_absent(t.recv_topk_weights, "recv_topk_weights", "without topk_idx");
  }
  check_handle_outputs(info, n, t.handle, num_recv, t.cached ? "handle." : "");
}

void validate_internode_combine(const BufferInfo& info, const InternodeCombineTensors& t) {
  const Nodes n = check_nodes(info, "combine");
  check_config(t.config, "combine");
  Arg(t.x, "x").tensor({DType::kBFloat16}, {kAny, kAny}, "(num_recv_tokens, hidden)", info);
  const int64_t num_recv = t.x.size(0), hidden = t.x.size(1);
  UCCL_EP_CHECK_VALUE(hidden > 0 && hidden * 2 % 16 == 0, "x.shape[1]=", hidden,
                      " must be a positive multiple of 8 (rows are moved in 16-byte words)");
  const InternodeHandle& h = t.handle;
  Arg(h.is_token_in_rank, "handle.is_token_in_rank")
      .tensor({DType::kBool}, {kAny, n.num_ranks}, "(num_tokens, num_ranks)", info);
  const int64_t num_tokens = h.is_token_in_rank.size(0);
  Arg(h.recv_src_meta, "handle.recv_src_meta")
      .required()
      .dtype({DType::kUInt8})
      .shape({kAny, 8}, "(num_recv_tokens, 8)");
  UCCL_EP_CHECK_VALUE(h.recv_src_meta.size(0) == num_recv, "x.shape[0]=", num_recv,
                      " must equal the number of rows the dispatch received (",
                      h.recv_src_meta.size(0), ", handle.recv_src_meta.shape[0])");
  check_handle_inputs(info, n, h, num_tokens, t.config, "handle.");
  check_handle_outputs(info, n, h, num_recv, "handle.");
  int num_topk = 0;
  if (t.topk_weights.defined()) {
    Arg(t.topk_weights, "topk_weights")
        .dtype({DType::kFloat32})
        .shape({num_recv, kAny}, "(num_recv_tokens, num_topk)")
        .contiguous()
        .on(info);
    num_topk = static_cast<int>(t.topk_weights.size(1));
    UCCL_EP_CHECK_VALUE(num_topk >= 1 && num_topk <= kMaxTopK, "topk_weights.shape[1]=", num_topk,
                        " (num_topk) must be in [1, ", kMaxTopK, "]");
  }
  if (t.bias0.defined())
    Arg(t.bias0, "bias[0]")
        .tensor({DType::kBFloat16}, {num_tokens, hidden}, "(num_tokens, hidden)", info);
  if (t.bias1.defined())
    Arg(t.bias1, "bias[1]")
        .tensor({DType::kBFloat16}, {num_tokens, hidden}, "(num_tokens, hidden)", info);
  Arg(t.combined_x, "combined_x")
      .tensor({DType::kBFloat16}, {num_tokens, hidden}, "(num_tokens, hidden)", info);
  if (num_topk > 0)
    Arg(t.combined_topk_weights, "combined_topk_weights")
        .tensor({DType::kFloat32}, {num_tokens, num_topk}, "(num_tokens, num_topk)", info);
  else
    check_absent(t.combined_topk_weights, "combined_topk_weights", "without topk_weights");
}

}  // namespace uccl::ep
