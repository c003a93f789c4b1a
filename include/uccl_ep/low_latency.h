// Public, framework-free C++ API of the low-latency mode (DeepEP V1's low_latency_dispatch /
// low_latency_combine): operations on a Buffer built with low_latency_mode and an RDMA buffer of
// at least get_low_latency_rdma_size_hint(T, H, R, num_experts) bytes.
//
// Every rank sends each (token, expert) pair straight to the rank owning the expert: by stores
// through CUDA IPC mappings to ranks of its NVLink domain (allow_nvlink), through its CPU proxies
// to every other rank. A call has a send phase (kernels push data and commands, never wait for
// peers) and a receive phase (waits for every peer's signal, lays the data out); the hook of
// return_recv_hook runs the receive phase later. Each call uses one of two halves of the RDMA
// buffer, alternating, so at most two results may be pending at once (docs/low_latency.md).
//
// Names: T = num_max_dispatch_tokens_per_rank, R = ranks, E = local experts (num_experts / R),
// N = R * T (rows per local expert), H = hidden, K = top-k.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>

#include "uccl_ep/buffer.h"
#include "uccl_ep/tensor.h"

namespace uccl::ep {

/// Hidden sizes the low-latency kernels support (DeepEP V1's list).
inline constexpr int kLowLatencyHiddenSizes[] = {2048, 2560, 3072, 4096, 5120, 6144, 7168, 8192};
inline constexpr int kLowLatencyMaxTopk = 11;

struct LowLatencyDispatchTensors {
  TensorView x;         // [num_tokens <= T, H] bfloat16, contiguous
  TensorView topk_idx;  // [num_tokens, K] int64, contiguous; -1: no expert
  int num_max_dispatch_tokens_per_rank = 0;
  int num_experts = 0;
  bool use_fp8 = true;
  bool round_scale = false;  // power-of-two scales (FP8 only)
  bool use_ue8m0 = false;    // scales as packed exponent bytes (needs round_scale)
  TensorView cumulative_local_expert_recv_stats;  // [E] int32 or not given: += received counts
  TensorView dispatch_wait_recv_cost_stats;       // [R] int64 or not given: += ns waited per source
  TensorView recv_x;             // out [E, N, H] bfloat16, or float8_e4m3fn with use_fp8
  TensorView recv_x_scales;      // out with use_fp8: float32 [E, N, H/128], or int32
                                 // [E, N, H/512] with use_ue8m0; strides (N*S, 1, N)
  TensorView recv_count;         // out [E] int32
  TensorView recv_src_info;      // out [E, N] int32: source token index of each row
  TensorView recv_layout_range;  // out [E, R] int64: (first row << 32) | rows from that rank
};

struct LowLatencyCombineTensors {
  TensorView x;             // [E, N, H] bfloat16 contiguous; not read with zero_copy
  TensorView topk_idx;      // [num_tokens, K] int64: the dispatch's
  TensorView topk_weights;  // [num_tokens, K] float32
  TensorView src_info;      // [E, N] int32: the dispatch's recv_src_info
  TensorView layout_range;  // [E, R] int64: the dispatch's recv_layout_range
  int num_max_dispatch_tokens_per_rank = 0;
  int num_experts = 0;
  bool use_logfmt = false;
  bool zero_copy = false;                   // x was written into next_combine_buffer() already
  TensorView combine_wait_recv_cost_stats;  // [R] int64 or not given: += ns waited per source
  TensorView combined_x;                    // out [num_tokens, H] bfloat16 contiguous
};

/// Which phases one launch runs.
enum class LowLatencyPhase : uint8_t { kSend = 1, kRecv = 2, kBoth = 3 };

/// The low-latency operations on a Buffer. The Buffer must outlive this object. Calls are not
/// thread-safe; kernels run on `stream`. Every rank must make the same sequence of calls with
/// the same T, H and num_experts.
class LowLatencyOps {
 public:
  /// Throws Error(kValue) unless the buffer was built with low_latency_mode and an RDMA buffer.
  /// `allow_nvlink`: peers of this rank's NVLink domain are written directly (else every peer
  /// goes through the CPU proxies). `num_sms`: at most this many blocks per kernel; 0 (as
  /// DeepEP): up to every SM of the device (a kernel takes one block per 16 experts or tokens).
  /// `enable_shrink`: a rank mask (DeepEP's enable_shrink): masked ranks are neither sent to
  /// nor waited for, and a peer that misses the deadline gets masked instead of failing the
  /// call.
  LowLatencyOps(Buffer& buffer, bool allow_nvlink, int num_sms = 0, bool enable_shrink = false);
  ~LowLatencyOps();
  LowLatencyOps(const LowLatencyOps&) = delete;
  LowLatencyOps& operator=(const LowLatencyOps&) = delete;

  /// Launches the phases of a dispatch on `stream`; returns the buffer half the call uses
  /// (pass it to dispatch_recv when `phase` is kSend).
  int dispatch(const LowLatencyDispatchTensors& t, LowLatencyPhase phase, cudaStream_t stream);
  void dispatch_recv(const LowLatencyDispatchTensors& t, int half, cudaStream_t stream);
  int combine(const LowLatencyCombineTensors& t, LowLatencyPhase phase, cudaStream_t stream);
  void combine_recv(const LowLatencyCombineTensors& t, int half, cudaStream_t stream);

  /// Collective: after a barrier of all ranks, zeroes this rank's signals of both halves, then
  /// barriers again (for an RDMA buffer that normal-mode kernels used, or after an error).
  void clean(int num_max_dispatch_tokens_per_rank, int hidden, int num_experts,
             cudaStream_t stream);
  /// The send buffer of the next combine, as a bfloat16 [E, N, H] view with row stride
  /// low_latency_combine_message_bytes(H) / 2 (for zero_copy).
  TensorView next_combine_buffer(int num_max_dispatch_tokens_per_rank, int hidden,
                                 int num_experts) const;
  /// Whether peer `rank` is written directly (NVLink) rather than through the proxies.
  bool peer_is_direct(int rank) const;

  /// The rank mask (needs enable_shrink, else Error(kValue)); kernels on `stream`. Masks or
  /// unmasks `rank`; copies the mask into `out` (int32 [num_ranks], 1 = masked); unmasks all.
  void update_mask(int rank, bool masked, cudaStream_t stream);
  void query_mask(const TensorView& out, cudaStream_t stream) const;
  void clean_mask(cudaStream_t stream);

 private:
  struct State;
  std::unique_ptr<State> s_;
};

/// Bytes of one dispatch message slot (16-byte header + the larger of BF16 and FP8+scales) and
/// of one combine message slot (BF16 + LogFMT metadata), as DeepEP V1 sizes them.
int64_t low_latency_dispatch_message_bytes(int hidden);
int64_t low_latency_combine_message_bytes(int hidden);

/// The argument checks of each call (no GPU needed); `info` carries the buffer's mode and
/// num_rdma_bytes.
void validate_low_latency_dispatch(const BufferInfo& info, const LowLatencyDispatchTensors& t);
void validate_low_latency_combine(const BufferInfo& info, const LowLatencyCombineTensors& t);

}  // namespace uccl::ep
