// The 16-byte command a GPU pushes into a queue for the CPU proxy: the one definition shared by
// the device producer, the host consumer, the proxy, the transports and the tests.
//
// Offsets and sizes travel in 16-byte units; commands carry offsets, never pointers: every
// rank's registered buffer has the same layout, so (peer, local offset, remote offset, bytes)
// names a transfer completely.
//
//   word0 [3:0]   opcode (never 0 for a valid command: 0 marks an empty slot)
//         [15:4]  peer rank                            (12 bits: ranks < 4096)
//         [47:16] WRITE*: remote offset / 16           (32 bits: < 64 GiB)
//                 FENCE / BARRIER: sequence number     (32 bits)
//         [63:48] WRITE_SIGNAL, ATOMIC_ADD: signal slot (16 bits: < 65536 counters)
//                 BARRIER: group id                    (16 bits)
//   word1 WRITE*:      [31:0] local offset / 16 (32 bits), [55:32] bytes / 16 (24 bits:
//                      < 256 MiB), [63:56] WRITE_SIGNAL: value added to the signal (1..255)
//         ATOMIC_ADD:  [31:0] value (int32, two's complement), [63:32] zero
//         FENCE, BARRIER: zero
//
// A queue slot nobody has written since its consumer freed it holds word0 == 0 and
// word1 == kEmptyWord1 (all ones). No valid command has that word1: it would be a WRITE whose
// local range ends past 64 GiB, which check_write_limits refuses. Both halves therefore say
// whether a slot's 16-byte store has arrived (queue_layout.h, rule 3).
#pragma once

#include <cstdint>

#include "common/hd.h"

namespace uccl::ep::protocol {

enum class Opcode : uint8_t {
  kEmpty = 0,        // an unwritten queue slot
  kWrite = 1,        // copy bytes to the peer's buffer
  kWriteSignal = 2,  // copy bytes, then add `value` to the peer's signal slot (after the data)
  kAtomicAdd = 3,    // add a signed value to the peer's signal slot
  kFence = 4,        // completes when every earlier command of its queue completed at the target
  kBarrier = 5,      // all ranks of a group
};

struct alignas(16) Command {
  uint64_t word0;
  uint64_t word1;
};
static_assert(sizeof(Command) == 16, "a command is 16 bytes");

constexpr int kUnitShift = 4;  // offsets and byte counts are in 16-byte units
constexpr uint64_t kUnit = uint64_t{1} << kUnitShift;
constexpr uint32_t kMaxPeers = 1u << 12;                                      // peer < kMaxPeers
constexpr uint64_t kMaxOffset = (uint64_t{1} << 32) << kUnitShift;            // offset < kMaxOffset
constexpr uint64_t kMaxWriteBytes = ((uint64_t{1} << 24) - 1) << kUnitShift;  // bytes <= this
constexpr uint32_t kMaxSignalSlots = 1u << 16;                                // slot < this
constexpr uint32_t kMaxFusedSignalValue = 255;  // WRITE_SIGNAL value in [1, 255]
constexpr uint64_t kEmptyWord1 = ~uint64_t{0};  // word1 of a free queue slot (see above)

/// Every field of a command, decoded.
struct CommandFields {
  Opcode opcode = Opcode::kEmpty;
  uint32_t peer = 0;
  uint64_t local_offset = 0, remote_offset = 0, bytes = 0;  // in bytes
  uint32_t signal_slot = 0;                                 // or barrier group
  int64_t value = 0;                                        // signal / atomic value
  uint32_t sequence = 0;                                    // FENCE / BARRIER
};

UCCL_HD uint64_t pack_word0(Opcode op, uint32_t peer, uint32_t middle, uint32_t top) {
  return static_cast<uint64_t>(op) | (static_cast<uint64_t>(peer & 0xfffu) << 4) |
         (static_cast<uint64_t>(middle) << 16) | (static_cast<uint64_t>(top & 0xffffu) << 48);
}

/// Callers guarantee the limits above (checked on the host by check_*_limits before a
/// configuration is accepted); encoders never check on the device hot path.
UCCL_HD Command encode_write(uint32_t peer, uint64_t local_offset, uint64_t remote_offset,
                             uint64_t bytes) {
  return {pack_word0(Opcode::kWrite, peer, static_cast<uint32_t>(remote_offset >> kUnitShift), 0),
          (local_offset >> kUnitShift) | ((bytes >> kUnitShift) << 32)};
}

UCCL_HD Command encode_write_signal(uint32_t peer, uint64_t local_offset, uint64_t remote_offset,
                                    uint64_t bytes, uint32_t slot, uint32_t value) {
  return {pack_word0(Opcode::kWriteSignal, peer, static_cast<uint32_t>(remote_offset >> kUnitShift),
                     slot),
          (local_offset >> kUnitShift) | ((bytes >> kUnitShift) << 32) |
              (static_cast<uint64_t>(value & 0xffu) << 56)};
}

UCCL_HD Command encode_atomic_add(uint32_t peer, uint32_t slot, int32_t value) {
  return {pack_word0(Opcode::kAtomicAdd, peer, 0, slot), static_cast<uint32_t>(value)};
}

UCCL_HD Command encode_fence(uint32_t sequence) {
  return {pack_word0(Opcode::kFence, 0, sequence, 0), 0};
}

UCCL_HD Command encode_barrier(uint32_t group, uint32_t sequence) {
  return {pack_word0(Opcode::kBarrier, 0, sequence, group), 0};
}

UCCL_HD CommandFields decode(const Command& c) {
  CommandFields f;
  f.opcode = static_cast<Opcode>(c.word0 & 0xf);
  f.peer = static_cast<uint32_t>((c.word0 >> 4) & 0xfff);
  const uint32_t middle = static_cast<uint32_t>(c.word0 >> 16);
  const uint32_t top = static_cast<uint32_t>(c.word0 >> 48);
  switch (f.opcode) {
    case Opcode::kWrite:
    case Opcode::kWriteSignal:
      f.remote_offset = static_cast<uint64_t>(middle) << kUnitShift;
      f.local_offset = (c.word1 & 0xffffffffu) << kUnitShift;
      f.bytes = ((c.word1 >> 32) & 0xffffffu) << kUnitShift;
      if (f.opcode == Opcode::kWriteSignal) {
        f.signal_slot = top;
        f.value = static_cast<int64_t>(c.word1 >> 56);
      }
      break;
    case Opcode::kAtomicAdd:
      f.signal_slot = top;
      f.value = static_cast<int32_t>(static_cast<uint32_t>(c.word1));
      break;
    case Opcode::kFence:
      f.sequence = middle;
      break;
    case Opcode::kBarrier:
      f.sequence = middle;
      f.signal_slot = top;
      break;
    case Opcode::kEmpty:
      break;
  }
  return f;
}

}  // namespace uccl::ep::protocol
