// Memory layout of the intranode mode in the NVLink buffer (protocol/nvl_layout.h), shared by
// host and device code.
//
// The rings live in the buffer's data bytes (`num_nvl_bytes`), the counters in the mode area of
// its NvlControl (IntranodeControl). All ranks use the same layout, so a peer's address is its
// base plus the same offset.
//
// Rings: ring (channel c, source s) on rank d holds the tokens that rank s sends to rank d in
// channel c. The sender writes slots and then `ring_tail[c][s]` in the receiver's control block;
// the receiver copies slots out and then writes `ring_head[c][s]` in its own control block, which
// the sender reads over NVLink when the ring looks full. Counters count slots since the start
// of the operation; the receiver resets them to zero when it is done with the operation.
//
// Count exchange: rank s writes its row rank_counts[s][*] (and expert_counts[s][*]) into every
// peer. A rank that found its inputs inconsistent writes kBadInputs instead of its counts, so
// that every peer learns of it within the exchange instead of waiting for data that never comes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/hd.h"
#include "protocol/nvl_layout.h"

namespace uccl::ep::protocol {

constexpr int kMaxChannels = 64;        // num_sms / 2
constexpr int kMaxLocalExperts = 1024;  // experts per rank
constexpr int kMaxTopK = 32;            // top-k entries per token in normal mode
constexpr int kMaxScales = 1024;        // FP8 scale entries per token in normal mode
/// The rank_counts entry of a rank that found its dispatch inputs inconsistent.
constexpr int32_t kBadInputs = -1;

/// Counters of one rank, written by peers over NVLink.
struct alignas(128) IntranodeControl {
  alignas(128) int32_t rank_counts[kMaxNvlPeers][kMaxNvlPeers];        // [src][dst] tokens src->dst
  alignas(128) int32_t expert_counts[kMaxNvlPeers][kMaxLocalExperts];  // [src][local expert]
  alignas(128) int32_t ring_tail[kMaxChannels][kMaxNvlPeers];          // [channel][src]
  alignas(128) int32_t ring_head[kMaxChannels][kMaxNvlPeers];          // [channel][src]
  alignas(128) int64_t ring_meta[kMaxChannels][kMaxNvlPeers];          // dispatch range
};
static_assert(sizeof(IntranodeControl) % 128 == 0);
static_assert(sizeof(IntranodeControl) <= kNvlModeControlBytes);
static_assert(offsetof(IntranodeControl, ring_meta) % 8 == 0);

/// The intranode counters in a rank's NvlControl.
UCCL_HD IntranodeControl* intranode_control(NvlControl* ctrl) {
  return reinterpret_cast<IntranodeControl*>(ctrl->mode);
}

/// Token range [begin, end) of `channel` when `num_tokens` are split over `num_channels`.
struct TokenRange {
  int begin, end;
};
UCCL_HD TokenRange channel_token_range(int num_tokens, int num_channels, int channel) {
  const int per_channel = (num_tokens + num_channels - 1) / num_channels;
  const int begin = per_channel * channel < num_tokens ? per_channel * channel : num_tokens;
  const int end = begin + per_channel < num_tokens ? begin + per_channel : num_tokens;
  return {begin, end};
}

/// The dispatch range record a sender publishes: [start, end) within its block for the receiver,
/// stored so that zero means "not yet written".
UCCL_HD int64_t encode_range(int start, int end) {
  return (static_cast<int64_t>(end + 1) << 32) | static_cast<uint32_t>(start + 1);
}
UCCL_HD int decode_range_start(int64_t v) {
  return static_cast<int>(v & 0xffffffff) - 1;
}
UCCL_HD int decode_range_end(int64_t v) {
  return static_cast<int>(v >> 32) - 1;
}

/// send_head[token][rank]: the ring slot a token took, or -(next slot)-1 when it was not sent to
/// that rank. Either way, slots_before() is how many slots of that ring precede the token.
UCCL_HD int encode_unsent(int next_slot) {
  return -next_slot - 1;
}
UCCL_HD int slots_before(int send_head_value) {
  return send_head_value >= 0 ? send_head_value : -send_head_value - 1;
}

UCCL_HD int64_t align16(int64_t x) {
  return (x + 15) / 16 * 16;
}

/// One dispatch slot is a row of x in the rings' row region and a metadata record in their
/// metadata region (RingGeometry). Byte offsets inside the record: scales | top-k ids (int32
/// local) | weights | src index.
struct DispatchSlot {
  int64_t x_bytes, scales_offset, topk_idx_offset, topk_weights_offset, src_idx_offset, meta_bytes;
  UCCL_HD static DispatchSlot make(int64_t hidden_bytes, int num_scales, int num_topk) {
    DispatchSlot s{};
    s.x_bytes = hidden_bytes;
    s.scales_offset = 0;
    s.topk_idx_offset = s.scales_offset + 4ll * num_scales;
    s.topk_weights_offset = s.topk_idx_offset + 4ll * num_topk;
    s.src_idx_offset = s.topk_weights_offset + 4ll * num_topk;
    s.meta_bytes = align16(s.src_idx_offset + 4);
    return s;
  }
};

/// One combine slot: a bf16 row with its top-k weights right after it, in the row region (no
/// metadata record). Unlike the dispatch, the combine is faster this way than with 128-byte
/// aligned rows and the weights in records (docs/intranode.md, "Measurements behind the code's
/// choices").
struct CombineSlot {
  int64_t x_bytes, topk_weights_offset, meta_bytes;
  UCCL_HD static CombineSlot make(int64_t hidden_bytes, int num_topk) {
    CombineSlot s{};
    s.x_bytes = align16(hidden_bytes + 4ll * num_topk);
    s.topk_weights_offset = hidden_bytes;
    s.meta_bytes = 0;
    return s;
  }
};

/// Placement of the rings of one operation in the ring storage of a rank: the rows of every
/// slot of every ring first (ring (channel, src) at index channel * num_ranks + src, `capacity`
/// rows each), then the metadata records in the same order. Rows thus start every x_bytes from
/// the storage base (a 14336-byte BF16 row stays 128-byte aligned), which row copies need to
/// run at full speed (docs/intranode.md, "Measurements behind the code's choices").
struct RingGeometry {
  int num_channels, num_ranks, capacity;
  int64_t x_bytes, meta_bytes;
  UCCL_HD int64_t num_slots() const {
    return static_cast<int64_t>(num_channels) * num_ranks * capacity;
  }
  /// Index of slot `slot` (taken modulo the capacity) of ring (channel, src) among all slots.
  UCCL_HD int64_t slot_index(int channel, int src, int slot) const {
    return (static_cast<int64_t>(channel) * num_ranks + src) * capacity + slot % capacity;
  }
  UCCL_HD int64_t x_offset(int channel, int src, int slot) const {
    return slot_index(channel, src, slot) * x_bytes;
  }
  UCCL_HD int64_t meta_offset(int channel, int src, int slot) const {
    return num_slots() * x_bytes + slot_index(channel, src, slot) * meta_bytes;
  }
  UCCL_HD int64_t total_bytes() const { return num_slots() * (x_bytes + meta_bytes); }
};

/// The slots of ring (channel, src) in the ring storage at `base` (sizes from the geometry,
/// which kernels read from their parameters rather than keep in registers).
struct RingView {
  uint8_t* x;     // slot 0's row
  uint8_t* meta;  // slot 0's metadata record
  UCCL_HD RingView(uint8_t* base, const RingGeometry& g, int channel, int src)
      : x(base + g.x_offset(channel, src, 0)), meta(base + g.meta_offset(channel, src, 0)) {}
  /// Slot `slot` (modulo the capacity): its row and its metadata record.
  UCCL_HD uint8_t* row(const RingGeometry& g, int slot) const {
    return x + static_cast<int64_t>(slot % g.capacity) * g.x_bytes;
  }
  UCCL_HD uint8_t* record(const RingGeometry& g, int slot) const {
    return meta + static_cast<int64_t>(slot % g.capacity) * g.meta_bytes;
  }
};

/// Results of the notify kernel for the host; `seq` is written last so a stale value from an
/// earlier call is never mistaken for this one.
struct HostNotifyResult {
  int32_t seq;
  int32_t num_recv_tokens;
  int32_t num_recv_tokens_per_expert[kMaxLocalExperts];
};

}  // namespace uccl::ep::protocol
