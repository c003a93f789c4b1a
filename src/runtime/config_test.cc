// Config rules, DeepEP's tuned tables and the byte-exact size hints.
#include <gtest/gtest.h>

#include "uccl_ep/config.h"
#include "uccl_ep/error.h"

namespace uccl::ep {
namespace {

constexpr int64_t kHiddenBytes = 7168 * 2;

ErrorKind kind_of(auto&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.kind();
  }
  ADD_FAILURE() << "no uccl::ep::Error thrown";
  return ErrorKind::kRuntime;
}

TEST(Config, DefaultsMatchDeepEP) {
  const Config c;
  EXPECT_EQ(c.num_sms(), 20);
  EXPECT_EQ(c.num_max_nvl_chunked_send_tokens(), 6);
  EXPECT_EQ(c.num_max_nvl_chunked_recv_tokens(), 256);
  EXPECT_EQ(c.num_max_rdma_chunked_send_tokens(), 6);
  EXPECT_EQ(c.num_max_rdma_chunked_recv_tokens(), 258);  // rounded up to a multiple of 6
  EXPECT_EQ(c.num_channels(), 10);
}

TEST(Config, RejectsBadValues) {
  EXPECT_EQ(kind_of([] { Config(20, 8, 8); }), ErrorKind::kValue);          // send >= recv
  EXPECT_EQ(kind_of([] { Config(20, 6, 256, 8, 6); }), ErrorKind::kValue);  // 6 -> 8, not > 8
  EXPECT_EQ(kind_of([] { Config(-2); }), ErrorKind::kValue);
  EXPECT_EQ(kind_of([] { Config(20, 0, 256); }), ErrorKind::kValue);
  EXPECT_EQ(kind_of([] { Config(20, 6, 256, 0, 256); }), ErrorKind::kValue);
  EXPECT_NO_THROW(Config(20, 6, 256, 20, 128));
  EXPECT_EQ(Config(20, 6, 256, 20, 128).num_max_rdma_chunked_recv_tokens(), 140);
}

TEST(Config, NvlHintIsByteExact) {
  EXPECT_EQ(Config(20, 6, 256, 6, 128).get_nvl_buffer_size_hint(kHiddenBytes, 8), 335709824);
  EXPECT_EQ(Config(24, 6, 256, 6, 128).get_nvl_buffer_size_hint(kHiddenBytes, 8), 402851712);
  EXPECT_EQ(get_dispatch_config(16, 20).get_nvl_buffer_size_hint(kHiddenBytes, 16), 377673984);
}

TEST(Config, RdmaHintIsByteExact) {
  EXPECT_EQ(get_dispatch_config(8, 20).get_rdma_buffer_size_hint(kHiddenBytes, 8), 0);
  EXPECT_EQ(get_dispatch_config(16, 20).get_rdma_buffer_size_hint(kHiddenBytes, 16), 91887744);
  EXPECT_EQ(get_combine_config(16, 20).get_rdma_buffer_size_hint(kHiddenBytes, 16), 86637184);
  EXPECT_EQ(get_dispatch_config(32, 20).get_rdma_buffer_size_hint(kHiddenBytes, 32), 168023680);
  EXPECT_EQ(get_dispatch_config(64, 20).get_rdma_buffer_size_hint(kHiddenBytes, 64), 336047360);
}

TEST(Config, HintRejectsBadRankCounts) {
  EXPECT_EQ(kind_of([] { Config().get_nvl_buffer_size_hint(kHiddenBytes, 12); }),
            ErrorKind::kValue);
  EXPECT_EQ(kind_of([] { Config(21).get_nvl_buffer_size_hint(kHiddenBytes, 16); }),
            ErrorKind::kValue);
}

TEST(Config, TunedTables) {
  struct Row {
    int r, d_send, d_recv, d_rsend, c_send, c_recv, c_rsend;
  };
  const Row rows[] = {
      {2, 24, 256, 6, 10, 256, 6},   {4, 6, 256, 6, 9, 256, 6},     {8, 6, 256, 6, 4, 256, 6},
      {16, 36, 288, 20, 4, 288, 12}, {24, 32, 288, 8, 1, 288, 8},   {32, 32, 288, 8, 1, 288, 8},
      {48, 32, 288, 8, 1, 288, 8},   {64, 32, 288, 8, 1, 288, 8},   {96, 20, 480, 12, 1, 480, 8},
      {128, 20, 560, 12, 1, 560, 8}, {144, 32, 720, 12, 2, 720, 8}, {160, 28, 720, 12, 2, 720, 8}};
  for (const Row& row : rows) {
    const Config d = get_dispatch_config(row.r, 24), c = get_combine_config(row.r, 24);
    EXPECT_EQ(d.num_sms(), 24);
    EXPECT_EQ(d.num_max_nvl_chunked_send_tokens(), row.d_send) << row.r;
    EXPECT_EQ(d.num_max_nvl_chunked_recv_tokens(), row.d_recv) << row.r;
    EXPECT_EQ(d.num_max_rdma_chunked_send_tokens(), row.d_rsend) << row.r;
    EXPECT_EQ(d.num_max_rdma_chunked_recv_tokens() % row.d_rsend, 0) << row.r;
    EXPECT_EQ(c.num_max_nvl_chunked_send_tokens(), row.c_send) << row.r;
    EXPECT_EQ(c.num_max_nvl_chunked_recv_tokens(), row.c_recv) << row.r;
    EXPECT_EQ(c.num_max_rdma_chunked_send_tokens(), row.c_rsend) << row.r;
  }
  EXPECT_EQ(kind_of([] { get_dispatch_config(6, 20); }), ErrorKind::kValue);
}

TEST(Config, LowLatencyHintIsByteExact) {
  for (int r : {2, 8, 16, 64})
    EXPECT_EQ(get_low_latency_rdma_size_hint(128, 7168, r, 256), 1908410496);
  EXPECT_EQ(get_low_latency_rdma_size_hint(16, 5120, 8, 256), 170395776);
  EXPECT_EQ(kind_of([] { get_low_latency_rdma_size_hint(128, 100, 8, 256); }), ErrorKind::kValue);
}

}  // namespace
}  // namespace uccl::ep
