// describe_error: every message names the rank and what failed, and says the Buffer refuses
// further work.
#include "runtime/error_report.h"

#include <gtest/gtest.h>

#include <string>

namespace uccl::ep::runtime {
namespace {

protocol::HostErrorRecord record(protocol::WaitSite site) {
  protocol::HostErrorRecord r{};
  r.flag = 1;
  r.site = static_cast<int32_t>(site);
  r.rank = 3;
  r.peer = r.channel = r.queue = r.row = r.col = -1;
  return r;
}

void expect_parts(const std::string& m, std::initializer_list<const char*> parts) {
  for (const char* part : parts) EXPECT_NE(m.find(part), std::string::npos) << part << " in: " << m;
  EXPECT_NE(m.find("refuses further work"), std::string::npos) << m;
}

TEST(ErrorReport, WaitsNameRankPeerChannelAndCounters) {
  auto r = record(protocol::WaitSite::kDispatchTail);
  r.peer = 1;
  r.channel = 5;
  r.expected = 17;
  r.observed = 12;
  r.waited_ns = 5'000'000'000ull;
  expect_parts(describe_error(r, 5.0), {"rank 3", "peer 1", "channel 5", "expected 17",
                                        "observed 12", "timed out", "ring tail", "5.0 s"});
  r.site = static_cast<int32_t>(protocol::WaitSite::kDispatchPublish);
  expect_parts(describe_error(r, 5.0), {"copy warps' progress"});
}

TEST(ErrorReport, QueueWaitsNameTheQueue) {
  auto r = record(protocol::WaitSite::kQueueFence);
  r.queue = 7;
  r.expected = 2;
  expect_parts(describe_error(r, 1.0), {"rank 3", "command queue 7", "FENCE", "expected 2"});
  EXPECT_EQ(describe_error(r, 1.0).find("peer"), std::string::npos);
}

TEST(ErrorReport, ChecksNameTheArgumentTheEntryAndTheValue) {
  auto r = record(protocol::WaitSite::kRankCountMismatch);
  r.peer = 1;
  r.expected = 513;
  r.observed = 512;
  expect_parts(describe_error(r, 5.0),
               {"rank 3", "num_tokens_per_rank[1]=513", "routes 512 tokens to rank 1"});
  r = record(protocol::WaitSite::kExpertCountMismatch);
  r.row = 4;
  r.expected = 9;
  r.observed = 8;
  expect_parts(describe_error(r, 5.0), {"num_tokens_per_expert[4]=9", "expert 4 8 times"});
  r = record(protocol::WaitSite::kBadExpertId);
  r.row = 10;
  r.col = 2;
  r.expected = 64;
  r.observed = 64;
  expect_parts(describe_error(r, 5.0), {"topk_idx[10, 2]=64", "[-1, num_experts=64)"});
  r = record(protocol::WaitSite::kPeerError);
  r.peer = 0;
  expect_parts(describe_error(r, 5.0), {"rank 3", "peer rank 0", "inconsistent"});
  r = record(protocol::WaitSite::kRecvOverflow);
  expect_parts(describe_error(r, 5.0), {"num_worst_tokens"});
  r = record(protocol::WaitSite::kLowLatencyBadBlock);
  r.peer = 1;
  r.channel = 5;
  r.expected = 128;
  r.observed = 900;
  expect_parts(describe_error(r, 5.0), {"rank 3", "from peer 1", "local expert 5", "claims 900",
                                        "num_max_dispatch_tokens_per_rank=128"});
  r = record(protocol::WaitSite::kNodeCountMismatch);
  r.peer = 1;
  r.expected = 7;
  r.observed = 9;
  expect_parts(describe_error(r, 5.0),
               {"rank 3", "num_tokens_per_rdma_rank[1]=7", "routes 9 tokens to node 1"});
  r = record(protocol::WaitSite::kInternodeChunk);
  r.peer = 2;
  r.channel = 4;
  expect_parts(describe_error(r, 5.0), {"network stream", "peer", "2"});
  r = record(protocol::WaitSite::kLowLatencyBadHandle);
  r.peer = 1;
  r.channel = 4;
  r.row = 250;
  r.expected = 256;
  r.observed = 9;
  expect_parts(describe_error(r, 5.0),
               {"rank 3", "source rank 1", "local expert 4", "rows [250, 250 + 9)",
                "max_dispatch_tokens_per_rank=256", "unmodified"});
  r = record(protocol::WaitSite::kLowLatencyDispatchRecv);
  r.peer = 2;
  r.channel = 7;
  expect_parts(describe_error(r, 5.0),
               {"rank 3", "timed out", "peer 2", "channel 7", "low-latency dispatch receiver"});
  r = record(protocol::WaitSite::kProxyError);
  r.queue = 2;
  r.observed = 1;
  expect_parts(describe_error(r, 5.0), {"CPU proxy of command queue 2", "error code 1"});
}

}  // namespace
}  // namespace uccl::ep::runtime
