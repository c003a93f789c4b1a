// get_dispatch_layout on a Buffer: validation, then the layout kernel.
#include "kernels/routing/launch.h"
#include "runtime/buffer_impl.h"
#include "uccl_ep/routing.h"

namespace uccl::ep {

void get_dispatch_layout(Buffer& buffer, const LayoutTensors& t, cudaStream_t stream) {
  Buffer::Impl& b = buffer.impl();
  b.require_ready("get_dispatch_layout");
  validate_layout(buffer.info(), t);
  runtime::DeviceGuard guard(b.options.device);
  const int num_ranks = b.options.num_ranks;
  kernels::routing::LayoutArgs a{};
  a.topk_idx = t.topk_idx.ptr<const int64_t>();
  a.num_tokens = static_cast<int>(t.topk_idx.size(0));
  a.num_topk = static_cast<int>(t.topk_idx.size(1));
  a.num_ranks = num_ranks;
  a.num_experts = t.num_experts;
  a.ranks_per_node = b.topology.num_local_ranks;  // num_tokens_per_rdma_rank counts per node
  a.num_tokens_per_rank = t.num_tokens_per_rank.ptr<int32_t>();
  a.num_tokens_per_node =
      t.num_tokens_per_rdma_rank.defined() ? t.num_tokens_per_rdma_rank.ptr<int32_t>() : nullptr;
  a.num_tokens_per_expert = t.num_tokens_per_expert.ptr<int32_t>();
  a.is_token_in_rank = t.is_token_in_rank.ptr<bool>();
  a.diag = b.diag();
  // Poison: zero counts, no token in any rank.
  a.outputs.add(a.num_tokens_per_rank, t.num_tokens_per_rank.nbytes(), device::kZeroByte);
  if (a.num_tokens_per_node != nullptr)
    a.outputs.add(a.num_tokens_per_node, t.num_tokens_per_rdma_rank.nbytes(), device::kZeroByte);
  a.outputs.add(a.num_tokens_per_expert, t.num_tokens_per_expert.nbytes(), device::kZeroByte);
  a.outputs.add(a.is_token_in_rank, t.is_token_in_rank.nbytes(), device::kZeroByte);
  kernels::routing::launch_dispatch_layout(a, stream);
}

}  // namespace uccl::ep
