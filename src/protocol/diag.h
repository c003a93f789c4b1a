// The health words every mode shares, host and device: the sites a wait or a check can fail
// at, and the error record the first failure of a rank fills (host-visible) before it raises
// the rank's abort flag.
#pragma once

#include <cstdint>

namespace uccl::ep::protocol {

/// Where a rank failed. Values below kFirstCheck are spin-waits that passed their deadline
/// (the wait profile counts them); the others are errors found without waiting.
enum class WaitSite : int32_t {
  kNone = 0,
  kBarrier = 1,        // NVLink barrier: peer = the rank that did not arrive
  kDispatchRange = 2,  // intranode dispatch receiver: the peer's token range
  kDispatchTail = 3,   // intranode dispatch receiver: ring tail (tokens the peer sent)
  kDispatchHead = 4,   // intranode dispatch sender: ring head (tokens the peer consumed)
  kCombineTail = 5,    // intranode combine receiver: ring tail
  kCombineHead = 6,    // intranode combine sender: ring head
  // GPU->CPU command queues (src/queue): `queue` is the queue index, `peer` -1.
  kQueueFull = 8,      // push: expected = tail needed (ticket + n - capacity), observed = tail
  kQueueFence = 9,     // wait_fence: expected = FENCE sequence, observed = fence_done
  kQueueBarrier = 10,  // wait_barrier: expected = BARRIER sequence, observed = barrier_done
  // Intranode dispatch sender's publisher warp: its copy warps stopped short of the channel's
  // tokens for the peer (expected = tokens, observed = slots released as the tail).
  kDispatchPublish = 11,
  // Low-latency receive phases: `peer` = the sending rank, `channel` = the expert (local expert
  // in the dispatch, global expert in the combine); expected = the call's sequence number on
  // its buffer half, observed = the signal.
  kLowLatencyDispatchRecv = 12,
  kLowLatencyCombineRecv = 13,
  // Internode: `peer` = the rank waited for, `channel` = the channel (-1 for notify);
  // expected / observed = the slot's value (cumulative counts, internode_layout.h).
  kInternodeNotify = 7,   // the peer's count record
  kInternodeChunk = 14,   // a chunk of the peer's network stream
  kInternodeCredit = 15,  // ring credits from the peer that receives the stream

  kFirstCheck = 16,
  // More rows arrived than the outputs have (num_worst_tokens): expected = rows, observed = the
  // row that did not fit, plus one.
  kRecvOverflow = 16,
  // A CPU proxy failed (its queue's error word was set): `queue`, observed = the error code.
  kProxyError = 17,
  // num_tokens_per_rank[peer] = expected, but is_token_in_rank routes observed tokens there.
  kRankCountMismatch = 18,
  // num_tokens_per_expert[row] = expected, but topk_idx names expert `row` observed times.
  kExpertCountMismatch = 19,
  // topk_idx[row, col] = observed is outside [-1, expected = num_experts).
  kBadExpertId = 20,
  // `peer` found its own inputs inconsistent during the count exchange (its error says which).
  kPeerError = 21,
  // Low-latency dispatch receiver: the block from `peer` for local expert `channel` claims
  // observed messages, outside [0, expected = num_max_dispatch_tokens_per_rank].
  kLowLatencyBadBlock = 22,
  // Low-latency combine sender: the handle's layout range for (source `peer`, local expert
  // `channel`) starts at row `row` with observed rows, outside [0, expected = ranks * T].
  kLowLatencyBadHandle = 23,
  // num_tokens_per_rdma_rank[peer = node] = expected, but is_token_in_rank routes observed
  // tokens to that node.
  kNodeCountMismatch = 24,
};

/// Whether `site` is a spin-wait (a deadline) rather than a check.
constexpr bool is_wait_site(WaitSite site) {
  return static_cast<int32_t>(site) > 0 && site < WaitSite::kFirstCheck;
}

/// Filled once, by the first failure of a rank; lives in host-mapped pinned memory. `flag` is
/// written last, after a system-scope fence. Fields a site does not use are -1.
struct HostErrorRecord {
  int32_t flag;
  int32_t site;
  int32_t rank, peer, channel, queue;
  int32_t row, col;  // checks: the entry of the argument that failed
  int64_t expected, observed;
  uint64_t waited_ns;
};

/// Device words of one rank's health (device memory): the abort flag that every wait polls
/// and every kernel reads before it finishes.
struct DeviceHealth {
  uint32_t abort_flag;  // non-zero once the rank failed
  uint32_t pad[31];
};

}  // namespace uccl::ep::protocol
