// Public, framework-free C++ API of the routing step of the normal modes: get_dispatch_layout
// counts, from top-k expert ids, the tokens each rank and expert receives.
#pragma once

#include <cuda_runtime_api.h>

#include "uccl_ep/buffer.h"
#include "uccl_ep/tensor.h"

namespace uccl::ep {

/// get_dispatch_layout: T = num_tokens, K = num_topk, R = num_ranks, E = num_experts; N = R / L
/// nodes (NVLink domains of L = num_local_ranks ranks, from the Buffer's topology).
/// num_tokens_per_rdma_rank[n] counts the tokens with >= 1 expert on node n, once per node.
struct LayoutTensors {
  TensorView topk_idx;                  // [T, K] int64, contiguous; -1 = no expert
  int num_experts = 0;                  // multiple of R
  TensorView num_tokens_per_rank;       // out [R] int32
  TensorView num_tokens_per_rdma_rank;  // out [N] int32 when N > 1, else not given
  TensorView num_tokens_per_expert;     // out [E] int32
  TensorView is_token_in_rank;          // out [T, R] bool
};

/// Launches the layout kernel on `stream`. An entry of topk_idx outside [-1, E) is an error the
/// GPU records: the outputs are poisoned and the buffer refuses further work. Throws for bad
/// arguments (Error(kValue) / Error(kType)) and on an aborted buffer.
void get_dispatch_layout(Buffer& buffer, const LayoutTensors& t, cudaStream_t stream);

/// The argument checks of get_dispatch_layout (no GPU needed).
void validate_layout(const BufferInfo& info, const LayoutTensors& t);

}  // namespace uccl::ep
