// Arguments of the internode kernels (host-visible; filled by the runtime). Pointers are device
// addresses; the NVLink buffers of the node's ranks are CUDA IPC mappings.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "device/diag.h"
#include "protocol/internode_layout.h"
#include "queue/queue_layout.h"

namespace uccl::ep::kernels::internode {

constexpr int kThreads = 768;  // 24 warps per block
constexpr int kWarps = kThreads / 32;
constexpr int kNotifyThreads = 1024;

/// What every internode kernel needs to reach its peers. Rank r is local rank r % L of node
/// r / L.
struct InternodePeers {
  protocol::InternodeRdmaLayout rdma;
  protocol::InternodeNvlLayout nvl;
  uint8_t* rdma_local;       // this rank's RDMA buffer
  bool rdma_in_host_memory;  // pinned host memory (a transport without GPU memory)
  int64_t* signals;          // this rank's signal region (device alias of host memory)
  const queue::QueueDeviceHandle* queues;  // [num_queues] device array
  int num_queues;
  uint8_t* nvl_data[protocol::kMaxNvlPeers];                 // data bytes, by local rank
  protocol::InternodeControl* ctrl[protocol::kMaxNvlPeers];  // counters, by local rank
  protocol::InternodeState* state;
  int rank, num_ranks, local_rank, num_local_ranks, node, num_nodes;
  device::DeviceDiag diag;
};

/// Per-channel counts (one block per channel): raw counts of channel c's tokens to each rank
/// and node, and each token's position in its stream to each node.
struct NotifyCountArgs {
  InternodePeers p;
  const bool* is_token_in_rank;  // [T, R]
  int num_tokens, num_channels;
  int32_t* gbl_channel_prefix_matrix;   // out [R, C]: raw counts here, prefixed by the exchange
  int32_t* rdma_channel_prefix_matrix;  // out [N, C]: likewise
  int32_t* send_rdma_head;              // out [T, N]
  device::OutputList outputs;
};

/// The exchange (one block): prefixes, checks against the caller's counts, one record to every
/// rank, then what this rank receives.
struct NotifyExchangeArgs {
  InternodePeers p;
  const int32_t* num_tokens_per_rank;       // [R]
  const int32_t* num_tokens_per_rdma_rank;  // [N]
  const int32_t* num_tokens_per_expert;     // [E]
  int num_experts, num_channels, expert_alignment;
  int32_t* gbl_channel_prefix_matrix;          // in raw counts, out inclusive [R, C]
  int32_t* rdma_channel_prefix_matrix;         // in raw counts, out inclusive [N, C]
  int32_t* recv_rdma_channel_prefix_matrix;    // out [N, C] inclusive
  int32_t* recv_rdma_rank_prefix_sum;          // out [N] inclusive
  int32_t* recv_gbl_channel_prefix_matrix;     // out [R, C] first row of (source, channel)
  int32_t* recv_gbl_rank_prefix_sum;           // out [R] inclusive
  protocol::InternodeHostResult* host_result;  // device alias of pinned memory; null: none
  int64_t seq;  // this notify's number on the Buffer (1, 2, ...): the notify slots' value
  device::DeviceDiag diag;
  device::OutputList outputs;
};

struct DispatchArgs {
  InternodePeers p;
  const uint8_t* x;  // [T, hidden_bytes]
  int64_t hidden_bytes;
  int num_tokens;
  const int32_t* x_scales;  // 4-byte scales, null if none
  int num_scales;
  int64_t scale_token_stride, scale_hidden_stride;  // elements
  const int64_t* topk_idx;                          // [T, K] or null
  const float* topk_weights;
  int num_topk, num_experts;
  const bool* is_token_in_rank;                    // [T, R]
  const int32_t* rdma_channel_prefix_matrix;       // [N, C] inclusive (sender)
  const int32_t* recv_rdma_channel_prefix_matrix;  // [N, C] inclusive (forwarder)
  const int32_t* recv_rdma_rank_prefix_sum;        // [N] inclusive (forwarder)
  const int32_t* recv_gbl_channel_prefix_matrix;   // [R, C] first rows (receiver)
  const int32_t* recv_gbl_rank_prefix_sum;         // [R] inclusive (receiver)
  const int32_t* send_rdma_head;                   // [T, N]
  uint8_t* recv_x;                                 // [Nr, hidden_bytes]
  int64_t num_recv_rows;                           // Nr (exact, or num_worst_tokens)
  int32_t* recv_x_scales;                          // [Nr, S] or null
  int64_t* recv_topk_idx;                          // [Nr, K] or null
  float* recv_topk_weights;                        // [Nr, K] or null
  uint8_t* recv_src_meta;                          // [Nr, 8]
  int32_t* send_nvl_head;                          // [Nf, L]
  int64_t num_nvl_head_rows;                       // Nf (exact, or num_worst_tokens)
  int num_channels;
  protocol::InternodeDispatchSlot slot;
  device::OutputList outputs;
};

struct CombineArgs {
  InternodePeers p;
  const uint8_t* x;  // [Nr, hidden_bytes] bf16
  int64_t hidden_bytes;
  const float* topk_weights;  // [Nr, K] or null
  int num_topk;
  const uint8_t* bias0;  // [T, hidden_bytes] or null
  const uint8_t* bias1;
  int num_tokens;
  const int32_t* rdma_channel_prefix_matrix;       // [N, C] inclusive (source)
  const int32_t* recv_rdma_channel_prefix_matrix;  // [N, C] inclusive (forwarder)
  const int32_t* recv_rdma_rank_prefix_sum;        // [N] inclusive (forwarder)
  const int32_t* recv_gbl_channel_prefix_matrix;   // [R, C] first rows (receiver side)
  const int32_t* recv_gbl_rank_prefix_sum;         // [R] inclusive
  const int32_t* send_rdma_head;                   // [T, N]
  const int32_t* send_nvl_head;                    // [Nf, L]
  uint8_t* combined_x;                             // [T, hidden_bytes]
  float* combined_topk_weights;                    // [T, K] or null
  int num_channels;
  protocol::InternodeCombineSlot slot;
  device::OutputList outputs;
};

void launch_notify(const NotifyCountArgs& count, const NotifyExchangeArgs& exchange,
                   cudaStream_t stream);
void launch_dispatch(const DispatchArgs& a, cudaStream_t stream);
void launch_combine(const CombineArgs& a, cudaStream_t stream);
/// Load the internode kernels now (CUDA lazy loading would load them at their first launch,
/// waiting for the kernels running then: docs/command_path.md, "CUDA lazy loading").
void preload_notify();
void preload_dispatch();
void preload_combine();

}  // namespace uccl::ep::kernels::internode
