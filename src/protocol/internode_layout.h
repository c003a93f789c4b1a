// Where the internode normal mode keeps what: the RDMA buffer (network stage), the NVLink
// buffer (forwarding stage), the signal slots, and the device state that carries the streams'
// counts from call to call. Host and device share this file; every rank computes the same
// offsets from (R, L, config, row sizes).
//
// Streams. Channel c (one pair of blocks, C = num_sms / 2) owns each sender's tokens
// channel_token_range(T, C, c). Rank (m, l) sends each of them once to every node n it reaches,
// to rank (n, l) (the forwarder): the network stream (c, m -> n). The forwarder passes each row
// to the local ranks it reaches: the NVLink stream (c, l -> d). Combine runs the streams back.
//
// RDMA buffer (same layout on every rank):
//   [notify, 2 parities x (send: R records | recv: R records) | send rings: [C][N] |
//    recv rings: [C][N]]
//   A ring holds W chunks of K = num_max_rdma_chunked_send_tokens slots. Send ring (c, n)
//   stages what this rank sends to node n; recv ring (c, m) receives what node m's rank with
//   this rank's local index sends. Dispatch and combine share the rings: every call starts with
//   a barrier of all ranks (notify, or the RDMA domain's barrier), after which no rank touches
//   the previous call's rings.
//
// Counting, never reset. Chunk g (counted over all calls of a kind) of a network stream sits
// at ring chunk g mod W; its WRITE_SIGNAL adds 1 to the receiver's slot chunk(c, m, g mod S),
// which then holds g / S + 1. The receiver frees chunk g with an ATOMIC_ADD of 1 to the
// sender's credit slot (c, n); the sender writes chunk g once credits >= g - W + 1. The ring
// window W comes from the call's config; the signal window S >= W and every slot's place are
// fixed for the Buffer (from the node count and the signal region, with kMaxChannels
// channels), so calls with different configs (dispatch and combine, cached or not) keep the
// counts: chunk g + S is sent only after chunk g was freed, so slot g mod S is never ahead. A
// stream to the rank's own node (n == m) never leaves the GPU: the sender writes the receive ring
// and publishes its chunk count in a device word; credits come back the same way. NVLink streams
// count rows the same way in int64 tail/head words (InternodeControl). Per-stream totals live
// in InternodeState (device memory), so graph replays keep counting.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/hd.h"
#include "protocol/intranode_layout.h"
#include "protocol/nvl_layout.h"

namespace uccl::ep::protocol {

constexpr int kMaxNodes = 64;  // N
constexpr int kMaxInternodeRanks = 1024;
/// Signal slots [kInternodeSignalBase, ...) of the signal region are the internode mode's (the
/// low-latency mode uses slots from 0, at most 4 * num_experts).
constexpr uint32_t kInternodeSignalBase = 32768;
/// int32 words of a notify record: counts per channel to the destination rank, per channel to
/// its node (sent to the forwarder only), per local expert of the destination, and a flag.
constexpr int kNotifyRecordWords = 2 * kMaxChannels + kMaxLocalExperts + 4;
constexpr int64_t kNotifyRecordBytes = (4 * kNotifyRecordWords + 15) / 16 * 16;
/// The flag word of a record: kNotifyGood, or kBadInputs from a sender whose inputs disagree.
constexpr int kNotifyFlagWord = 2 * kMaxChannels + kMaxLocalExperts;
constexpr int32_t kNotifyGood = 1;

UCCL_HD constexpr int64_t internode_align16(int64_t v) {
  return (v + 15) / 16 * 16;
}

/// A dispatch slot (network and NVLink rings): the row, its scales, top-k ids (int32, global
/// expert ids; -1 none) and weights, then the source record (int32 source node, int32 bitmask
/// of the destination node's local ranks the token reaches).
struct InternodeDispatchSlot {
  int64_t row_bytes, scales_offset, topk_idx_offset, topk_weights_offset, meta_offset, bytes;
  UCCL_HD static InternodeDispatchSlot make(int64_t hidden_bytes, int num_scales, int num_topk) {
    InternodeDispatchSlot s{};
    s.row_bytes = hidden_bytes;
    s.scales_offset = internode_align16(hidden_bytes);
    s.topk_idx_offset = s.scales_offset + 4ll * num_scales;
    s.topk_weights_offset = s.topk_idx_offset + 4ll * num_topk;
    s.meta_offset = s.topk_weights_offset + 4ll * num_topk;
    s.bytes = internode_align16(s.meta_offset + 8);
    return s;
  }
};

/// A combine slot: a bf16 row, then its top-k weights (float32).
struct InternodeCombineSlot {
  int64_t row_bytes, topk_weights_offset, bytes;
  UCCL_HD static InternodeCombineSlot make(int64_t hidden_bytes, int num_topk) {
    InternodeCombineSlot s{};
    s.row_bytes = hidden_bytes;
    s.topk_weights_offset = internode_align16(hidden_bytes);
    s.bytes = internode_align16(s.topk_weights_offset + 4ll * num_topk);
    return s;
  }
};

/// The RDMA buffer and the signal slots of one call.
struct InternodeRdmaLayout {
  int num_ranks = 0, num_nodes = 0, num_channels = 0;
  int chunk = 0;          // K: slots per chunk (num_max_rdma_chunked_send_tokens)
  int window = 0;         // W: chunks per ring (<= signal_window)
  int signal_window = 0;  // S: chunk signal slots per stream, fixed for the Buffer
  int64_t slot_bytes = 0;

