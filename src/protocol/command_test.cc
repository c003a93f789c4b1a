// Tests of the 16-byte command format: encode/decode round trips against an independent
// reference packing, and every host-side limit check.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>

#include "common/error.h"
#include "protocol/command.h"
#include "protocol/command_limits.h"

namespace uccl::ep::protocol {
namespace {

// ---- Reference packing: the bit table of command.h written as (word, lsb, width) fields and
// set bit by bit, so it shares no code or shifts with the encoders under test.

struct Field {
  int word, lsb, width;
  uint64_t value;
};

Command ref_pack(std::initializer_list<Field> fields) {
  uint64_t words[2] = {0, 0};
  for (const Field& f : fields) {
    EXPECT_TRUE(f.width == 64 || (f.value >> f.width) == 0)
        << "reference field at bit " << f.lsb << " does not fit " << f.width << " bits";
    for (int bit = 0; bit < f.width; ++bit)
      if ((f.value >> bit) & 1) words[f.word] |= uint64_t{1} << (f.lsb + bit);
  }
  return {words[0], words[1]};
}

constexpr uint64_t kOpWrite = 1, kOpWriteSignal = 2, kOpAtomic = 3, kOpFence = 4, kOpBarrier = 5;

Command ref_write(uint64_t op, uint32_t peer, uint64_t local, uint64_t remote, uint64_t bytes,
                  uint32_t slot = 0, uint32_t value = 0) {
  return ref_pack({{0, 0, 4, op},
                   {0, 4, 12, peer},
                   {0, 16, 32, remote / 16},
                   {0, 48, 16, slot},
                   {1, 0, 32, local / 16},
                   {1, 32, 24, bytes / 16},
                   {1, 56, 8, value}});
}

// ---- Random field values, biased toward the limits (min, max, max - 1, uniform).

class Values {
 public:
  explicit Values(uint64_t seed) : rng_(seed) {}
  uint64_t in(uint64_t lo, uint64_t hi) {
    switch (rng_() % 6) {
      case 0:
        return lo;
      case 1:
        return hi;
      case 2:
        return hi > lo ? hi - 1 : hi;
      default:
        return lo + rng_() % (hi - lo + 1);
    }
  }
  uint32_t peer() { return static_cast<uint32_t>(in(0, kMaxPeers - 1)); }
  uint64_t offset() { return in(0, (kMaxOffset >> kUnitShift) - 1) << kUnitShift; }
  uint64_t bytes() { return in(0, kMaxWriteBytes >> kUnitShift) << kUnitShift; }
  uint32_t slot() { return static_cast<uint32_t>(in(0, kMaxSignalSlots - 1)); }
  uint32_t u32() { return static_cast<uint32_t>(in(0, std::numeric_limits<uint32_t>::max())); }
  int32_t i32() { return static_cast<int32_t>(u32()); }

