// Where the low-latency mode keeps what in the RDMA buffer and in the signal region. Host and
// device share this file; every rank computes the same offsets from (T, H, num_experts, R).
//
// RDMA buffer (DeepEP V1's size: get_low_latency_rdma_size_hint), two halves h = 0, 1:
//   [signals 0 | signals 1 | send 0 | send 1 | recv 0 | recv 1]
//   signals h: int32 [num_experts]: a direct (NVLink or self) sender's signal, one per
//              (local expert, source rank) pair in a dispatch (index e_local * R + src) and
//              one per global expert in a combine (index e). A call uses one half, so both
//              kinds of call share the words.
//   send h:    dispatch: per global expert e, a block [16-byte header | T messages]: the
//              tokens this rank sends to e, staged for one proxy write. combine: rows
//              [E_local][N] of combine messages (next_combine_buffer's view).
//   recv h:    dispatch: per (local expert, source rank), a block like the send's. combine:
//              [num_experts][T] combine messages, slot s of expert e = the s-th token (in
//              token order) this rank sent to e.
// A block header holds the number of messages (int32) that follow.
//
// Signal region (host memory, int64 slots the proxies' transports add to): slot
// (2h + kind) * num_experts + i, kind 0 for dispatches and 1 for combines, for the same index i
// as the RDMA buffer's signal words.
//
// Signals are never reset. The k-th call on half h (dispatch or combine) sets the direct words
// it signals to k; the j-th call of one kind on h adds 1 to the proxy slots of that kind, which
// then hold j. A receiver waits for word >= k or slot >= j. Every call signals every index of its
// half exactly once, whatever the counts (each index either by a direct word or by a proxy slot,
// fixed by the topology), so every rank hears from every rank in each call.
#pragma once

#include <cstdint>

#include "common/hd.h"

namespace uccl::ep::protocol {

constexpr int64_t kLowLatencyHeaderBytes = 16;
constexpr int64_t kLowLatencyAlign = 128;

UCCL_HD constexpr int64_t ll_align(int64_t v, int64_t a) {
  return (v + a - 1) / a * a;
}

struct LowLatencyLayout {
  int64_t T = 0, hidden = 0, num_experts = 0, num_ranks = 0;
  int64_t dispatch_message = 0;  // 16 + max(2H, H + 4H/128)
  int64_t combine_message = 0;   // 4H/128 + 2H
  int64_t block = 0;             // dispatch block: header + T messages
  int64_t signal_bytes = 0, send_bytes = 0, recv_bytes = 0;

  UCCL_HD LowLatencyLayout() {}
  UCCL_HD LowLatencyLayout(int64_t t, int64_t h, int64_t e, int64_t r)
      : T(t), hidden(h), num_experts(e), num_ranks(r) {
    const int64_t scales = h / 128;
    dispatch_message = 16 + (2 * h > h + 4 * scales ? 2 * h : h + 4 * scales);
    combine_message = 4 * scales + 2 * h;
    block = kLowLatencyHeaderBytes + t * dispatch_message;
    const int64_t dispatch_send = e * block;
    const int64_t combine = e * t * combine_message;
    signal_bytes = ll_align(4 * e, kLowLatencyAlign);
    send_bytes = dispatch_send > combine ? dispatch_send : combine;
    send_bytes = send_bytes > t * dispatch_message ? send_bytes : t * dispatch_message;
    recv_bytes = send_bytes;
  }
  UCCL_HD int64_t total_bytes() const { return 2 * (signal_bytes + send_bytes + recv_bytes); }
  UCCL_HD int64_t local_experts() const { return num_experts / num_ranks; }

  UCCL_HD int64_t signal_offset(int half) const { return half * signal_bytes; }
  UCCL_HD int64_t send_offset(int half) const { return 2 * signal_bytes + half * send_bytes; }
  UCCL_HD int64_t recv_offset(int half) const {
    return 2 * signal_bytes + 2 * send_bytes + half * recv_bytes;
  }
  /// Dispatch: the send block of global expert e; the receive block of (local expert, source).
  UCCL_HD int64_t dispatch_send_block(int half, int64_t e) const {
    return send_offset(half) + e * block;
  }
  UCCL_HD int64_t dispatch_recv_block(int half, int64_t e_local, int64_t src) const {
    return recv_offset(half) + (e_local * num_ranks + src) * block;
  }
  /// Combine: send row (local expert, row); receive slot (global expert, slot).
  UCCL_HD int64_t combine_send_row(int half, int64_t e_local, int64_t row) const {
    return send_offset(half) + (e_local * num_ranks * T + row) * combine_message;
  }
  UCCL_HD int64_t combine_recv_slot(int half, int64_t e, int64_t slot) const {
    return recv_offset(half) + (e * T + slot) * combine_message;
  }
  /// Signal-region slot of index i (e_local * R + src for a dispatch, kind 0; e for a combine,
  /// kind 1) of half h.
  UCCL_HD int64_t signal_slot(int half, int kind, int64_t i) const {
    return (2 * half + kind) * num_experts + i;
  }
  UCCL_HD int64_t num_signal_slots() const { return 4 * num_experts; }
};

}  // namespace uccl::ep::protocol