  UCCL_HD InternodeRdmaLayout() {}
  UCCL_HD InternodeRdmaLayout(int r, int n, int c, int k, int w, int s, int64_t slot)
      : num_ranks(r),
        num_nodes(n),
        num_channels(c),
        chunk(k),
        window(w),
        signal_window(s),
        slot_bytes(slot) {}

  UCCL_HD int64_t ring_slots() const { return static_cast<int64_t>(chunk) * window; }
  UCCL_HD int64_t ring_bytes() const { return ring_slots() * slot_bytes; }
  /// Notify records alternate between two areas by the notify's parity (seq % 2): a rank
  /// rewrites an area only after every peer finished with it (two notifies later).
  UCCL_HD int64_t notify_send(int dst, int parity) const {
    return (static_cast<int64_t>(parity) * 2 * num_ranks + dst) * kNotifyRecordBytes;
  }
  UCCL_HD int64_t notify_recv(int src, int parity) const {
    return (static_cast<int64_t>(parity) * 2 * num_ranks + num_ranks + src) * kNotifyRecordBytes;
  }
  UCCL_HD int64_t rings_offset() const { return 4ll * num_ranks * kNotifyRecordBytes; }
  /// Slot `slot` (taken modulo the ring) of send ring (channel, node) / recv ring (channel, node).
  UCCL_HD int64_t send_slot(int channel, int node, int64_t slot) const {
    return rings_offset() + (static_cast<int64_t>(channel) * num_nodes + node) * ring_bytes() +
           (slot % ring_slots()) * slot_bytes;
  }
  UCCL_HD int64_t recv_slot(int channel, int node, int64_t slot) const {
    return rings_offset() +
           (static_cast<int64_t>(num_channels + channel) * num_nodes + node) * ring_bytes() +
           (slot % ring_slots()) * slot_bytes;
  }
  UCCL_HD int64_t total_bytes() const {
    return rings_offset() + 2ll * num_channels * num_nodes * ring_bytes();
  }

