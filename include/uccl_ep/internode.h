// Public, framework-free C++ API of the internode normal mode: operations on a Buffer (buffer.h)
// whose ranks span several NVLink domains ("nodes" of L = num_local_ranks consecutive ranks;
// UCCL_EP_NUM_LOCAL_RANKS emulates them on one host).
//
// Rank r is local rank r % L of node r / L; N = R / L nodes; C = config.num_sms / 2 channels.
// A token crosses the network once per destination node n it reaches, to the rank of node n
// with the sender's local index (the forwarder), which passes it over NVLink to its
// destination ranks. Combine runs the other way and reduces inside a node before the network.
// Results are DeepEP V1's: rows grouped by global source rank, then by source token index;
// combined rows sum each node's ranks in fp32, round that partial to bf16, then add the biases
// and the node partials in ascending node order in fp32 (docs/internode.md).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "uccl_ep/buffer.h"
#include "uccl_ep/config.h"
#include "uccl_ep/tensor.h"

namespace uccl::ep {

/// DeepEP V1's internode handle, in its order (prefix matrices are int32):
///   0 is_token_in_rank                [T, R] bool     the sender's routing mask
///   1 rdma_channel_prefix_matrix      [N, C]          inclusive over channels, rows to node n
///   2 gbl_channel_prefix_matrix       [R, C]          inclusive over channels, rows to rank r
///   3 recv_rdma_channel_prefix_matrix [N, C]          forwarder: inclusive, rows from node m
///   4 recv_rdma_rank_prefix_sum       [N]             forwarder: inclusive over source nodes
///   5 recv_gbl_channel_prefix_matrix  [R, C]          receiver: first row of (source, channel)
///   6 recv_gbl_rank_prefix_sum        [R]             receiver: inclusive over source ranks
///   7 recv_src_meta                   [num_recv, 8]   uint8: int32 source node, int32 bitmask
///                                                     of the node's local ranks it reached
///   8 send_rdma_head                  [T, N]          position of token t in its stream to
///                                                     node n, or -1
///   9 send_nvl_head                   [num_rdma_recv, L]  forwarder: position of each
///                                                     network-stage row in the NVLink stream
///                                                     to each local rank, or -1
struct InternodeHandle {
  TensorView is_token_in_rank;
  TensorView rdma_channel_prefix_matrix;
  TensorView gbl_channel_prefix_matrix;
  TensorView recv_rdma_channel_prefix_matrix;
  TensorView recv_rdma_rank_prefix_sum;
  TensorView recv_gbl_channel_prefix_matrix;
  TensorView recv_gbl_rank_prefix_sum;
  TensorView recv_src_meta;
  TensorView send_rdma_head;
  TensorView send_nvl_head;
};

/// Counts a non-cached dispatch waits for; empty when the call did not wait.
struct InternodeNotifyResult {
  int num_recv_tokens = -1;       // rows this rank receives (recv_x's rows)
  int num_rdma_recv_tokens = -1;  // network-stage rows this rank forwards (send_nvl_head's rows)
  std::vector<int> num_recv_tokens_per_expert;  // [E / R], rounded up to expert_alignment
};

/// Dispatch. Nr = rows received (exact, or num_worst_tokens); Nf = network-stage rows.
/// H = hidden, S = scales, K = top-k.
struct InternodeDispatchTensors {
  TensorView x;              // [T, H] bfloat16, or float8_e4m3fn with x_scales
  TensorView x_scales;       // [T, S] float32 or int32, any strides; only with float8 x
  TensorView topk_idx;       // [T, K] int64 or not given (must be absent when cached)
  TensorView topk_weights;   // [T, K] float32, given together with topk_idx
  int num_experts = 0;       // needed with topk_idx
  int num_worst_tokens = 0;  // > 0: Nr = num_worst_tokens, recv_topk_idx's tail rows are -1
  bool cached = false;       // reuse a handle: only x (and scales) move
  Config config;
  /// Fields 0-6 and 8 (send_rdma_head) are notify's outputs, or a previous dispatch's handle
  /// when cached; the dispatch writes recv_src_meta [Nr, 8] and send_nvl_head [Nf, L].
  InternodeHandle handle;
  TensorView recv_x;             // out [Nr, H], dtype of x
  TensorView recv_x_scales;      // out [Nr, S] contiguous, dtype of x_scales
  TensorView recv_topk_idx;      // out [Nr, K] int64 (local expert ids, -1 elsewhere)
  TensorView recv_topk_weights;  // out [Nr, K] float32 (0 where not local)
};

/// Count exchange before a non-cached dispatch: fills the handle's prefix matrices (1-6) and
/// send_rdma_head from is_token_in_rank and the peers' counts, and validates the dispatch
/// inputs before any collective work starts.
struct InternodeNotifyTensors {
  InternodeDispatchTensors dispatch;
  TensorView num_tokens_per_rank;       // [R] int32
  TensorView num_tokens_per_rdma_rank;  // [N] int32
  TensorView num_tokens_per_expert;     // [E] int32
  int expert_alignment = 1;             // >= 1: per-expert counts are rounded up to it
  bool wait_for_counts = true;          // false: do not block (num_worst_tokens > 0)
};

/// Combine (reverse of a dispatch) with that dispatch's handle, which it never modifies.
struct InternodeCombineTensors {
  TensorView x;             // [Nr, H] bfloat16
  TensorView topk_weights;  // [Nr, K] float32 or not given
  TensorView bias0, bias1;  // [T, H] bfloat16 or not given
  InternodeHandle handle;
  Config config;                     // num_sms must equal the dispatch's
  TensorView combined_x;             // out [T, H] bfloat16
  TensorView combined_topk_weights;  // out [T, K] float32 when topk_weights is given
};

/// The internode operations on a Buffer whose ranks span several NVLink domains, with an RDMA
/// buffer (num_rdma_bytes >= internode_rdma_bytes(...)) and an NVLink buffer (num_nvl_bytes >=
/// internode_nvl_bytes(...)). The Buffer must outlive this object. Calls are not thread-safe;
/// kernels run on `stream`. An aborted buffer makes every call throw and every kernel poison
/// its outputs.
class InternodeOps {
 public:
  /// Throws Error(kValue) when the buffer's ranks share one NVLink domain (the intranode mode),
  /// when it has no RDMA buffer, or for node sizes the kernels do not support.
  explicit InternodeOps(Buffer& buffer);
  ~InternodeOps();
  InternodeOps(const InternodeOps&) = delete;
  InternodeOps& operator=(const InternodeOps&) = delete;

