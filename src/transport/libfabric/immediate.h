// Wire formats of the libfabric transport: the 32-bit remote CQ data that carries a fused
// signal, and the 32-byte message that carries an emulated atomic or a control word.
//
// Remote CQ data (32 bits: EFA and verbs deliver 4 bytes, so nothing uses the upper half):
//   [31:30] kind: 0 = none (a raw benchmark write), 1 = signal add, 2 and 3 reserved
//   [29:14] signal slot (16 bits: 65536 slots, as many as a command can name)
//   [13:0]  signed value, two's complement (-8192..8191, never 0); WRITE_SIGNAL values are
//           1..255, so every command fits
// The data of a write arrives before the CQ entry that carries its immediate, so the target
// applies the signal after the data by construction, on every provider.
//
// Message (an emulated ATOMIC_ADD, whose int32 value does not fit the immediate; the signal of
// an empty write, which needs no RMA; a control word of connect()): a fixed little-endian
// layout (static_asserted), 32 bytes.
#pragma once

#include <bit>
#include <cstdint>

namespace uccl::ep::transport::libfabric {

constexpr uint32_t kImmKindShift = 30;
constexpr uint32_t kImmKindNone = 0;
constexpr uint32_t kImmKindSignal = 1;
constexpr uint32_t kImmSlotShift = 14;
constexpr uint32_t kImmSlotBits = 16;
constexpr uint32_t kImmValueBits = 14;
constexpr int64_t kImmMaxValue = (int64_t{1} << (kImmValueBits - 1)) - 1;  // 8191
constexpr int64_t kImmMinValue = -kImmMaxValue - 1;                        // -8192
constexpr uint32_t kImmMaxSlots = 1u << kImmSlotBits;

/// Encodes a signal; callers check slot < kImmMaxSlots and kImmMinValue <= value <= kImmMaxValue.
constexpr uint32_t encode_signal_imm(uint32_t slot, int64_t value) {
  return (kImmKindSignal << kImmKindShift) | ((slot & (kImmMaxSlots - 1)) << kImmSlotShift) |
         (static_cast<uint32_t>(value) & ((1u << kImmValueBits) - 1));
}

struct DecodedImm {
  uint32_t kind = 0;
  uint32_t slot = 0;
  int64_t value = 0;
};

constexpr DecodedImm decode_imm(uint64_t data) {
  const uint32_t imm = static_cast<uint32_t>(data);
  DecodedImm d;
  d.kind = imm >> kImmKindShift;
  d.slot = (imm >> kImmSlotShift) & (kImmMaxSlots - 1);
  const uint32_t raw = imm & ((1u << kImmValueBits) - 1);
  // Sign-extend the 14-bit value.
  d.value = static_cast<int64_t>(raw) -
            ((raw >> (kImmValueBits - 1)) ? (int64_t{1} << kImmValueBits) : 0);
  return d;
}

enum class RecordKind : uint32_t { kAtomicAdd = 1, kHello = 2, kDone = 3, kNop = 4 };

constexpr uint32_t kRecordMagic = 0x52504555;  // "UEPR"; bump on any layout change

/// A message between two libfabric transports (little-endian hosts only, asserted below).
struct Record {
  uint32_t magic = kRecordMagic;
  uint32_t kind = 0;  // RecordKind
  uint32_t src_rank = 0;
  uint32_t slot = 0;
  int64_t value = 0;
  uint64_t reserved = 0;
};
static_assert(sizeof(Record) == 32, "a transport message is 32 bytes");
static_assert(std::endian::native == std::endian::little,
              "the libfabric messages are little-endian structs");

}  // namespace uccl::ep::transport::libfabric
