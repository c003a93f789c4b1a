// Argument validation of the low-latency calls (dispatch, combine) and the sizes of their
// message slots.
#include <algorithm>
#include <string>

#include "runtime/validate/arg.h"
#include "uccl_ep/config.h"
#include "uccl_ep/low_latency.h"

namespace uccl::ep {

using runtime::validate::Arg;
using runtime::validate::check_absent;
using runtime::validate::kAny;

int64_t low_latency_dispatch_message_bytes(int hidden) {
  const int64_t h = hidden, num_scales = h / 128;
  return 16 + std::max(2 * h, h + 4 * num_scales);
}

int64_t low_latency_combine_message_bytes(int hidden) {
  const int64_t h = hidden, num_scales = h / 128;
  return 4 * num_scales + 2 * h;
}

namespace {

/// What both calls derive from their sizes: R, E (local experts), N = R * T rows, H.
struct Sizes {
  int64_t num_ranks, num_local_experts, num_rows, hidden;
};

void check_mode(const BufferInfo& info, const char* op) {
  UCCL_EP_CHECK_VALUE(info.low_latency_mode, op,
                      " needs a Buffer built with low_latency_mode=True (this one has "
                      "low_latency_mode=false)");
  UCCL_EP_CHECK_VALUE(info.num_ranks >= 1, op, ": num_ranks=", info.num_ranks, " must be >= 1");
}

std::string hidden_list() {
  std::string s;
  for (int h : kLowLatencyHiddenSizes) s += (s.empty() ? "" : ", ") + std::to_string(h);
  return s;
}

void check_hidden(int64_t hidden, const char* name) {
  const bool listed =
      std::find(std::begin(kLowLatencyHiddenSizes), std::end(kLowLatencyHiddenSizes), hidden) !=
      std::end(kLowLatencyHiddenSizes);
  UCCL_EP_CHECK_VALUE(
      listed, name, "=", hidden,
      " (hidden) is not supported by the low-latency kernels; supported: ", hidden_list());
}

/// T, num_experts and the (R * T) % 4 rule.
void check_counts(const BufferInfo& info, int t, int num_experts) {
  const int r = info.num_ranks;
  UCCL_EP_CHECK_VALUE(t >= 1, "num_max_dispatch_tokens_per_rank=", t, " must be >= 1");
  UCCL_EP_CHECK_VALUE(num_experts > 0 && num_experts % r == 0, "num_experts=", num_experts,
                      " must be a positive multiple of the number of ranks (", r, ")");
  UCCL_EP_CHECK_VALUE(int64_t{r} * t % 4 == 0, "num_ranks * num_max_dispatch_tokens_per_rank = ", r,
                      " * ", t, " = ", int64_t{r} * t, " must be a multiple of 4");
}

/// The RDMA buffer holds two halves of send, receive and signalling regions sized for T.
void check_fits(const BufferInfo& info, int t, int64_t hidden, int num_experts) {
  const int64_t needed = get_low_latency_rdma_size_hint(t, hidden, info.num_ranks, num_experts);
  UCCL_EP_CHECK_VALUE(
      needed <= info.num_rdma_bytes, "num_max_dispatch_tokens_per_rank=", t,
      " too large for the buffer: T=", t, ", hidden=", hidden, ", num_experts=", num_experts,
      " need num_rdma_bytes >= ", needed,
      " (get_low_latency_rdma_size_hint) but the Buffer has num_rdma_bytes=", info.num_rdma_bytes);
}

/// top-k indices [num_tokens, K] int64 with num_tokens <= T and 1 <= K <= kLowLatencyMaxTopk;
/// returns K.
int64_t check_topk_idx(const BufferInfo& info, const TensorView& idx, int64_t num_tokens) {
  Arg(idx, "topk_idx")
      .required()
      .dtype({DType::kInt64})
      .shape({num_tokens, kAny}, "(num_tokens, num_topk)");
  const int64_t k = idx.size(1);
  UCCL_EP_CHECK_VALUE(k >= 1 && k <= kLowLatencyMaxTopk, "topk_idx.shape[1]=", k,
                      " (num_topk) must be in [1, ", kLowLatencyMaxTopk,
                      "] for the low-latency kernels");
  Arg(idx, "topk_idx").contiguous().on(info);
  return k;
}

void check_num_tokens(int64_t num_tokens, int t, const char* name) {
  UCCL_EP_CHECK_VALUE(num_tokens <= t, name, "=", num_tokens,
                      " (num_tokens) must be <= num_max_dispatch_tokens_per_rank=", t);
}

/// An optional statistics tensor: absent, or `dtype` [n] contiguous on the Buffer's device.
void check_stats(const BufferInfo& info, const TensorView& s, const char* name, DType dtype,
                 int64_t n, const char* meaning) {
  if (s.defined()) Arg(s, name).tensor({dtype}, {n}, meaning, info);
}

/// The layout a dispatch returns and a combine takes back (src_info, layout_range).
void check_layout(const BufferInfo& info, const Sizes& z, const TensorView& src_info,
                  const char* src_name, const TensorView& range, const char* range_name) {
  Arg(src_info, src_name)
      .tensor({DType::kInt32}, {z.num_local_experts, z.num_rows},
              "(num_local_experts, num_ranks * num_max_dispatch_tokens_per_rank)", info);
  Arg(range, range_name)
      .tensor({DType::kInt64}, {z.num_local_experts, z.num_ranks}, "(num_local_experts, num_ranks)",
              info);
}

void check_scales(const BufferInfo& info, const LowLatencyDispatchTensors& t, const Sizes& z) {
  const TensorView& s = t.recv_x_scales;
  const int64_t num_scales = t.use_ue8m0 ? z.hidden / 512 : z.hidden / 128;
  const char* meaning = t.use_ue8m0
                            ? "(num_local_experts, num_ranks * T, hidden / 512) with use_ue8m0"
                            : "(num_local_experts, num_ranks * T, hidden / 128)";
  Arg(s, "recv_x_scales")
      .required()
      .dtype({t.use_ue8m0 ? DType::kInt32 : DType::kFloat32})
      .shape({z.num_local_experts, z.num_rows, num_scales}, meaning)
      .on(info);
  // Column-major in the last two dimensions (allocated [E, S, N], then transposed), for TMA.
  const int64_t want[3] = {z.num_rows * num_scales, 1, z.num_rows};
  UCCL_EP_CHECK_VALUE(s.stride(0) == want[0] && s.stride(1) == want[1] && s.stride(2) == want[2],
                      "recv_x_scales has strides [", s.stride(0), ", ", s.stride(1), ", ",
                      s.stride(2), "], expected [", want[0], ", ", want[1], ", ", want[2],
                      "] (column-major in the last two dimensions: allocate [E, S, N] and "
                      "transpose(1, 2))");
}

}  // namespace

void validate_low_latency_dispatch(const BufferInfo& info, const LowLatencyDispatchTensors& t) {
  check_mode(info, "low_latency_dispatch");
  const int tokens_cap = t.num_max_dispatch_tokens_per_rank;
  check_counts(info, tokens_cap, t.num_experts);
  Arg(t.x, "x").required().dtype({DType::kBFloat16}).shape({kAny, kAny}, "(num_tokens, hidden)");
  Arg(t.x, "x").contiguous().on(info);
  const int64_t num_tokens = t.x.size(0);
  const Sizes z{info.num_ranks, t.num_experts / info.num_ranks,
                int64_t{info.num_ranks} * tokens_cap, t.x.size(1)};
  check_hidden(z.hidden, "x.shape[1]");
  check_num_tokens(num_tokens, tokens_cap, "x.shape[0]");
  check_topk_idx(info, t.topk_idx, num_tokens);
  UCCL_EP_CHECK_VALUE(t.use_fp8 || !t.round_scale,
                      "round_scale=true needs use_fp8=true (it rounds the FP8 scales)");
  UCCL_EP_CHECK_VALUE(!t.use_ue8m0 || (t.use_fp8 && t.round_scale),
                      "use_ue8m0=true needs use_fp8=true and round_scale=true (got use_fp8=",
                      t.use_fp8, ", round_scale=", t.round_scale, ")");
  // Every listed hidden size is a multiple of 512 today; the rule stays for the list to grow.
  UCCL_EP_CHECK_VALUE(!t.use_fp8 || z.hidden % 512 == 0, "x.shape[1]=", z.hidden,
                      " (hidden) must be a multiple of 512 with use_fp8");
  check_fits(info, tokens_cap, z.hidden, t.num_experts);
  check_stats(info, t.cumulative_local_expert_recv_stats, "cumulative_local_expert_recv_stats",
              DType::kInt32, z.num_local_experts, "(num_local_experts)");
  check_stats(info, t.dispatch_wait_recv_cost_stats, "dispatch_wait_recv_cost_stats", DType::kInt64,
              z.num_ranks, "(num_ranks)");
  Arg(t.recv_x, "recv_x")
      .tensor({t.use_fp8 ? DType::kFloat8E4M3 : DType::kBFloat16},
              {z.num_local_experts, z.num_rows, z.hidden},
              "(num_local_experts, num_ranks * num_max_dispatch_tokens_per_rank, hidden)", info);
  if (t.use_fp8)
    check_scales(info, t, z);
  else
    check_absent(t.recv_x_scales, "recv_x_scales", "without use_fp8");
  Arg(t.recv_count, "recv_count")
      .tensor({DType::kInt32}, {z.num_local_experts}, "(num_local_experts)", info);
  check_layout(info, z, t.recv_src_info, "recv_src_info", t.recv_layout_range, "recv_layout_range");
}

void validate_low_latency_combine(const BufferInfo& info, const LowLatencyCombineTensors& t) {
  check_mode(info, "low_latency_combine");
  const int tokens_cap = t.num_max_dispatch_tokens_per_rank;
  check_counts(info, tokens_cap, t.num_experts);
  UCCL_EP_CHECK_VALUE(!(t.use_logfmt && t.zero_copy),
                      "use_logfmt=true and zero_copy=true cannot be combined (the zero-copy "
                      "buffer holds BF16 rows)");
  // hidden comes from x, or from combined_x when zero_copy leaves x out.
  if (!t.zero_copy) Arg(t.x, "x").required();
  const bool with_x = t.x.defined();
  if (with_x)
    Arg(t.x, "x")
        .dtype({DType::kBFloat16})
        .shape({kAny, kAny, kAny}, "(num_local_experts, num_ranks * T, hidden)");
  else
    Arg(t.combined_x, "combined_x")
        .required()
        .dtype({DType::kBFloat16})
        .shape({kAny, kAny}, "(num_tokens, hidden)");
  const Sizes z{info.num_ranks, t.num_experts / info.num_ranks,
                int64_t{info.num_ranks} * tokens_cap, with_x ? t.x.size(2) : t.combined_x.size(1)};
  check_hidden(z.hidden, with_x ? "x.shape[2]" : "combined_x.shape[1]");
  if (with_x) {
    Arg(t.x, "x").shape({z.num_local_experts, z.num_rows, z.hidden},
                        "(num_local_experts, num_ranks * num_max_dispatch_tokens_per_rank, "
                        "hidden)");
    // With zero_copy x is not read (the rows are in the combine buffer already): any strides.
    if (!t.zero_copy) Arg(t.x, "x").contiguous();
    Arg(t.x, "x").on(info);
  }
  Arg(t.topk_idx, "topk_idx").required().shape({kAny, kAny}, "(num_tokens, num_topk)");
  const int64_t num_tokens = t.topk_idx.size(0);
  check_num_tokens(num_tokens, tokens_cap, "topk_idx.shape[0]");
  const int64_t k = check_topk_idx(info, t.topk_idx, num_tokens);
  Arg(t.topk_weights, "topk_weights")
      .tensor({DType::kFloat32}, {num_tokens, k}, "(num_tokens, num_topk)", info);
  check_layout(info, z, t.src_info, "src_info", t.layout_range, "layout_range");
  check_fits(info, tokens_cap, z.hidden, t.num_experts);
  check_stats(info, t.combine_wait_recv_cost_stats, "combine_wait_recv_cost_stats", DType::kInt64,
              z.num_ranks, "(num_ranks)");
  Arg(t.combined_x, "combined_x")
      .tensor({DType::kBFloat16}, {num_tokens, z.hidden}, "(num_tokens, hidden)", info);
}

}  // namespace uccl::ep