  // Signal slots, relative to the signal region's start. Stream (kind, channel, node) owns
  // S + 1 consecutive slots: S chunk signals, then its credit slot.
  UCCL_HD uint32_t notify_signal(int src) const {
    return kInternodeSignalBase + static_cast<uint32_t>(src);
  }
  UCCL_HD int64_t stream_signals(int kind, int channel, int node) const {
    return kInternodeSignalBase + kMaxInternodeRanks +
           ((static_cast<int64_t>(kind) * kMaxChannels + channel) * num_nodes + node) *
               (signal_window + 1);
  }
  /// Chunk signal of chunk g of the stream (kind 0 dispatch or 1 combine, channel, source
  /// node) into this rank; it holds chunk_signal_value(g) once chunk g arrived.
  UCCL_HD uint32_t chunk_signal(int kind, int channel, int node, int64_t g) const {
    return static_cast<uint32_t>(stream_signals(kind, channel, node) + g % signal_window);
  }
  UCCL_HD int64_t chunk_signal_value(int64_t g) const { return g / signal_window + 1; }
  /// Credit slot of the send ring (channel, destination node) for `kind`.
  UCCL_HD uint32_t credit_signal(int kind, int channel, int node) const {
    return static_cast<uint32_t>(stream_signals(kind, channel, node) + signal_window);
  }
  /// One past the last signal slot the mode uses.
  UCCL_HD int64_t signal_end() const {
    return kInternodeSignalBase + kMaxInternodeRanks +
           2ll * kMaxChannels * num_nodes * (signal_window + 1);
  }
};

/// Most chunk signals per stream.
constexpr int kMaxSignalWindow = 128;

/// The signal window S of a Buffer over `num_nodes` nodes: the most chunk signals per stream
/// (at most kMaxSignalWindow) for which every stream of kMaxChannels channels fits below
/// `num_user_slots`; 0 when not even one fits.
UCCL_HD int internode_signal_window(int num_nodes, int64_t num_user_slots) {
  const int64_t streams = 2ll * kMaxChannels * num_nodes;
  const int64_t free = num_user_slots - kInternodeSignalBase - kMaxInternodeRanks;
  if (streams <= 0 || free <= 0) return 0;
  const int64_t fit = free / streams - 1;
  return static_cast<int>(fit < kMaxSignalWindow ? (fit > 0 ? fit : 0) : kMaxSignalWindow);
}

/// The NVLink buffer of one call: ring (channel, source local rank) of `capacity` slots in the
/// receiving rank's buffer (dispatch: forwarder -> receiver; combine: receiver -> forwarder).
struct InternodeNvlLayout {
  int num_channels = 0, num_local_ranks = 0, capacity = 0;
  int64_t slot_bytes = 0;
  UCCL_HD int64_t slot(int channel, int src, int64_t pos) const {
    return ((static_cast<int64_t>(channel) * num_local_ranks + src) * capacity + pos % capacity) *
           slot_bytes;
  }
  UCCL_HD int64_t total_bytes() const {
    return static_cast<int64_t>(num_channels) * num_local_ranks * capacity * slot_bytes;
  }
};

/// Ring counters of the NVLink stage in a rank's NvlControl mode area, in rows since the
/// Buffer was created: dispatch ring (c, l) of this rank: tail written by forwarder l; this
/// rank as forwarder: head written by receiver d. Combine the same with the roles swapped.
struct alignas(128) InternodeControl {
  alignas(128) int64_t dispatch_tail[kMaxChannels][kMaxNvlPeers];  // [c][forwarder]
  alignas(128) int64_t dispatch_head[kMaxChannels][kMaxNvlPeers];  // [c][receiver]
  alignas(128) int64_t combine_tail[kMaxChannels][kMaxNvlPeers];   // [c][sender]
  alignas(128) int64_t combine_head[kMaxChannels][kMaxNvlPeers];   // [c][forwarder]
};
static_assert(sizeof(InternodeControl) <= kNvlModeControlBytes);

UCCL_HD InternodeControl* internode_control(NvlControl* ctrl) {
  return reinterpret_cast<InternodeControl*>(ctrl->mode);
}

/// Per-Buffer device state: chunks of each network stream so far (kind 0 dispatch, 1
/// combine), and the device words of the streams to the rank's own node.
struct InternodeState {
  int64_t sent[2][kMaxChannels][kMaxNodes];      // chunks sent, stream (c, -> node)
  int64_t received[2][kMaxChannels][kMaxNodes];  // chunks received, stream (c, node ->)
  int64_t local_chunks[2][kMaxChannels];         // own-node stream: chunks written
  int64_t local_credits[2][kMaxChannels];        // own-node stream: chunks freed
};

/// What notify reports to the host; `seq` last.
struct InternodeHostResult {
  int32_t seq;
  int32_t num_recv_tokens;
  int32_t num_rdma_recv_tokens;
  int32_t num_recv_tokens_per_expert[kMaxLocalExperts];
};

}  // namespace uccl::ep::protocol
