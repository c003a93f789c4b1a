// Arguments of the dispatch-layout kernel.
#pragma once

#include <cstdint>

#include "device/diag.h"

namespace uccl::ep::kernels::routing {

struct LayoutArgs {
  const int64_t* topk_idx;  // [num_tokens, num_topk]
  int num_tokens, num_topk, num_ranks, num_experts;
  int ranks_per_node;              // ranks per node (NVLink domain) for num_tokens_per_node
  int32_t* num_tokens_per_rank;    // [num_ranks], zeroed
  int32_t* num_tokens_per_node;    // [num_ranks / ranks_per_node] or null, zeroed
  int32_t* num_tokens_per_expert;  // [num_experts], zeroed
  bool* is_token_in_rank;          // [num_tokens, num_ranks], zeroed
  device::DeviceDiag diag;         // an id outside [-1, num_experts) is an error
  device::OutputList outputs;      // poisoned (zero counts) when the rank is aborted
};

}  // namespace uccl::ep::kernels::routing
