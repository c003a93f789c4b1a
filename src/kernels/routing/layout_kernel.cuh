// dispatch_layout_kernel: from top-k expert ids, counts tokens per rank, per node and per
// expert, and marks which ranks each token goes to. Ids of -1 are skipped; any other id outside
// [0, num_experts) is an error (recorded; the rank aborts and the outputs are poisoned).
// Outputs must be zeroed before the launch; each block accumulates in shared memory and adds
// its counts to the outputs with one atomic per non-zero entry.
#pragma once

#include <cstdint>

#include "device/health.cuh"
#include "kernels/routing/layout_args.h"
#include "kernels/routing/routing.h"

namespace uccl::ep::kernels::routing {

constexpr int kLayoutThreads = 256;

__global__ void __launch_bounds__(kLayoutThreads) dispatch_layout_kernel(const LayoutArgs a) {
  extern __shared__ int32_t s_counts[];  // [num_experts | num_ranks | num_nodes]
  int32_t* s_expert = s_counts;
  int32_t* s_rank = s_expert + a.num_experts;
  int32_t* s_node = s_rank + a.num_ranks;
  const int num_nodes = a.num_tokens_per_node ? a.num_ranks / a.ranks_per_node : 0;
  const int num_slots = a.num_experts + a.num_ranks + num_nodes;
  for (int i = threadIdx.x; i < num_slots; i += blockDim.x) s_counts[i] = 0;
  __syncthreads();

  const int64_t experts_per_rank = a.num_experts / a.num_ranks;
  const int64_t experts_per_node = experts_per_rank * a.ranks_per_node;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < a.num_tokens) {
    for (int k = 0; k < a.num_topk; ++k) {
      const int64_t id = a.topk_idx[t * a.num_topk + k];
      if (!valid_topk_entry(id, a.num_experts))
        device::report_error(a.diag, protocol::WaitSite::kBadExpertId, -1, -1, -1,
                             static_cast<int>(t), k, a.num_experts, id, 0);
    }
    route_token(
        a.topk_idx + t * a.num_topk, a.num_topk, a.num_experts, experts_per_rank,
        num_nodes > 0 ? experts_per_node : 0, [&](int64_t e) { atomicAdd(&s_expert[e], 1); },
        [&](int r) {
          a.is_token_in_rank[t * a.num_ranks + r] = true;
          atomicAdd(&s_rank[r], 1);
        },
        [&](int n) { atomicAdd(&s_node[n], 1); });
  }
  __syncthreads();
  for (int i = threadIdx.x; i < num_slots; i += blockDim.x) {
    const int32_t v = s_counts[i];
    if (v == 0) continue;
    if (i < a.num_experts) {
      atomicAdd(&a.num_tokens_per_expert[i], v);
    } else if (i < a.num_experts + a.num_ranks) {
      atomicAdd(&a.num_tokens_per_rank[i - a.num_experts], v);
    } else {
      atomicAdd(&a.num_tokens_per_node[i - a.num_experts - a.num_ranks], v);
    }
  }
  device::poison_if_aborted(a.outputs, a.diag);
}

}  // namespace uccl::ep::kernels::routing
