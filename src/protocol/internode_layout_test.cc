// The internode layout: every region and signal slot of a call is distinct and in bounds, and
// the signal window fits the signal region and does not depend on the call's config.
#include "protocol/internode_layout.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <utility>
#include <vector>

namespace uccl::ep::protocol {
namespace {

TEST(InternodeLayout, SlotsAreAlignedAndHoldEveryField) {
  const auto d = InternodeDispatchSlot::make(7168, 56, 8);
  EXPECT_EQ(d.scales_offset, 7168);
  EXPECT_EQ(d.topk_idx_offset, 7168 + 4 * 56);
  EXPECT_EQ(d.topk_weights_offset, d.topk_idx_offset + 32);
  EXPECT_EQ(d.meta_offset, d.topk_weights_offset + 32);
  EXPECT_EQ(d.bytes % 16, 0);
  EXPECT_GE(d.bytes, d.meta_offset + 8);
  const auto c = InternodeCombineSlot::make(14336, 8);
  EXPECT_EQ(c.topk_weights_offset, 14336);
  EXPECT_EQ(c.bytes, 14336 + 32);
}

TEST(InternodeLayout, RegionsDoNotOverlap) {
  const InternodeRdmaLayout l(8, 4, 3, 6, 5, 9, 1024);  // R 8, N 4, C 3, K 6, W 5, S 9
  std::vector<std::pair<int64_t, int64_t>> spans;       // [begin, end)
  for (int parity = 0; parity < 2; ++parity)
    for (int r = 0; r < l.num_ranks; ++r) {
      spans.emplace_back(l.notify_send(r, parity), l.notify_send(r, parity) + kNotifyRecordBytes);
      spans.emplace_back(l.notify_recv(r, parity), l.notify_recv(r, parity) + kNotifyRecordBytes);
    }
  for (int c = 0; c < l.num_channels; ++c)
    for (int n = 0; n < l.num_nodes; ++n)
      for (int64_t s = 0; s < l.ring_slots(); ++s) {
        spans.emplace_back(l.send_slot(c, n, s), l.send_slot(c, n, s) + l.slot_bytes);
        spans.emplace_back(l.recv_slot(c, n, s), l.recv_slot(c, n, s) + l.slot_bytes);
      }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i)
    ASSERT_LE(spans[i - 1].second, spans[i].first) << "overlap at " << spans[i].first;
  EXPECT_EQ(spans.front().first, 0);
  EXPECT_EQ(spans.back().second, l.total_bytes());
  // A chunk's slots are contiguous, and the ring wraps by chunks.
  EXPECT_EQ(l.send_slot(1, 2, 6 * 5), l.send_slot(1, 2, 0));
  EXPECT_EQ(l.recv_slot(1, 2, 7) - l.recv_slot(1, 2, 6), l.slot_bytes);
}

TEST(InternodeLayout, SignalSlotsAreDistinctAndBounded) {
  const InternodeRdmaLayout l(16, 4, 5, 8, 7, 9, 512);
  std::set<uint32_t> seen;
  for (int r = 0; r < l.num_ranks; ++r) EXPECT_TRUE(seen.insert(l.notify_signal(r)).second);
  for (int kind = 0; kind < 2; ++kind)
    for (int c = 0; c < kMaxChannels; ++c)
      for (int n = 0; n < l.num_nodes; ++n) {
        EXPECT_TRUE(seen.insert(l.credit_signal(kind, c, n)).second);
        for (int64_t g = 0; g < l.signal_window; ++g)
          EXPECT_TRUE(seen.insert(l.chunk_signal(kind, c, n, g)).second);
        // Chunk g + S reuses chunk g's slot, one count higher.
        EXPECT_EQ(l.chunk_signal(kind, c, n, 3 + l.signal_window), l.chunk_signal(kind, c, n, 3));
        EXPECT_EQ(l.chunk_signal_value(3 + l.signal_window), l.chunk_signal_value(3) + 1);
      }
  EXPECT_GE(*seen.begin(), kInternodeSignalBase);
  EXPECT_LT(*seen.rbegin(), l.signal_end());
  EXPECT_EQ(static_cast<int64_t>(seen.size()),
            l.signal_end() - kInternodeSignalBase - kMaxInternodeRanks + l.num_ranks);
}

TEST(InternodeLayout, SignalSlotsDoNotDependOnTheCallsConfig) {
  // Two calls of one Buffer with different channels, chunks and windows (a dispatch and a
  // combine config, say) name the same slots for the same stream and chunk.
  const InternodeRdmaLayout a(8, 2, 10, 6, 22, 40, 512), b(8, 2, 3, 16, 8, 40, 512);
  for (int kind = 0; kind < 2; ++kind)
    for (int c = 0; c < 3; ++c)
      for (int n = 0; n < 2; ++n) {
        EXPECT_EQ(a.credit_signal(kind, c, n), b.credit_signal(kind, c, n));
        for (int64_t g : {0, 7, 39, 40, 1000})
          EXPECT_EQ(a.chunk_signal(kind, c, n, g), b.chunk_signal(kind, c, n, g));
      }
  EXPECT_EQ(a.signal_end(), b.signal_end());
}

TEST(InternodeLayout, SignalWindowFitsTheSignalRegion) {
  const int64_t user = 65536 - 16;
  EXPECT_EQ(internode_signal_window(1, user), kMaxSignalWindow);  // plenty of room
  for (int nodes : {2, 8, 16, 32, 64}) {
    const int s = internode_signal_window(nodes, user);
    ASSERT_GE(s, 2) << nodes << " nodes";
    const InternodeRdmaLayout l(nodes, nodes, 64, 6, 2, s, 1024);
    EXPECT_LE(l.signal_end(), user) << nodes << " nodes";
    const InternodeRdmaLayout more(nodes, nodes, 64, 6, 2, s + 1, 1024);
    EXPECT_GT(more.signal_end(), user) << nodes << " nodes: S is the largest that fits";
  }
  EXPECT_EQ(internode_signal_window(0, user), 0);
  EXPECT_EQ(internode_signal_window(2, kInternodeSignalBase), 0);
}

}  // namespace
}  // namespace uccl::ep::protocol
