// The intranode buffer layout, channel split, encodings and the layout routing logic, each
// against a plain reference written here.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "kernels/routing/routing.h"
#include "protocol/intranode_layout.h"

namespace uccl::ep::protocol {
namespace {

TEST(Layout, ChannelRangesPartitionTheTokens) {
  for (int tokens : {0, 1, 7, 64, 4096, 4097}) {
    for (int channels : {1, 3, 12, 64}) {
      std::vector<int> owner(tokens, -1);
      for (int c = 0; c < channels; ++c) {
        const auto r = channel_token_range(tokens, channels, c);
        ASSERT_LE(r.begin, r.end);
        for (int t = r.begin; t < r.end; ++t) {
          ASSERT_EQ(owner[t], -1) << "token " << t << " in two channels";
          owner[t] = c;
        }
        const int per = (tokens + channels - 1) / channels;  // plain reference
        EXPECT_EQ(r.begin, std::min(per * c, tokens));
      }
      for (int t = 0; t < tokens; ++t) EXPECT_GE(owner[t], 0);
      EXPECT_TRUE(std::is_sorted(owner.begin(), owner.end()));
    }
  }
}

TEST(Layout, RangeEncodingRoundTripsAndZeroMeansUnset) {
  for (auto [s, e] :
       std::vector<std::pair<int, int>>{{0, 0}, {0, 1}, {5, 9}, {1 << 20, (1 << 20) + 3}}) {
    const int64_t v = encode_range(s, e);
    EXPECT_NE(v, 0);
    EXPECT_EQ(decode_range_start(v), s);
    EXPECT_EQ(decode_range_end(v), e);
  }
}

TEST(Layout, SendHeadEncoding) {
  for (int slot : {0, 1, 255, 100000}) {
    EXPECT_EQ(slots_before(slot), slot);
    EXPECT_LT(encode_unsent(slot), 0);
    EXPECT_EQ(slots_before(encode_unsent(slot)), slot);
  }
}

TEST(Layout, DispatchSlotFieldsDoNotOverlap) {
  for (int64_t hidden_bytes : {16, 7168, 14336}) {
    for (int scales : {0, 56, 1024}) {
      for (int topk : {0, 1, 8, 32}) {
        const auto s = DispatchSlot::make(hidden_bytes, scales, topk);
        EXPECT_EQ(s.x_bytes, hidden_bytes);
        EXPECT_EQ(s.meta_bytes % 16, 0);
        EXPECT_EQ(s.scales_offset, 0);
        EXPECT_EQ(s.topk_idx_offset, s.scales_offset + 4 * scales);
        EXPECT_EQ(s.topk_weights_offset, s.topk_idx_offset + 4 * topk);
        EXPECT_EQ(s.src_idx_offset, s.topk_weights_offset + 4 * topk);
        EXPECT_GE(s.meta_bytes, s.src_idx_offset + 4);
        EXPECT_LT(s.meta_bytes, s.src_idx_offset + 4 + 16);
      }
    }
  }
  const auto c = CombineSlot::make(14336, 8);  // weights inline after the row
  EXPECT_EQ(c.x_bytes, 14336 + 32);
  EXPECT_EQ(c.topk_weights_offset, 14336);
  EXPECT_EQ(c.meta_bytes, 0);
  EXPECT_EQ(CombineSlot::make(14336, 0).x_bytes, 14336);
  EXPECT_EQ(CombineSlot::make(16, 3).x_bytes, 32);
}

// Every (ring, slot) owns one row and one record; rows and records tile the storage without
// overlap, rows come first and keep the row size's alignment, slots wrap around their ring.
TEST(Layout, RingsTileTheStorage) {
  const RingGeometry g{3, 4, 5, 14336, 80};
  std::set<int64_t> rows, records;
  for (int c = 0; c < g.num_channels; ++c)
    for (int s = 0; s < g.num_ranks; ++s)
      for (int i = 0; i < g.capacity; ++i) {
        const int64_t row = g.x_offset(c, s, i), record = g.meta_offset(c, s, i);
        EXPECT_EQ(row % g.x_bytes, 0);
        EXPECT_TRUE(rows.insert(row).second);
        EXPECT_TRUE(records.insert(record).second);
        EXPECT_GE(record, g.num_slots() * g.x_bytes);
        EXPECT_EQ((record - g.num_slots() * g.x_bytes) % g.meta_bytes, 0);
        EXPECT_EQ(g.x_offset(c, s, i + g.capacity), row);  // slots wrap around the ring
        EXPECT_EQ(g.meta_offset(c, s, i + 2 * g.capacity), record);
      }
  EXPECT_EQ(static_cast<int64_t>(rows.size()), g.num_slots());
  EXPECT_EQ(*rows.rbegin() + g.x_bytes, g.num_slots() * g.x_bytes);
  EXPECT_EQ(*records.rbegin() + g.meta_bytes, g.total_bytes());
  EXPECT_EQ(g.total_bytes(), int64_t{3} * 4 * 5 * (14336 + 80));
}

// RingView addresses the same bytes as the geometry's offsets.
TEST(Layout, RingViewMatchesGeometry) {
  const RingGeometry g{2, 2, 7, 7168, 304};
  std::vector<uint8_t> storage(static_cast<size_t>(g.total_bytes()));
  uint8_t* base = storage.data();
  for (int c = 0; c < g.num_channels; ++c)
    for (int s = 0; s < g.num_ranks; ++s) {
      const RingView v(base, g, c, s);
      for (int i : {0, 1, 6, 7, 20}) {
        EXPECT_EQ(v.row(g, i), base + g.x_offset(c, s, i));
        EXPECT_EQ(v.record(g, i), base + g.meta_offset(c, s, i));
      }
    }
}

TEST(Layout, ControlFollowsTheNvlData) {
  EXPECT_EQ(nvl_control_offset(0), 0);
  EXPECT_EQ(nvl_control_offset(128), 128);
  EXPECT_EQ(nvl_control_offset(129), 256);
  EXPECT_EQ(nvl_allocation_bytes(1 << 20), (1 << 20) + static_cast<int64_t>(sizeof(NvlControl)));
  EXPECT_EQ(sizeof(NvlControl) % 128, 0u);
  // The intranode counters live in the mode area of the control block.
  NvlControl ctrl{};
  EXPECT_EQ(reinterpret_cast<uint8_t*>(intranode_control(&ctrl)), ctrl.mode);
  EXPECT_LE(sizeof(IntranodeControl), sizeof(ctrl.mode));
}

// get_dispatch_layout's per-token logic against a plain set-based reference.
TEST(Layout, RoutingMatchesReference) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const int ranks = std::vector<int>{2, 4, 8, 16}[trial % 4];
    const int experts = ranks * (1 + trial % 5);
    const int topk = 1 + trial % 9;
    std::vector<int64_t> row(topk);
    std::uniform_int_distribution<int> pick(-1, experts);  // -1 and out-of-range included
    for (auto& e : row) e = pick(rng);

