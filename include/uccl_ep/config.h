// Chunking configuration of the normal (high-throughput) kernels and the buffer-size formulas.
#pragma once

#include <cstdint>

namespace uccl::ep {

/// DeepEP-compatible chunk configuration. `num_sms` blocks are launched; one channel is two
/// blocks (sender + receiver), so kernels need it even. NVL send/recv sizes are in tokens:
/// a sender pushes at most `nvl_send` tokens before publishing them; each (channel, peer) ring
/// holds `nvl_recv` tokens. `rdma_recv` is rounded up to a multiple of `rdma_send`.
class Config {
 public:
  /// Validates the values; throws Error(kValue) naming the violated rule.
  explicit Config(int num_sms = 20, int num_max_nvl_chunked_send_tokens = 6,
                  int num_max_nvl_chunked_recv_tokens = 256,
                  int num_max_rdma_chunked_send_tokens = 6,
                  int num_max_rdma_chunked_recv_tokens = 256);

  int num_sms() const { return num_sms_; }
  int num_max_nvl_chunked_send_tokens() const { return nvl_send_; }
  int num_max_nvl_chunked_recv_tokens() const { return nvl_recv_; }
  int num_max_rdma_chunked_send_tokens() const { return rdma_send_; }
  int num_max_rdma_chunked_recv_tokens() const { return rdma_recv_; }
  int num_channels() const { return num_sms_ / 2; }

  /// Bytes DeepEP V1 asks for the NVLink buffer, byte for byte (§3.1 of the semantics notes).
  /// `hidden_bytes` is hidden * max(element size, 2). Throws for num_ranks that are neither
  /// < 8 nor a multiple of 8, and for an odd num_sms when num_ranks > 8.
  int64_t get_nvl_buffer_size_hint(int64_t hidden_bytes, int num_ranks) const;
  /// Bytes DeepEP V1 asks for the RDMA buffer; 0 when num_ranks <= 8.
  int64_t get_rdma_buffer_size_hint(int64_t hidden_bytes, int num_ranks) const;

 private:
  int num_sms_, nvl_send_, nvl_recv_, rdma_send_, rdma_recv_;
};

/// DeepEP's tuned dispatch table for `num_ranks` (2, 4, 8, 16, ..., 160) with `num_sms` SMs.
/// Throws Error(kValue) listing the supported rank counts otherwise.
Config get_dispatch_config(int num_ranks, int num_sms);
/// DeepEP's tuned combine table, as get_dispatch_config.
Config get_combine_config(int num_ranks, int num_sms);

/// Bytes DeepEP V1 asks for a low-latency RDMA buffer (two alternating halves of send, receive
/// and signalling regions). `num_ranks` is accepted and unused, as in DeepEP.
int64_t get_low_latency_rdma_size_hint(int64_t num_max_dispatch_tokens_per_rank, int64_t hidden,
                                       int num_ranks, int64_t num_experts);

}  // namespace uccl::ep
