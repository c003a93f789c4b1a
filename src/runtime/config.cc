// Config validation, DeepEP's tuned tables and the byte-exact buffer-size formulas.
#include "uccl_ep/config.h"

#include <algorithm>

#include "common/error.h"

namespace uccl::ep {
namespace {

constexpr int64_t kHintMaxTopK = 128;    // DeepEP's worst-case top-k in the size hints
constexpr int64_t kHintMaxScales = 128;  // worst-case number of FP8 scales per token
constexpr int64_t kHintTopkIdxBytes = 8;
constexpr int64_t kHintSourceMetaBytes = 8;
constexpr int kNvlPeersPerNode = 8;

int64_t align_up(int64_t x, int64_t a) {
  return (x + a - 1) / a * a;
}

void check_hint_ranks(int num_ranks, int num_sms) {
  UCCL_EP_CHECK_VALUE(num_ranks > 0, "num_ranks=", num_ranks, " is invalid: must be > 0");
  UCCL_EP_CHECK_VALUE(num_ranks < kNvlPeersPerNode || num_ranks % kNvlPeersPerNode == 0,
                      "num_ranks=", num_ranks, " is invalid: must be < 8 or a multiple of 8");
  UCCL_EP_CHECK_VALUE(num_ranks <= kNvlPeersPerNode || num_sms % 2 == 0, "num_sms=", num_sms,
                      " must be even when num_ranks > 8");
}

struct TableRow {
  int num_ranks;
  int dispatch[4];  // nvl_send, nvl_recv, rdma_send, rdma_recv
  int combine[4];
};

// DeepEP V1's tuned defaults (deepep-v1-semantics.md §1.3).
constexpr TableRow kTunedTable[] = {
    {2, {24, 256, 6, 128}, {10, 256, 6, 128}},   {4, {6, 256, 6, 128}, {9, 256, 6, 128}},
    {8, {6, 256, 6, 128}, {4, 256, 6, 128}},     {16, {36, 288, 20, 128}, {4, 288, 12, 128}},
    {24, {32, 288, 8, 128}, {1, 288, 8, 128}},   {32, {32, 288, 8, 128}, {1, 288, 8, 128}},
    {48, {32, 288, 8, 128}, {1, 288, 8, 128}},   {64, {32, 288, 8, 128}, {1, 288, 8, 128}},
    {96, {20, 480, 12, 128}, {1, 480, 8, 128}},  {128, {20, 560, 12, 128}, {1, 560, 8, 128}},
    {144, {32, 720, 12, 128}, {2, 720, 8, 128}}, {160, {28, 720, 12, 128}, {2, 720, 8, 128}},
};

const TableRow& find_row(int num_ranks) {
  for (const auto& row : kTunedTable)
    if (row.num_ranks == num_ranks) return row;
  throw_error(ErrorKind::kValue,
              str_cat("num_ranks=", num_ranks,
                      " has no tuned config: supported are 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, "
                      "144, 160"));
}

}  // namespace

Config::Config(int num_sms, int nvl_send, int nvl_recv, int rdma_send, int rdma_recv)
    : num_sms_(num_sms),
      nvl_send_(nvl_send),
      nvl_recv_(nvl_recv),
      rdma_send_(rdma_send),
      rdma_recv_(rdma_recv) {
  UCCL_EP_CHECK_VALUE(num_sms >= 0, "Config: num_sms=", num_sms, " must be >= 0");
  UCCL_EP_CHECK_VALUE(nvl_send > 0, "Config: num_max_nvl_chunked_send_tokens=", nvl_send,
                      " must be > 0");
  UCCL_EP_CHECK_VALUE(nvl_recv > 0, "Config: num_max_nvl_chunked_recv_tokens=", nvl_recv,
                      " must be > 0");
  UCCL_EP_CHECK_VALUE(nvl_send < nvl_recv, "Config: num_max_nvl_chunked_send_tokens=", nvl_send,
                      " must be < num_max_nvl_chunked_recv_tokens=", nvl_recv);
  UCCL_EP_CHECK_VALUE(rdma_send > 0, "Config: num_max_rdma_chunked_send_tokens=", rdma_send,
                      " must be > 0");
  UCCL_EP_CHECK_VALUE(rdma_recv > 0, "Config: num_max_rdma_chunked_recv_tokens=", rdma_recv,
                      " must be > 0");
  // DeepEP rounds the RDMA ring up to whole send chunks, then requires room for two chunks.
  rdma_recv_ = static_cast<int>(align_up(rdma_recv, rdma_send));
  UCCL_EP_CHECK_VALUE(rdma_send_ < rdma_recv_ && rdma_send_ <= rdma_recv_ / 2,
                      "Config: num_max_rdma_chunked_send_tokens=", rdma_send,
                      " must be at most half of num_max_rdma_chunked_recv_tokens (", rdma_recv,
                      " rounded up to a multiple of the send size = ", rdma_recv_, ")");
}

int64_t Config::get_nvl_buffer_size_hint(int64_t hidden_bytes, int num_ranks) const {
  check_hint_ranks(num_ranks, num_sms_);
  const int64_t c = num_channels();
  const int64_t n = std::min(num_ranks, kNvlPeersPerNode);
  const int64_t rr = std::max(num_ranks / kNvlPeersPerNode, 1);
  const int64_t cnt = c * n * nvl_recv_;  // token slots over all rings
  const int64_t bytes = c * n * (2 * rr + 3) * 4 + cnt * hidden_bytes + cnt * kHintSourceMetaBytes +
                        cnt * kHintMaxTopK * kHintTopkIdxBytes + cnt * kHintMaxTopK * 4 +
                        cnt * kHintMaxScales * 4;
  return align_up(bytes, 128);
}

int64_t Config::get_rdma_buffer_size_hint(int64_t hidden_bytes, int num_ranks) const {
  check_hint_ranks(num_ranks, num_sms_);
  if (num_ranks <= kNvlPeersPerNode) return 0;
  const int64_t c = num_channels();
  const int64_t rr = num_ranks / kNvlPeersPerNode;
  const int64_t cnt = c * rr * rdma_recv_;
  const int64_t bytes = c * rr * (kNvlPeersPerNode * 2 + 2) * 2 * 4 + cnt * hidden_bytes * 2 +
                        cnt * kHintSourceMetaBytes * 2 +
                        cnt * kHintMaxTopK * kHintTopkIdxBytes * 2 + cnt * kHintMaxTopK * 4 * 2 +
                        cnt * kHintMaxScales * 4 * 2 + cnt * 16 * 2;
  return align_up(bytes, 128);
}

Config get_dispatch_config(int num_ranks, int num_sms) {
  const auto& d = find_row(num_ranks).dispatch;
  return Config(num_sms, d[0], d[1], d[2], d[3]);
}

Config get_combine_config(int num_ranks, int num_sms) {
  const auto& c = find_row(num_ranks).combine;
  return Config(num_sms, c[0], c[1], c[2], c[3]);
}

int64_t get_low_latency_rdma_size_hint(int64_t num_max_dispatch_tokens_per_rank, int64_t hidden,
                                       int num_ranks, int64_t num_experts) {
  (void)num_ranks;
  UCCL_EP_CHECK_VALUE(num_max_dispatch_tokens_per_rank > 0,
                      "num_max_dispatch_tokens_per_rank=", num_max_dispatch_tokens_per_rank,
                      " must be > 0");
  UCCL_EP_CHECK_VALUE(hidden > 0 && hidden % 128 == 0, "hidden=", hidden,
                      " must be a positive multiple of 128");
  UCCL_EP_CHECK_VALUE(num_experts > 0, "num_experts=", num_experts, " must be > 0");
  const int64_t t = num_max_dispatch_tokens_per_rank, e = num_experts;
  // The largest term is about 4 * e * t * 2 * hidden bytes: refuse sizes whose sum overflows.
  const double approx = 4.0 * static_cast<double>(e) * static_cast<double>(t) *
                        (2.0 * static_cast<double>(hidden) + 64.0);
  UCCL_EP_CHECK_VALUE(approx < 4.0e18,
                      "num_max_dispatch_tokens_per_rank=", num_max_dispatch_tokens_per_rank,
                      ", hidden=", hidden, ", num_experts=", num_experts,
                      ": a low-latency buffer for these sizes would need more than 2^61 bytes");
  const int64_t num_scales = hidden / 128;
  const int64_t dispatch_msg = 16 + std::max(hidden * 2, hidden + num_scales * 4);
  const int64_t combine_msg = num_scales * 4 + hidden * 2;
  const int64_t send = std::max(t * dispatch_msg, e * t * combine_msg);
  const int64_t recv = std::max(e * t * dispatch_msg, e * t * combine_msg);
  const int64_t signalling = align_up(4 * e, 128);
  const int64_t total = 2 * (send + recv + signalling);
  return (total + 128) / 128 * 128;  // DeepEP always adds up to a full 128 bytes
}

}  // namespace uccl::ep