  /// Launches the count exchange; with wait_for_counts blocks until the counts arrive.
  InternodeNotifyResult notify_dispatch(const InternodeNotifyTensors& t, cudaStream_t stream);
  /// The dispatch kernels (after notify_dispatch with the same inputs, or cached).
  void dispatch(const InternodeDispatchTensors& t, cudaStream_t stream);
  void combine(const InternodeCombineTensors& t, cudaStream_t stream);

 private:
  struct State;
  std::unique_ptr<State> s_;
};

/// The argument checks of each call (no GPU needed).
void validate_internode_notify(const BufferInfo& info, const InternodeNotifyTensors& t);
void validate_internode_dispatch(const BufferInfo& info, const InternodeDispatchTensors& t);
void validate_internode_combine(const BufferInfo& info, const InternodeCombineTensors& t);

/// RDMA-buffer and NVLink-buffer bytes an internode dispatch or combine with these parameters
/// needs (the real slots; DeepEP's get_rdma_buffer_size_hint covers them for 8-rank nodes).
int64_t internode_rdma_bytes(const Config& config, int num_ranks, int num_local_ranks,
                             int64_t hidden_bytes, int num_scales, int num_topk);
int64_t internode_nvl_bytes(const Config& config, int num_local_ranks, int64_t hidden_bytes,
                            int num_scales, int num_topk);

}  // namespace uccl::ep