 private:
  std::mt19937_64 rng_;
};

constexpr int kRounds = 20000;

void expect_same(const Command& got, const Command& want) {
  EXPECT_EQ(got.word0, want.word0);
  EXPECT_EQ(got.word1, want.word1);
}

TEST(CommandFormat, SizeAndOpcodes) {
  static_assert(sizeof(Command) == 16 && alignof(Command) == 16);
  EXPECT_EQ(static_cast<int>(Opcode::kEmpty), 0);
  EXPECT_EQ(decode(Command{0, 0}).opcode, Opcode::kEmpty);
  EXPECT_EQ(kMaxWriteBytes, (uint64_t{1} << 28) - 16);
  EXPECT_EQ(kMaxOffset, uint64_t{64} << 30);
}

TEST(CommandFormat, WriteRoundTrip) {
  Values v(1);
  for (int i = 0; i < kRounds; ++i) {
    const uint32_t peer = v.peer();
    const uint64_t local = v.offset(), remote = v.offset(), bytes = v.bytes();
    const Command c = encode_write(peer, local, remote, bytes);
    expect_same(c, ref_write(kOpWrite, peer, local, remote, bytes));
    ASSERT_NE(c.word0, 0u);
    const CommandFields f = decode(c);
    ASSERT_EQ(f.opcode, Opcode::kWrite);
    ASSERT_EQ(f.peer, peer);
    ASSERT_EQ(f.local_offset, local);
    ASSERT_EQ(f.remote_offset, remote);
    ASSERT_EQ(f.bytes, bytes);
    ASSERT_EQ(f.signal_slot, 0u);
    ASSERT_EQ(f.value, 0);
    ASSERT_EQ(f.sequence, 0u);
  }
}

TEST(CommandFormat, WriteSignalRoundTrip) {
  Values v(2);
  for (int i = 0; i < kRounds; ++i) {
    const uint32_t peer = v.peer(), slot = v.slot();
    const uint32_t value = static_cast<uint32_t>(v.in(1, kMaxFusedSignalValue));
    const uint64_t local = v.offset(), remote = v.offset(), bytes = v.bytes();
    const Command c = encode_write_signal(peer, local, remote, bytes, slot, value);
    expect_same(c, ref_write(kOpWriteSignal, peer, local, remote, bytes, slot, value));
    ASSERT_NE(c.word0, 0u);
    const CommandFields f = decode(c);
    ASSERT_EQ(f.opcode, Opcode::kWriteSignal);
    ASSERT_EQ(f.peer, peer);
    ASSERT_EQ(f.local_offset, local);
    ASSERT_EQ(f.remote_offset, remote);
    ASSERT_EQ(f.bytes, bytes);
    ASSERT_EQ(f.signal_slot, slot);
    ASSERT_EQ(f.value, value);
    ASSERT_EQ(f.sequence, 0u);
  }
}

TEST(CommandFormat, AtomicAddRoundTrip) {
  Values v(3);
  for (int i = 0; i < kRounds; ++i) {
    const uint32_t peer = v.peer(), slot = v.slot();
    const int32_t value = i == 0 ? std::numeric_limits<int32_t>::min() : v.i32();
    const Command c = encode_atomic_add(peer, slot, value);
    expect_same(c, ref_pack({{0, 0, 4, kOpAtomic},
                             {0, 4, 12, peer},
                             {0, 48, 16, slot},
                             {1, 0, 32, static_cast<uint32_t>(value)}}));
    ASSERT_NE(c.word0, 0u);
    const CommandFields f = decode(c);
    ASSERT_EQ(f.opcode, Opcode::kAtomicAdd);
    ASSERT_EQ(f.peer, peer);
    ASSERT_EQ(f.signal_slot, slot);
    ASSERT_EQ(f.value, value);  // sign preserved
    ASSERT_EQ(f.bytes, 0u);
    ASSERT_EQ(f.local_offset, 0u);
    ASSERT_EQ(f.remote_offset, 0u);
  }
}

TEST(CommandFormat, FenceAndBarrierRoundTrip) {
  Values v(4);
  for (int i = 0; i < kRounds; ++i) {
    const uint32_t sequence = v.u32(), group = v.slot();
    const Command fence = encode_fence(sequence);
    expect_same(fence, ref_pack({{0, 0, 4, kOpFence}, {0, 16, 32, sequence}}));
    ASSERT_NE(fence.word0, 0u);
    CommandFields f = decode(fence);
    ASSERT_EQ(f.opcode, Opcode::kFence);
    ASSERT_EQ(f.sequence, sequence);
    ASSERT_EQ(f.peer, 0u);

    const Command barrier = encode_barrier(group, sequence);
    expect_same(barrier,
                ref_pack({{0, 0, 4, kOpBarrier}, {0, 16, 32, sequence}, {0, 48, 16, group}}));
    ASSERT_NE(barrier.word0, 0u);
    f = decode(barrier);
    ASSERT_EQ(f.opcode, Opcode::kBarrier);
    ASSERT_EQ(f.sequence, sequence);
    ASSERT_EQ(f.signal_slot, group);
  }
}

TEST(CommandFormat, AllZeroFieldsStillMarkTheSlotFull) {
  EXPECT_NE(encode_write(0, 0, 0, 0).word0, 0u);
  EXPECT_NE(encode_write_signal(0, 0, 0, 0, 0, 1).word0, 0u);
  EXPECT_NE(encode_atomic_add(0, 0, 0).word0, 0u);
  EXPECT_NE(encode_fence(0).word0, 0u);
  EXPECT_NE(encode_barrier(0, 0).word0, 0u);
}

// ---- Limit checks: each rule raises Error(kValue) naming the field; the limits pass.

template <typename Fn>
void expect_value_error(Fn&& fn, const std::string& field) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one naming '" << field << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kValue) << e.what();
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos)
        << "message does not name '" << field << "': " << e.what();
  }
}

constexpr uint64_t kLastOffset = kMaxOffset - kUnit;

TEST(CommandLimits, WriteAcceptsItsLimits) {
  EXPECT_NO_THROW(check_write_limits(0, 0, 0, 0));
  EXPECT_NO_THROW(check_write_limits(kMaxPeers - 1, kLastOffset, kLastOffset, kUnit));
  const uint64_t last_full = kMaxOffset - kMaxWriteBytes;
  EXPECT_NO_THROW(check_write_limits(kMaxPeers - 1, last_full, last_full, kMaxWriteBytes));
}

TEST(CommandLimits, WriteRangeEndsWithinTheAddressableBuffer) {
  expect_value_error([] { check_write_limits(0, kLastOffset, 0, 2 * kUnit); }, "range");
  expect_value_error([] { check_write_limits(0, 0, kLastOffset, 2 * kUnit); }, "range");
  expect_value_error([] { check_write_limits(0, kLastOffset, kLastOffset, kMaxWriteBytes); },
                     "range");
}

