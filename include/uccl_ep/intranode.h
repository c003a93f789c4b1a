// Public, framework-free C++ API of the intranode (NVLink) normal mode: operations on a Buffer
// (buffer.h) whose ranks all share one NVLink domain of 2, 4 or 8 GPUs.
//
// Tensors are borrowed TensorViews (device pointers + shape + dtype); outputs are allocated by
// the caller with the sizes the calls below document. Semantics follow DeepEP V1's Buffer
// (see docs/intranode.md): received rows are grouped by source rank, then by source token index.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "uccl_ep/buffer.h"
#include "uccl_ep/config.h"
#include "uccl_ep/routing.h"
#include "uccl_ep/tensor.h"

namespace uccl::ep {

/// Received counts; empty when the call did not wait.
struct NotifyResult {
  int num_recv_tokens = -1;
  std::vector<int> num_recv_tokens_per_expert;  // [E / R], rounded up to expert_alignment
};

/// Dispatch. N = rows received (exact count, or num_worst_tokens). H = hidden, S = scales.
struct DispatchTensors {
  TensorView x;                      // [T, H] bfloat16, or float8_e4m3fn with x_scales
  TensorView x_scales;               // [T, S] float32 or int32, any strides; only with float8 x
  TensorView topk_idx;               // [T, K] int64 or not given (must be absent when cached)
  TensorView topk_weights;           // [T, K] float32, given together with topk_idx
  TensorView is_token_in_rank;       // [T, R] bool
  TensorView rank_prefix_matrix;     // [R, R] int32 (from notify or the handle)
  TensorView channel_prefix_matrix;  // [R, C] int32 (from notify or the handle)
  int num_experts = 0;               // needed with topk_idx
  int num_worst_tokens = 0;          // > 0: N = num_worst_tokens and recv_topk_idx tail is -1
  bool cached = false;               // reuse a handle: only x (and scales) move
  Config config;
  TensorView recv_x;                      // out [N, H], dtype of x
  TensorView recv_x_scales;               // out [N, S] contiguous, dtype of x_scales
  TensorView recv_topk_idx;               // out [N, K] int64 (local expert ids, -1 elsewhere)
  TensorView recv_topk_weights;           // out [N, K] float32 (0 where not local)
  TensorView recv_src_idx;                // out [N] int32 (not when cached)
  TensorView recv_channel_prefix_matrix;  // out [R, C] int32 (not when cached)
  TensorView send_head;                   // out [T, R] int32 (not when cached)
};

/// Count exchange before a non-cached dispatch. C = config.num_sms / 2 channels. The dispatch
/// inputs (x, scales, top-k, is_token_in_rank, config, num_experts, num_worst_tokens) are
/// validated here, before any collective work starts; its outputs are not needed yet.
struct NotifyTensors {
  DispatchTensors dispatch;          // inputs of the dispatch that follows; rank_prefix_matrix
                                     // [R, R] and channel_prefix_matrix [R, C] are outputs here
  TensorView num_tokens_per_rank;    // [R] int32
  TensorView num_tokens_per_expert;  // [E] int32
  int expert_alignment = 1;          // >= 1: per-expert counts are rounded up to it
  bool wait_for_counts = true;       // false: do not block (num_worst_tokens > 0)
};

/// Combine (reverse of a dispatch); handle fields come from that dispatch.
struct CombineTensors {
  TensorView x;                           // [N, H] bfloat16
  TensorView topk_weights;                // [N, K] float32 or not given
  TensorView bias0, bias1;                // [T, H] bfloat16 or not given
  TensorView rank_prefix_matrix;          // [R, R] int32
  TensorView recv_channel_prefix_matrix;  // [R, C] int32
  TensorView recv_src_idx;                // [N] int32
  TensorView is_token_in_rank;            // [T, R] bool
  TensorView send_head;                   // [T, R] int32
  Config config;
  TensorView combined_x;             // out [T, H] bfloat16
  TensorView combined_topk_weights;  // out [T, K] float32 when topk_weights is given
};

/// The intranode operations on a Buffer whose ranks all share one NVLink domain (2, 4 or 8
/// ranks). The Buffer must outlive this object. Calls are not thread-safe; kernels run on
/// `stream`. An aborted buffer (Buffer::check) makes every call throw and every kernel poison
/// its outputs.
class IntranodeOps {
 public:
  /// Throws Error(kValue) when the buffer's ranks span several NVLink domains (use
  /// InternodeOps) or for a rank count the kernels do not support.
  explicit IntranodeOps(Buffer& buffer);
  ~IntranodeOps();
  IntranodeOps(const IntranodeOps&) = delete;
  IntranodeOps& operator=(const IntranodeOps&) = delete;

  /// Launches the count exchange; with wait_for_counts blocks until the counts arrive. The GPU
  /// checks the counts against is_token_in_rank and topk_idx: a disagreement (or an expert id
  /// out of range) is recorded on this rank and reported to its peers, and the call throws on
  /// every rank.
  NotifyResult notify_dispatch(const NotifyTensors& t, cudaStream_t stream);
  /// The dispatch kernel (after notify_dispatch with the same inputs, or cached).
  void dispatch(const DispatchTensors& t, cudaStream_t stream);
  void combine(const CombineTensors& t, cudaStream_t stream);

 private:
  struct State;
  std::unique_ptr<State> s_;
};

/// The argument checks of each call (no GPU needed).
void validate_notify(const BufferInfo& info, const NotifyTensors& t);
void validate_dispatch(const BufferInfo& info, const DispatchTensors& t);
void validate_combine(const BufferInfo& info, const CombineTensors& t);

/// NVLink-buffer bytes a dispatch / combine with these parameters needs.
int64_t dispatch_ring_bytes(const Config& config, int num_ranks, int64_t hidden_bytes,
                            int num_scales, int num_topk);
int64_t combine_ring_bytes(const Config& config, int num_ranks, int64_t hidden_bytes, int num_topk);

}  // namespace uccl::ep