    std::map<int64_t, int> want_experts;
    std::set<int> want_ranks, want_nodes;
    const int per_rank = experts / ranks, per_node = per_rank * 8;
    for (int64_t e : row) {
      if (e < 0 || e >= experts) continue;
      ++want_experts[e];
      want_ranks.insert(static_cast<int>(e / per_rank));
      want_nodes.insert(static_cast<int>(e / per_node));
    }
    std::map<int64_t, int> got_experts;
    std::multiset<int> got_ranks, got_nodes;
    kernels::routing::route_token(
        row.data(), topk, experts, per_rank, ranks > 8 ? per_node : 0,
        [&](int64_t e) { ++got_experts[e]; }, [&](int r) { got_ranks.insert(r); },
        [&](int n) { got_nodes.insert(n); });
    EXPECT_EQ(got_experts, want_experts);
    EXPECT_EQ(std::set<int>(got_ranks.begin(), got_ranks.end()), want_ranks);
    EXPECT_EQ(got_ranks.size(), want_ranks.size()) << "a rank reported twice";
    if (ranks > 8) {
      EXPECT_EQ(std::set<int>(got_nodes.begin(), got_nodes.end()), want_nodes);
      EXPECT_EQ(got_nodes.size(), want_nodes.size());
    } else {
      EXPECT_TRUE(got_nodes.empty());
    }
  }
}

}  // namespace
}  // namespace uccl::ep::protocol
