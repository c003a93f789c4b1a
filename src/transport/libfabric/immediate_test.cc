// Round trips of the libfabric transport's 32-bit immediate and its message layout (pure
// C++, no libfabric needed).
#include "transport/libfabric/immediate.h"

#include <gtest/gtest.h>

namespace uccl::ep::transport::libfabric {
namespace {

TEST(Immediate, SignalRoundTripsEverySlotBoundaryAndValue) {
  for (uint32_t slot : {0u, 1u, 255u, 4096u, kImmMaxSlots - 1}) {
    for (int64_t v = kImmMinValue; v <= kImmMaxValue; ++v) {
      if (v == 0) continue;
      const uint32_t imm = encode_signal_imm(slot, v);
      const DecodedImm d = decode_imm(imm);
      ASSERT_EQ(d.kind, kImmKindSignal);
      ASSERT_EQ(d.slot, slot);
      ASSERT_EQ(d.value, v) << "slot " << slot;
    }
  }
}

TEST(Immediate, FitsInFourBytesAndZeroMeansNoSignal) {
  EXPECT_EQ(decode_imm(0).kind, kImmKindNone);
  // The upper 32 bits of an 8-byte CQ data field are ignored (EFA and verbs carry 4 bytes).
  const DecodedImm d = decode_imm((uint64_t{0xdead} << 32) | encode_signal_imm(7, -3));
  EXPECT_EQ(d.slot, 7u);
  EXPECT_EQ(d.value, -3);
  // Every fused WRITE_SIGNAL value of the command format (1..255) fits.
  EXPECT_GE(kImmMaxValue, 255);
  EXPECT_EQ(kImmMaxSlots, 65536u);
}

TEST(Immediate, RecordLayoutIsFixed) {
  EXPECT_EQ(sizeof(Record), 32u);
  EXPECT_EQ(offsetof(Record, value), 16u);
  EXPECT_EQ(Record{}.magic, kRecordMagic);
}

}  // namespace
}  // namespace uccl::ep::transport::libfabric
