// Argument validation of get_dispatch_layout.
#include "uccl_ep/routing.h"
#include "protocol/intranode_layout.h"
#include "runtime/validate/arg.h"

namespace uccl::ep {

using protocol::kMaxLocalExperts;
using protocol::kMaxTopK;
using runtime::validate::Arg;
using runtime::validate::check_absent;
using runtime::validate::check_experts;
using runtime::validate::kAny;

void validate_layout(const BufferInfo& info, const LayoutTensors& t) {
  const int r = info.num_ranks;
  Arg(t.topk_idx, "topk_idx")
      .required()
      .dtype({DType::kInt64})
      .shape({kAny, kAny}, "(num_tokens, num_topk)");
  const int64_t num_tokens = t.topk_idx.size(0), k = t.topk_idx.size(1);
  UCCL_EP_CHECK_VALUE(k >= 1 && k <= kMaxTopK, "topk_idx.shape[1]=", k,
                      " (num_topk) must be in [1, ", kMaxTopK, "]");
  Arg(t.topk_idx, "topk_idx").contiguous().on(info);
  check_experts(t.num_experts, r, "num_experts", kMaxLocalExperts);
  Arg(t.num_tokens_per_rank, "num_tokens_per_rank")
      .tensor({DType::kInt32}, {r}, "(num_ranks)", info);
  // Per node (NVLink domain) whenever the ranks span several; DeepEP's fixed 8-rank nodes are
  // the case num_local_ranks = 8.
  const int num_nodes = info.num_nodes();
  if (num_nodes > 1)
    Arg(t.num_tokens_per_rdma_rank, "num_tokens_per_rdma_rank")
        .tensor({DType::kInt32}, {num_nodes}, "(num_nodes = num_ranks / num_local_ranks)", info);
  else
    check_absent(t.num_tokens_per_rdma_rank, "num_tokens_per_rdma_rank",
                 "when every rank shares one NVLink domain");
  Arg(t.num_tokens_per_expert, "num_tokens_per_expert")
      .tensor({DType::kInt32}, {t.num_experts}, "(num_experts)", info);
  Arg(t.is_token_in_rank, "is_token_in_rank")
      .tensor({DType::kBool}, {num_tokens, r}, "(num_tokens, num_ranks)", info);
}

}  // namespace uccl::ep
