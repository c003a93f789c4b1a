// Argument structs of the intranode kernels (host-visible; filled by the runtime).
#pragma once

#include <cstdint>

#include "common/hd.h"
#include "device/diag.h"
#include "kernels/nvl/peers.h"
#include "protocol/intranode_layout.h"

namespace uccl::ep::kernels::intranode {

/// Every rank's NVLink buffer as mapped in this process (index = rank; the intranode mode's
/// ranks are exactly the NVLink domain): its rings, its intranode counters, and the domain's
/// own view for the barrier.
struct IntranodePeers {
  uint8_t* rings[protocol::kMaxNvlPeers];
  protocol::IntranodeControl* ctrl[protocol::kMaxNvlPeers];
  nvl::NvlPeers nvl;
};

/// The intranode view of an NVLink domain's peers.
UCCL_HD IntranodePeers intranode_peers(const nvl::NvlPeers& p) {
  IntranodePeers out{};
  for (int r = 0; r < protocol::kMaxNvlPeers; ++r) {
    out.rings[r] = p.buffers[r];
    out.ctrl[r] = p.ctrl[r] != nullptr ? protocol::intranode_control(p.ctrl[r]) : nullptr;
  }
  out.nvl = p;
  return out;
}

/// Barrier of all ranks, optionally clearing this rank's ring counters between two barriers.
struct BarrierArgs {
  IntranodePeers peers;
  int rank, num_ranks;
  bool clear_rings;
  device::DeviceDiag diag;
};

/// Exchange of token counts before a non-cached dispatch. Before it, the kernel checks the
/// caller's counts against what is_token_in_rank and topk_idx route (and every expert id).
struct NotifyArgs {
  IntranodePeers peers;
  int rank, num_ranks;
  const int32_t* num_tokens_per_rank;    // [num_ranks]
  const int32_t* num_tokens_per_expert;  // [num_experts]
  const bool* is_token_in_rank;          // [num_tokens, num_ranks]
  const int64_t* topk_idx;               // [num_tokens, num_topk] or null (no expert checks)
  int num_topk;
  int num_tokens, num_experts, num_channels, expert_alignment;
  int32_t* rank_prefix_matrix;              // out [num_ranks, num_ranks]
  int32_t* channel_prefix_matrix;           // out [num_ranks, num_channels], inclusive
  protocol::HostNotifyResult* host_result;  // device alias of pinned memory; null: do not report
  int32_t seq;
  device::DeviceDiag diag;
  device::OutputList outputs;  // poisoned when the rank is aborted
};

/// Moves tokens to the ranks that hold their experts.
struct DispatchArgs {
  IntranodePeers peers;
  int rank, num_ranks;
  const uint8_t* x;  // [num_tokens, hidden_bytes]
  int64_t hidden_bytes;
  int num_tokens;
  const int32_t* x_scales;  // 4-byte scales (float32 or int32), null if none
  int num_scales;
  int64_t scale_token_stride, scale_hidden_stride;  // in elements
  const int64_t* topk_idx;                          // [num_tokens, num_topk], null if none
  const float* topk_weights;
  int num_topk, num_local_experts;
  const bool* is_token_in_rank;          // [num_tokens, num_ranks]
  const int32_t* channel_prefix_matrix;  // [num_ranks, num_channels], inclusive, sender side
  const int32_t* rank_prefix_matrix;     // [num_ranks, num_ranks]
  uint8_t* recv_x;                       // [num_recv_rows, hidden_bytes]
  int64_t num_recv_rows;                 // rows of the outputs (exact count or worst case)
  int32_t* recv_x_scales;                // [num_recv, num_scales] or null
  int32_t* recv_src_idx;                 // [num_recv] or null (cached)
  int64_t* recv_topk_idx;                // [num_recv, num_topk] or null
  float* recv_topk_weights;              // [num_recv, num_topk] or null
  int32_t* recv_channel_prefix_matrix;   // [num_ranks, num_channels] or null (cached)
  int32_t* send_head;                    // [num_tokens, num_ranks] or null (cached)
  int num_channels, max_send_tokens;
  protocol::RingGeometry rings;
  protocol::DispatchSlot slot;
  device::DeviceDiag diag;
  device::OutputList outputs;  // poisoned when the rank is aborted
};

/// Returns expert outputs to the ranks the tokens came from and reduces them there.
struct CombineArgs {
  IntranodePeers peers;
  int rank, num_ranks;
  const uint8_t* x;  // [num_recv, hidden] bf16
  int64_t hidden_bytes;
  const float* topk_weights;  // [num_recv, num_topk] or null
  int num_topk;
  const uint8_t* bias0;  // [num_tokens, hidden] bf16 or null
  const uint8_t* bias1;
  const int32_t* rank_prefix_matrix;          // [num_ranks, num_ranks]
  const int32_t* recv_channel_prefix_matrix;  // [num_ranks, num_channels], exclusive
  const int32_t* send_head;                   // [num_tokens, num_ranks]
  int num_tokens;
  uint8_t* combined_x;           // [num_tokens, hidden] bf16
  float* combined_topk_weights;  // [num_tokens, num_topk] or null
  int num_channels, max_send_tokens;
  protocol::RingGeometry rings;
  protocol::CombineSlot slot;
  device::DeviceDiag diag;
  device::OutputList outputs;  // poisoned when the rank is aborted
};

/// Threads per block of the dispatch and combine kernels (24 warps).
constexpr int kNumThreads = 768;
constexpr int kNumWarps = kNumThreads / 32;
/// 16-byte words each lane keeps in flight when copying a token: 4 divides a BF16 row of hidden
/// 7168 (896 words) into full rounds, and more cost registers and spills.
constexpr int kCopyUnroll = 4;
/// 16-byte loads each lane of a combine receiver keeps in flight, over all ranks of a token (more
/// cost registers and spills).
constexpr int kCombineLoads = 8;

}  // namespace uccl::ep::kernels::intranode
