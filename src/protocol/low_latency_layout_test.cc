// The low-latency layout: the signal region's barrier slots and call signal slots (disjoint,
// dense, the barrier's independent of the call's shape), and the RDMA buffer's size, which
// must stay DeepEP V1's (the signal region is separate host memory).
#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <tuple>
#include <vector>

#include "protocol/low_latency_layout.h"

namespace uccl::ep::protocol {
namespace {

// (T, H, num_experts, R)
const std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t>> kShapes = {
    {1, 2048, 2, 2}, {64, 2048, 16, 2}, {128, 7168, 256, 8}, {32, 4096, 288, 16}, {8, 2560, 96, 32},
};

TEST(LowLatencyLayout, BarrierSlotsAreTheFirstRanksSlotsWhateverTheCall) {
  for (const auto& [t, h, e, r] : kShapes) {
    const LowLatencyLayout layout(t, h, e, r);
    const LowLatencyLayout other(2 * t, 8192, 2 * e, r);  // another call on the same ranks
    EXPECT_EQ(layout.call_signal_begin(), r);
    for (int64_t src = 0; src < r; ++src) {
      EXPECT_EQ(layout.barrier_slot(src), src);
      EXPECT_EQ(other.barrier_slot(src), layout.barrier_slot(src));
    }
  }
}

TEST(LowLatencyLayout, CallSignalSlotsFollowTheBarrierSlotsDenseAndDistinct) {
  for (const auto& [t, h, e, r] : kShapes) {
    const LowLatencyLayout layout(t, h, e, r);
    std::set<int64_t> used;
    for (int64_t src = 0; src < r; ++src) EXPECT_TRUE(used.insert(layout.barrier_slot(src)).second);
    for (int half = 0; half < 2; ++half) {
      for (int kind = 0; kind < 2; ++kind) {
        for (int64_t i = 0; i < e; ++i) {
          const int64_t slot = layout.signal_slot(half, kind, i);
          EXPECT_GE(slot, layout.call_signal_begin());
          EXPECT_EQ(slot, r + (2 * half + kind) * e + i);  // plain reference
          EXPECT_TRUE(used.insert(slot).second) << "slot " << slot << " used twice";
        }
      }
    }
    EXPECT_EQ(layout.num_signal_slots(), r + 4 * e);
    ASSERT_EQ(static_cast<int64_t>(used.size()), layout.num_signal_slots());
    EXPECT_EQ(*used.begin(), 0);
    EXPECT_EQ(*used.rbegin(), layout.num_signal_slots() - 1);
  }
}

TEST(LowLatencyLayout, RdmaBufferKeepsDeepEpSizes) {
  // DeepEP V1's LowLatencyLayout for T=128, H=7168, 256 experts (the DeepSeek-V3 decode shape):
  // 2 * (signals 1024 + send 477102080 + recv 477102080); the number of ranks plays no part.
  for (int64_t r : {8, 16, 32}) {
    const LowLatencyLayout layout(128, 7168, 256, r);
    EXPECT_EQ(layout.dispatch_message, 14352);
    EXPECT_EQ(layout.combine_message, 14560);
    EXPECT_EQ(layout.signal_bytes, 1024);
    EXPECT_EQ(layout.total_bytes(), 1908410368);
  }
  const LowLatencyLayout small(64, 2048, 16, 2);
  EXPECT_EQ(small.signal_bytes, 128);  // int32 [16], aligned to 128 bytes
  EXPECT_EQ(small.recv_offset(1) + small.recv_bytes, small.total_bytes());
}

}  // namespace
}  // namespace uccl::ep::protocol
