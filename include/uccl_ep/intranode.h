// Public, framework-free C++ API of the intranode (NVLink) normal mode.
//
// One IntranodeBuffer per process (one GPU each) of an NVLink domain of 2, 4 or 8 ranks.
// Tensors are borrowed TensorViews (device pointers + shape + dtype); outputs are allocated by
// the caller with the sizes the calls below document. Semantics follow DeepEP V1's Buffer
// (see docs/intranode.md): received rows are grouped by source rank, then by source token index.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "uccl_ep/config.h"
#include "uccl_ep/tensor.h"

namespace uccl::ep {

/// What argument validation needs to know about a buffer.
struct BufferInfo {
  int rank = 0;
  int num_ranks = 1;
  int64_t num_nvl_bytes = 0;
  int device_index = 0;
};

/// get_dispatch_layout: T = num_tokens, K = num_topk, R = num_ranks, E = num_experts.
struct LayoutTensors {
  TensorView topk_idx;                  // [T, K] int64, contiguous; -1 = no expert
  int num_experts = 0;                  // multiple of R
  TensorView num_tokens_per_rank;       // out [R] int32
  TensorView num_tokens_per_rdma_rank;  // out [R / 8] int32 when R > 8, else not given
  TensorView num_tokens_per_expert;     // out [E] int32
  TensorView is_token_in_rank;          // out [T, R] bool
};

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

/// The intranode buffer of one rank. Calls are not thread-safe; kernels run on `stream`.
/// Every wait has a deadline (UCCL_EP_TIMEOUT_SECS); after a timeout every call throws.
class IntranodeBuffer {
 public:
  /// Allocates num_nvl_bytes of ring storage plus control words on `device_index`.
  IntranodeBuffer(int rank, int num_ranks, int64_t num_nvl_bytes, int device_index);
  ~IntranodeBuffer();
  IntranodeBuffer(const IntranodeBuffer&) = delete;
  IntranodeBuffer& operator=(const IntranodeBuffer&) = delete;

  const BufferInfo& info() const;
  /// CUDA IPC handle of this rank's allocation (exchange it with every peer).
  std::vector<uint8_t> ipc_handle() const;
  /// Opens the peers' handles (index = rank; this rank's entry is ignored). Collective.
  void connect(const std::vector<std::vector<uint8_t>>& ipc_handles);
  bool is_available() const;

  void get_dispatch_layout(const LayoutTensors& t, cudaStream_t stream);
  /// Launches the count exchange; with wait_for_counts blocks until the counts arrive.
  NotifyResult notify_dispatch(const NotifyTensors& t, cudaStream_t stream);
  void dispatch(const DispatchTensors& t, cudaStream_t stream);
  void combine(const CombineTensors& t, cudaStream_t stream);

  /// Makes `waiter` wait for the work queued on `waitee` so far (one event, reused; works
  /// under CUDA graph capture). The streams belong to this buffer's device.
  void stream_wait(cudaStream_t waiter, cudaStream_t waitee);
  /// Makes `waiter` wait for `event` (a recorded CUDA event; null: no wait).
  void stream_wait_event(cudaStream_t waiter, cudaEvent_t event);

  /// Throws the recorded error (a GPU or host wait that timed out), if any.
  void check_healthy() const;
  /// Waits for all work on the device; then frees everything. Safe to call twice.
  void destroy();
  /// Device pointer and size of this rank's ring storage (for get_local_buffer_tensor).
  void* local_buffer() const;
  int64_t num_nvl_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace uccl::ep
