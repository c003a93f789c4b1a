// Argument validation of the intranode calls (notify, dispatch, combine).
#include "uccl_ep/intranode.h"
#include "kernels/intranode/args.h"
#include "protocol/intranode_layout.h"
#include "runtime/validate/arg.h"
#include "runtime/validate/intranode.h"

namespace uccl::ep {

using protocol::kMaxChannels;
using protocol::kMaxLocalExperts;
using protocol::kMaxScales;
using protocol::kMaxTopK;
using runtime::validate::Arg;
using runtime::validate::check_absent;
using runtime::validate::kAny;

namespace {

void check_experts(int num_experts, int num_ranks, const char* name) {
  runtime::validate::check_experts(num_experts, num_ranks, name, kMaxLocalExperts);
}

void check_config(const BufferInfo& info, const Config& c, const char* op) {
  UCCL_EP_CHECK_VALUE(c.num_sms() > 0 && c.num_sms() % 2 == 0, op, ": config.num_sms=", c.num_sms(),
                      " must be a positive even number (one channel is two blocks)");
  UCCL_EP_CHECK_VALUE(c.num_channels() <= kMaxChannels, op, ": config.num_sms=", c.num_sms(),
                      " must be at most ", 2 * kMaxChannels);
}

void check_num_channels(const TensorView& prefix, const Config& c, const char* name) {
  UCCL_EP_CHECK_VALUE(prefix.size(1) == c.num_channels(), "config.num_sms=", c.num_sms(), " gives ",
                      c.num_channels(), " channels but the handle's ", name, " was made with ",
                      prefix.size(1), " channels (num_sms=", 2 * prefix.size(1),
                      "): use the num_sms of the dispatch that created the handle");
}

void check_fits(const BufferInfo& info, int64_t needed, const char* op, const Config& c,
                int64_t hidden_bytes) {
  UCCL_EP_CHECK_VALUE(needed <= info.num_nvl_bytes, op, " needs ", needed,
                      " bytes of NVLink buffer (num_sms=", c.num_sms(),
                      ", nvl chunk recv=", c.num_max_nvl_chunked_recv_tokens(),
                      ", hidden bytes=", hidden_bytes,
                      ") but the Buffer has num_nvl_bytes=", info.num_nvl_bytes,
                      "; size it with Config.get_nvl_buffer_size_hint");
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
  Arg(w, "topk_weights").dtype({DType::kFloat32}).shape({num_tokens, k}, "(num_tokens, num_topk)");
  Arg(w, "topk_weights").contiguous().on(info);
}

}  // namespace

int64_t dispatch_ring_bytes(const Config& c, int num_ranks, int64_t hidden_bytes, int num_scales,
                            int num_topk) {
  const auto slot = protocol::DispatchSlot::make(hidden_bytes, num_scales, num_topk);
  return protocol::RingGeometry{c.num_channels(), num_ranks, c.num_max_nvl_chunked_recv_tokens(),
                                slot.x_bytes, slot.meta_bytes}
      .total_bytes();
}

int64_t combine_ring_bytes(const Config& c, int num_ranks, int64_t hidden_bytes, int num_topk) {
  const auto slot = protocol::CombineSlot::make(hidden_bytes, num_topk);
  return protocol::RingGeometry{c.num_channels(), num_ranks, c.num_max_nvl_chunked_recv_tokens(),
                                slot.x_bytes, slot.meta_bytes}
      .total_bytes();
}

namespace {

/// Checks of the dispatch inputs (everything a non-cached dispatch needs before its notify).
/// Returns hidden bytes, number of scales and top-k through the out-parameters.
void validate_dispatch_inputs(const BufferInfo& info, const DispatchTensors& t,
                              int64_t& hidden_bytes, int& num_scales, int& num_topk) {
  const int r = info.num_ranks;
  check_config(info, t.config, "dispatch");
  // Rows move as raw bytes (as in DeepEP): any element type; scales come with 1-byte data.
  Arg(t.x, "x").required().shape({kAny, kAny}, "(num_tokens, hidden)").contiguous().on(info);
  if (t.x.dtype == DType::kUnknown) throw_error(ErrorKind::kType, "x has an unknown dtype");
  const int64_t num_tokens = t.x.size(0);
  hidden_bytes = t.x.size(1) * dtype_size(t.x.dtype);
  UCCL_EP_CHECK_VALUE(hidden_bytes > 0 && hidden_bytes % 16 == 0,
                      "x.shape[1] * element size = ", hidden_bytes,
                      " bytes must be a positive multiple of 16");
  num_scales = 0;
  if (t.x_scales.defined()) {
    if (dtype_size(t.x.dtype) != 1)
      throw_error(ErrorKind::kType,
                  str_cat("x given as (data, scales) needs 1-byte data (float8_e4m3fn, ...), "
                          "got ",
                          dtype_name(t.x.dtype)));
    Arg(t.x_scales, "x_scales")
        .dtype({DType::kFloat32, DType::kInt32})
        .shape({num_tokens, kAny}, "(num_tokens, num_scales)")
        .on(info);
    num_scales = static_cast<int>(t.x_scales.size(1));
    UCCL_EP_CHECK_VALUE(num_scales >= 1 && num_scales <= kMaxScales,
                        "x_scales.shape[1]=", num_scales, " (num_scales) must be in [1, ",
                        kMaxScales, "]");
    UCCL_EP_CHECK_VALUE(t.x_scales.stride(0) >= 0 && t.x_scales.stride(1) >= 0,
                        "x_scales strides must be non-negative");
  }
  check_topk(info, t.topk_idx, t.topk_weights, num_tokens);
  num_topk = t.topk_idx.defined() ? static_cast<int>(t.topk_idx.size(1)) : 0;
  if (t.cached) {
    UCCL_EP_CHECK_VALUE(!t.topk_idx.defined(),
                        "cached dispatch (handle given) takes no topk_idx/topk_weights");
    UCCL_EP_CHECK_VALUE(t.num_worst_tokens == 0, "cached dispatch takes no num_worst_tokens");
  } else {
    check_experts(t.num_experts, r, "num_experts");
  }
  UCCL_EP_CHECK_VALUE(t.num_worst_tokens >= 0, "num_worst_tokens=", t.num_worst_tokens,
                      " must be >= 0");
  UCCL_EP_CHECK_VALUE(t.num_worst_tokens == 0 || num_topk > 0,
                      "num_worst_tokens > 0 needs topk_idx and topk_weights");
  Arg(t.is_token_in_rank, "is_token_in_rank")
      .tensor({DType::kBool}, {num_tokens, r}, "(num_tokens, num_ranks)", info);
  Arg(t.rank_prefix_matrix, "rank_prefix_matrix")
      .tensor({DType::kInt32}, {r, r}, "(num_ranks, num_ranks)", info);
  Arg(t.channel_prefix_matrix, "channel_prefix_matrix")
      .tensor({DType::kInt32}, {r, kAny}, "(num_ranks, num_channels)", info);
  check_num_channels(t.channel_prefix_matrix, t.config, "channel_prefix_matrix");
  check_fits(info, dispatch_ring_bytes(t.config, r, hidden_bytes, num_scales, num_topk), "dispatch",
             t.config, hidden_bytes);
}

}  // namespace

void validate_notify(const BufferInfo& info, const NotifyTensors& t) {
  const int r = info.num_ranks;
  UCCL_EP_CHECK_VALUE(!t.dispatch.cached, "notify_dispatch is only for non-cached dispatch");
  int64_t hidden_bytes = 0;
  int num_scales = 0, num_topk = 0;
  validate_dispatch_inputs(info, t.dispatch, hidden_bytes, num_scales, num_topk);
  Arg(t.num_tokens_per_rank, "num_tokens_per_rank")
      .tensor({DType::kInt32}, {r}, "(num_ranks)", info);
  Arg(t.num_tokens_per_expert, "num_tokens_per_expert")
      .required()
      .dtype({DType::kInt32})
      .shape({kAny}, "(num_experts)");
  check_experts(static_cast<int>(t.num_tokens_per_expert.size(0)), r,
                "num_tokens_per_expert.shape[0] (num_experts)");
  UCCL_EP_CHECK_VALUE(t.num_tokens_per_expert.size(0) == t.dispatch.num_experts,
                      "num_tokens_per_expert.shape[0]=", t.num_tokens_per_expert.size(0),
                      " must equal num_experts=", t.dispatch.num_experts);
  Arg(t.num_tokens_per_expert, "num_tokens_per_expert").contiguous().on(info);
  UCCL_EP_CHECK_VALUE(t.expert_alignment >= 1, "expert_alignment=", t.expert_alignment,
                      " must be >= 1");
  UCCL_EP_CHECK_VALUE(t.wait_for_counts == (t.dispatch.num_worst_tokens == 0),
                      "notify_dispatch waits for counts exactly when num_worst_tokens == 0");
}

void validate_dispatch(const BufferInfo& info, const DispatchTensors& t) {
  int64_t hidden_bytes = 0;
  int num_scales = 0, num_topk = 0;
  validate_dispatch_inputs(info, t, hidden_bytes, num_scales, num_topk);
  runtime::validate_dispatch_outputs(info, t);
}

void runtime::validate_dispatch_outputs(const BufferInfo& info, const DispatchTensors& t) {
  const int r = info.num_ranks;
  const int num_scales = t.x_scales.defined() ? static_cast<int>(t.x_scales.size(1)) : 0;
  const int num_topk = t.topk_idx.defined() ? static_cast<int>(t.topk_idx.size(1)) : 0;
  const int64_t num_tokens = t.x.size(0);
  const bool with_scales = t.x_scales.defined();
  Arg(t.recv_x, "recv_x")
      .tensor({t.x.dtype}, {kAny, t.x.size(1)}, "(num_recv_tokens, hidden)", info);
  const int64_t n = t.recv_x.size(0);
  if (t.num_worst_tokens > 0)
    UCCL_EP_CHECK_VALUE(n == t.num_worst_tokens, "recv_x.shape[0]=", n,
                        " must equal num_worst_tokens=", t.num_worst_tokens);
  if (with_scales)
    Arg(t.recv_x_scales, "recv_x_scales")
        .tensor({t.x_scales.dtype}, {n, num_scales}, "(num_recv_tokens, num_scales)", info);
  else
    check_absent(t.recv_x_scales, "recv_x_scales", "without x_scales");
  if (num_topk > 0) {
    Arg(t.recv_topk_idx, "recv_topk_idx")
        .tensor({DType::kInt64}, {n, num_topk}, "(num_recv_tokens, num_topk)", info);
    Arg(t.recv_topk_weights, "recv_topk_weights")
        .tensor({DType::kFloat32}, {n, num_topk}, "(num_recv_tokens, num_topk)", info);
  } else {
    check_absent(t.recv_topk_idx, "recv_topk_idx", "without topk_idx");
    check_absent(t.recv_topk_weights, "recv_topk_weights", "without topk_idx");
  }
  if (t.cached) {
    check_absent(t.recv_src_idx, "recv_src_idx", "in cached mode");
    check_absent(t.recv_channel_prefix_matrix, "recv_channel_prefix_matrix", "in cached mode");
    check_absent(t.send_head, "send_head", "in cached mode");
  } else {
    Arg(t.recv_src_idx, "recv_src_idx").tensor({DType::kInt32}, {n}, "(num_recv_tokens)", info);
    Arg(t.recv_channel_prefix_matrix, "recv_channel_prefix_matrix")
        .tensor({DType::kInt32}, {r, t.config.num_channels()}, "(num_ranks, num_channels)", info);
    Arg(t.send_head, "send_head")
        .tensor({DType::kInt32}, {num_tokens, r}, "(num_tokens, num_ranks)", info);
  }
}

void validate_combine(const BufferInfo& info, const CombineTensors& t) {
  const int r = info.num_ranks;
  check_config(info, t.config, "combine");
  Arg(t.x, "x").tensor({DType::kBFloat16}, {kAny, kAny}, "(num_recv_tokens, hidden)", info);
  const int64_t n = t.x.size(0), hidden = t.x.size(1), hidden_bytes = hidden * 2;
  UCCL_EP_CHECK_VALUE(hidden_bytes > 0 && hidden_bytes % 16 == 0, "x.shape[1]=", hidden,
                      " must be a positive multiple of 8 (rows are moved in 16-byte words)");
  Arg(t.recv_src_idx, "handle recv_src_idx")
      .required()
      .dtype({DType::kInt32})
      .shape({kAny}, "(num_recv_tokens)");
  UCCL_EP_CHECK_VALUE(t.recv_src_idx.size(0) == n, "x.shape[0]=", n,
                      " must equal the number of rows the dispatch received (",
                      t.recv_src_idx.size(0), ")");
  Arg(t.is_token_in_rank, "handle is_token_in_rank")
      .tensor({DType::kBool}, {kAny, r}, "(num_tokens, num_ranks)", info);
  const int64_t num_tokens = t.is_token_in_rank.size(0);
  Arg(t.rank_prefix_matrix, "handle rank_prefix_matrix")
      .tensor({DType::kInt32}, {r, r}, "(num_ranks, num_ranks)", info);
  Arg(t.recv_channel_prefix_matrix, "handle recv_channel_prefix_matrix")
      .tensor({DType::kInt32}, {r, kAny}, "(num_ranks, num_channels)", info);
  check_num_channels(t.recv_channel_prefix_matrix, t.config, "recv_channel_prefix_matrix");
  Arg(t.send_head, "handle send_head")
      .tensor({DType::kInt32}, {num_tokens, r}, "(num_tokens, num_ranks)", info);
  int num_topk = 0;
  if (t.topk_weights.defined()) {
    Arg(t.topk_weights, "topk_weights")
        .dtype({DType::kFloat32})
        .shape({n, kAny}, "(num_recv_tokens, num_topk)")
        .contiguous()
        .on(info);
    num_topk = static_cast<int>(t.topk_weights.size(1));
    UCCL_EP_CHECK_VALUE(num_topk >= 1 && num_topk <= kMaxTopK, "topk_weights.shape[1]=", num_topk,
                        " (num_topk) must be in [1, ", kMaxTopK, "]");
  }
  if (t.bias0.defined())
    Arg(t.bias0, "bias[0]")
        .dtype({DType::kBFloat16})
        .shape({num_tokens, hidden}, "(num_tokens, hidden)")
        .contiguous()
        .on(info);
  if (t.bias1.defined())
    Arg(t.bias1, "bias[1]")
        .dtype({DType::kBFloat16})
        .shape({num_tokens, hidden}, "(num_tokens, hidden)")
        .contiguous()
        .on(info);
  const int min_recv = t.config.num_max_nvl_chunked_send_tokens() + kernels::intranode::kNumWarps;
  UCCL_EP_CHECK_VALUE(t.config.num_max_nvl_chunked_recv_tokens() >= min_recv,
                      "combine: config.num_max_nvl_chunked_recv_tokens=",
                      t.config.num_max_nvl_chunked_recv_tokens(),
                      " must be >= num_max_nvl_chunked_send_tokens + ",
                      kernels::intranode::kNumWarps, " = ", min_recv);
  check_fits(info, combine_ring_bytes(t.config, r, hidden_bytes, num_topk), "combine", t.config,
             hidden_bytes);
  Arg(t.combined_x, "combined_x")
      .tensor({DType::kBFloat16}, {num_tokens, hidden}, "(num_tokens, hidden)", info);
  if (num_topk > 0)
    Arg(t.combined_topk_weights, "combined_topk_weights")
        .tensor({DType::kFloat32}, {num_tokens, num_topk}, "(num_tokens, num_topk)", info);
  else
    check_absent(t.combined_topk_weights, "combined_topk_weights", "without topk_weights");
}

}  // namespace uccl::ep
