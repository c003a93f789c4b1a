// Host launcher of the dispatch-layout kernel.
#include "common/cuda_check.h"
#include "kernels/routing/launch.h"
#include "kernels/routing/layout_kernel.cuh"

namespace uccl::ep::kernels::routing {

void launch_dispatch_layout(const LayoutArgs& a, cudaStream_t stream) {
  const int num_nodes = a.num_tokens_per_node ? a.num_ranks / a.ranks_per_node : 0;
  UCCL_EP_CUDA_CHECK(
      cudaMemsetAsync(a.num_tokens_per_rank, 0, sizeof(int32_t) * a.num_ranks, stream));
  UCCL_EP_CUDA_CHECK(
      cudaMemsetAsync(a.num_tokens_per_expert, 0, sizeof(int32_t) * a.num_experts, stream));
  if (num_nodes > 0)
    UCCL_EP_CUDA_CHECK(
        cudaMemsetAsync(a.num_tokens_per_node, 0, sizeof(int32_t) * num_nodes, stream));
  if (a.num_tokens > 0)
    UCCL_EP_CUDA_CHECK(cudaMemsetAsync(a.is_token_in_rank, 0,
                                       static_cast<size_t>(a.num_tokens) * a.num_ranks, stream));
  if (a.num_tokens == 0) return;  // nothing to route (an aborted rank raised at the host)
  const size_t smem = sizeof(int32_t) * (a.num_experts + a.num_ranks + num_nodes);
  if (smem > 48 * 1024)
    UCCL_EP_CUDA_CHECK(cudaFuncSetAttribute(dispatch_layout_kernel,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem)));
  const int blocks = (a.num_tokens + kLayoutThreads - 1) / kLayoutThreads;
  dispatch_layout_kernel<<<blocks, kLayoutThreads, smem, stream>>>(a);
  UCCL_EP_CHECK_LAUNCH("dispatch_layout_kernel");
}

}  // namespace uccl::ep::kernels::routing
