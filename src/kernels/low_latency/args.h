// Arguments of the low-latency kernels (host and device). Pointers are device addresses; the
// RDMA buffers of direct peers are CUDA IPC mappings (null for peers reached by the proxies).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "device/diag.h"
#include "protocol/low_latency_layout.h"
#include "queue/queue_layout.h"

namespace uccl::ep::kernels::low_latency {

/// Most ranks whose RDMA buffers a kernel reaches by stores (this rank's NVLink domain).
constexpr int kMaxDirectPeers = 8;
constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxTopk = 11;
/// Dynamic shared memory a kernel may use for the top-k ids (int32 [num_tokens, K]).
constexpr int kMaxTopkSharedBytes = 160 * 1024;

/// Per-Buffer device state: per half, the calls completed (the next call's direct signals carry
/// seq[h] + 1) and the calls of each kind completed (kind 0 dispatch, 1 combine: the next call
/// of a kind waits for proxy slots >= calls[h][kind] + 1), and the blocks of the running
/// receive phase that finished (the last one advances both).
struct SequenceState {
  uint32_t seq[2];
  uint32_t calls[2][2];
  uint32_t done[2];
};
constexpr int kDispatchKind = 0;
constexpr int kCombineKind = 1;

/// What every low-latency kernel needs to reach its peers.
struct Peers {
  protocol::LowLatencyLayout layout;
  uint8_t* local;                    // this rank's RDMA buffer (device address)
  bool local_in_host_memory;         // pinned host memory (a transport without GPU memory)
  uint8_t* direct[kMaxDirectPeers];  // RDMA buffers of ranks [direct_base, direct_base + n)
  int direct_base, num_direct;       // num_direct 0: only this rank is direct
  int64_t* signals;                  // this rank's signal region (device alias of host memory)
  const queue::QueueDeviceHandle* queues;  // [num_queues] device array
  int num_queues;
  int rank, num_ranks;
  SequenceState* state;
  device::DeviceDiag diag;
  int32_t* mask;  // [num_ranks], 1 = masked (enable_shrink); null: no masking
  /// UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC: signals are read and written with relaxed system-scope
  /// accesses and explicit fences instead of ld.acquire / st.release (common.cuh, same order).
  bool relaxed_signals;

  /// Whether rank `r` is masked: not sent to, not waited for.
  __device__ __forceinline__ bool masked(int r) const {
    return mask != nullptr && *static_cast<volatile int32_t*>(mask + r) != 0;
  }

  /// This rank's or a direct peer's RDMA buffer, or null when `r` goes through the proxies.
  __host__ __device__ uint8_t* direct_buffer(int r) const {
    if (r == rank) return local;
    const int i = r - direct_base;
    return i >= 0 && i < num_direct ? direct[i] : nullptr;
  }
};

struct DispatchArgs {
  Peers p;
  int half;
  const uint16_t* x;  // [num_tokens, H] bf16 bits
  const int64_t* topk_idx;
  int num_tokens, num_topk;
  bool use_fp8, round_scale, use_ue8m0;
  int* cumulative_stats;       // [E] or null
  int64_t* wait_stats;         // [R] or null
  uint8_t* recv_x;             // [E, N, H] bf16 or fp8
  void* recv_scales;           // float [E, S, N] or int32 [E, S/4, N] storage
  int* recv_count;             // [E]
  int* recv_src_info;          // [E, N]
  int64_t* recv_layout_range;  // [E, R]
  device::OutputList outputs;
};

struct CombineArgs {
  Peers p;
  int half;
  const uint16_t* x;        // [E, N, H] bf16 bits; null with zero_copy
  const int64_t* topk_idx;  // [num_tokens, K]
  const float* topk_weights;
  const int64_t* layout_range;  // [E, R]
  int num_tokens, num_topk;
  bool zero_copy;
  bool use_logfmt;       // rows travel as LogFMT-10 (logfmt.cuh); never with zero_copy
  int64_t* wait_stats;   // [R] or null
  uint16_t* combined_x;  // [num_tokens, H]
  device::OutputList outputs;
};

struct CleanArgs {
  Peers p;
};

void launch_dispatch_send(const DispatchArgs& a, int num_sms, cudaStream_t stream);
void launch_dispatch_recv(const DispatchArgs& a, int num_sms, cudaStream_t stream);
void launch_combine_send(const CombineArgs& a, int num_sms, cudaStream_t stream);
void launch_combine_recv(const CombineArgs& a, int num_sms, cudaStream_t stream);
/// Zeroes this rank's signal words and slots of both halves and the sequence state.
void launch_clean(const CleanArgs& a, cudaStream_t stream);
/// Loads every low-latency kernel and sets its shared-memory limit, on the current device. A
/// kernel loaded at its first launch (CUDA lazy loading) waits for the kernels running then,
/// and a receive kernel spins until the proxies' transfers land: docs/command_path.md, "CUDA
/// lazy loading". Call before the first launch.
void preload_dispatch();
void preload_combine();
/// The rank mask (int32 [num_ranks] device memory): set or clear one entry, copy it into
/// `out` (int32 [num_ranks]), clear it; on `stream`.
void launch_set_mask(int32_t* mask, int rank, bool masked, cudaStream_t stream);
void launch_copy_mask(const int32_t* mask, int num_ranks, int32_t* out, cudaStream_t stream);
void launch_clear_mask(int32_t* mask, int num_ranks, cudaStream_t stream);
void preload_mask();
/// Dynamic shared memory the kernels need for `num_tokens * num_topk` expert ids.
int64_t topk_shared_bytes(int num_tokens, int num_topk);

}  // namespace uccl::ep::kernels::low_latency