// A free queue slot is recognised by word1 == kEmptyWord1: no accepted command may produce it.
TEST(CommandLimits, NoAcceptedCommandLooksLikeAFreeSlot) {
  EXPECT_EQ(kEmptyWord1, ~uint64_t{0});
  // The only WRITE_SIGNAL with an all-ones word1 (last local unit, largest size, value 255)
  // is refused.
  const Command all_ones = encode_write_signal(0, kLastOffset, 0, kMaxWriteBytes, 0, 255);
  EXPECT_EQ(all_ones.word1, kEmptyWord1);
  expect_value_error([] { check_write_limits(0, kLastOffset, 0, kMaxWriteBytes); }, "range");
  const uint64_t last_full = kMaxOffset - kMaxWriteBytes;
  EXPECT_NE(encode_write_signal(0, last_full, 0, kMaxWriteBytes, 0, 255).word1, kEmptyWord1);
  EXPECT_NE(encode_write_signal(0, kLastOffset, 0, kUnit, 0, 255).word1, kEmptyWord1);
  EXPECT_NE(encode_atomic_add(0, 0, -1).word1, kEmptyWord1);
  EXPECT_NE(encode_fence(~0u).word1, kEmptyWord1);
  EXPECT_NE(encode_barrier(0xffff, ~0u).word1, kEmptyWord1);
}

TEST(CommandLimits, WriteRejectsEachField) {
  expect_value_error([] { check_write_limits(kMaxPeers, 0, 0, 16); }, "peer");
  expect_value_error([] { check_write_limits(0, 8, 0, 16); }, "local_offset");
  expect_value_error([] { check_write_limits(0, kMaxOffset, 0, 16); }, "local_offset");
  expect_value_error([] { check_write_limits(0, 0, 4, 16); }, "remote_offset");
  expect_value_error([] { check_write_limits(0, 0, kMaxOffset, 16); }, "remote_offset");
  expect_value_error([] { check_write_limits(0, 0, 0, 17); }, "bytes");
  expect_value_error([] { check_write_limits(0, 0, 0, kMaxWriteBytes + kUnit); }, "bytes");
}

TEST(CommandLimits, FusedSignal) {
  EXPECT_NO_THROW(check_fused_signal_limits(0, 1));
  EXPECT_NO_THROW(check_fused_signal_limits(kMaxSignalSlots - 1, kMaxFusedSignalValue));
  expect_value_error([] { check_fused_signal_limits(kMaxSignalSlots, 1); }, "slot");
  expect_value_error([] { check_fused_signal_limits(0, 0); }, "value");
  expect_value_error([] { check_fused_signal_limits(0, kMaxFusedSignalValue + 1); }, "value");
}

TEST(CommandLimits, Atomic) {
  constexpr int64_t kMin = std::numeric_limits<int32_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  EXPECT_NO_THROW(check_atomic_limits(kMaxPeers - 1, kMaxSignalSlots - 1, kMin));
  EXPECT_NO_THROW(check_atomic_limits(0, 0, kMax));
  expect_value_error([] { check_atomic_limits(kMaxPeers, 0, 1); }, "peer");
  expect_value_error([] { check_atomic_limits(0, kMaxSignalSlots, 1); }, "slot");
  expect_value_error([] { check_atomic_limits(0, 0, kMax + 1); }, "value");
  expect_value_error([] { check_atomic_limits(0, 0, kMin - 1); }, "value");
}

TEST(CommandLimits, Buffer) {
  EXPECT_NO_THROW(check_buffer_limits("num_rdma_bytes", kMaxOffset));
  expect_value_error([] { check_buffer_limits("num_rdma_bytes", kMaxOffset + 1); },
                     "num_rdma_bytes");
}

// What the checks accept, the encoders carry exactly.
TEST(CommandLimits, AcceptedValuesRoundTrip) {
  Values v(5);
  for (int i = 0; i < 2000; ++i) {
    const uint32_t peer = v.peer(), slot = v.slot();
    const uint64_t bytes = v.bytes();
    // Offsets below 64 GiB whose range ends at or below it.
    const uint64_t last_unit = std::min(kMaxOffset - bytes, kLastOffset) >> kUnitShift;
    const uint64_t local = v.in(0, last_unit) << kUnitShift;
    const uint64_t remote = v.in(0, last_unit) << kUnitShift;
    const uint32_t value = static_cast<uint32_t>(v.in(1, kMaxFusedSignalValue));
    ASSERT_NO_THROW(check_write_limits(peer, local, remote, bytes));
    ASSERT_NE(encode_write_signal(peer, local, remote, bytes, slot, value).word1, kEmptyWord1);
    ASSERT_NO_THROW(check_fused_signal_limits(slot, value));
    const CommandFields f = decode(encode_write_signal(peer, local, remote, bytes, slot, value));
    ASSERT_EQ(f.peer, peer);
    ASSERT_EQ(f.local_offset, local);
    ASSERT_EQ(f.remote_offset, remote);
    ASSERT_EQ(f.bytes, bytes);
    ASSERT_EQ(f.signal_slot, slot);
    ASSERT_EQ(f.value, value);
  }
}

}  // namespace
}  // namespace uccl::ep::protocol
