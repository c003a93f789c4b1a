// Argument validation of the low-latency calls: a valid call passes, each broken rule raises
// the right kind naming the argument, and the message slot sizes match DeepEP V1's.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>

#include "uccl_ep/config.h"
#include "uccl_ep/error.h"
#include "uccl_ep/low_latency.h"

namespace uccl::ep {
namespace {

// R ranks, T tokens per rank, H hidden, K top-k, kExperts experts: E local, N rows per expert.
constexpr int kR = 4, kT = 32, kH = 2048, kK = 8, kExperts = 16;
constexpr int kE = kExperts / kR, kN = kR * kT, kS = kH / 128;

int64_t hint(int t = kT, int h = kH, int experts = kExperts) {
  return get_low_latency_rdma_size_hint(t, h, kR, experts);
}

BufferInfo ll_info(int64_t num_rdma_bytes = hint()) {
  BufferInfo info;
  info.rank = 1;
  info.num_ranks = kR;
  info.num_rdma_bytes = num_rdma_bytes;
  info.low_latency_mode = true;
  return info;
}

TensorView view(DType dtype, std::initializer_list<int64_t> shape, int device = 0) {
  static char dummy[16];
  TensorView v;
  v.data = dummy;
  v.dtype = dtype;
  v.ndim = static_cast<int>(shape.size());
  int i = 0;
  for (int64_t d : shape) v.shape[i++] = d;
  int64_t stride = 1;
  for (int j = v.ndim - 1; j >= 0; --j) {
    v.strides[j] = stride;
    stride *= v.shape[j];
  }
  v.device = DeviceKind::kCUDA;
  v.device_index = device;
  return v;
}

/// [e, n, s] scales laid out as DeepEP allocates them: [e, s, n] transposed.
TensorView column_major_scales(DType dtype, int64_t e, int64_t n, int64_t s) {
  TensorView v = view(dtype, {e, n, s});
  v.strides[0] = n * s;
  v.strides[1] = 1;
  v.strides[2] = n;
  return v;
}

LowLatencyDispatchTensors valid_dispatch(int num_tokens = kT, bool use_fp8 = false) {
  LowLatencyDispatchTensors t;
  t.x = view(DType::kBFloat16, {num_tokens, kH});
  t.topk_idx = view(DType::kInt64, {num_tokens, kK});
  t.num_max_dispatch_tokens_per_rank = kT;
  t.num_experts = kExperts;
  t.use_fp8 = use_fp8;
  t.recv_x = view(use_fp8 ? DType::kFloat8E4M3 : DType::kBFloat16, {kE, kN, kH});
  if (use_fp8) t.recv_x_scales = column_major_scales(DType::kFloat32, kE, kN, kS);
  t.recv_count = view(DType::kInt32, {kE});
  t.recv_src_info = view(DType::kInt32, {kE, kN});
  t.recv_layout_range = view(DType::kInt64, {kE, kR});
  return t;
}

LowLatencyCombineTensors valid_combine(int num_tokens = kT) {
  LowLatencyCombineTensors t;
  t.x = view(DType::kBFloat16, {kE, kN, kH});
  t.topk_idx = view(DType::kInt64, {num_tokens, kK});
  t.topk_weights = view(DType::kFloat32, {num_tokens, kK});
  t.src_info = view(DType::kInt32, {kE, kN});
  t.layout_range = view(DType::kInt64, {kE, kR});
  t.num_max_dispatch_tokens_per_rank = kT;
  t.num_experts = kExperts;
  t.combined_x = view(DType::kBFloat16, {num_tokens, kH});
  return t;
}

void expect_error(const std::function<void()>& fn, ErrorKind kind, const std::string& part) {
  try {
    fn();
    ADD_FAILURE() << "expected an error mentioning '" << part << "'";
  } catch (const Error& e) {
    EXPECT_EQ(static_cast<int>(e.kind()), static_cast<int>(kind)) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
        << "'" << part << "' missing in: " << e.what();
  }
}

using D = LowLatencyDispatchTensors;
using C = LowLatencyCombineTensors;

void expect_dispatch_error(const std::function<void(D&)>& mutate, ErrorKind kind,
                           const std::string& part, bool use_fp8 = false) {
  D t = valid_dispatch(kT, use_fp8);
  mutate(t);
  expect_error([&] { validate_low_latency_dispatch(ll_info(), t); }, kind, part);
}

void expect_combine_error(const std::function<void(C&)>& mutate, ErrorKind kind,
                          const std::string& part) {
  C t = valid_combine();
  mutate(t);
  expect_error([&] { validate_low_latency_combine(ll_info(), t); }, kind, part);
}

TEST(ValidateLowLatency, MessageBytesAreDeepEPs) {
  EXPECT_EQ(low_latency_dispatch_message_bytes(7168), 16 + 2 * 7168);
  EXPECT_EQ(low_latency_combine_message_bytes(7168), 7168 / 128 * 4 + 2 * 7168);
  EXPECT_EQ(low_latency_dispatch_message_bytes(2048), 4112);
  EXPECT_EQ(low_latency_combine_message_bytes(2048), 4160);
  // The size hint is built from the same slots: 2 halves of send, receive and signalling.
  for (int h : kLowLatencyHiddenSizes) {
    for (int t : {1, 16, 128}) {
      const int64_t e = 288, d = low_latency_dispatch_message_bytes(h),
                    c = low_latency_combine_message_bytes(h);
      const int64_t send = std::max(t * d, e * t * c), recv = std::max(e * t * d, e * t * c);
      const int64_t total = 2 * (send + recv + (4 * e + 127) / 128 * 128);
      EXPECT_EQ(get_low_latency_rdma_size_hint(t, h, 8, e), (total + 128) / 128 * 128)
          << "h=" << h << " t=" << t;
    }
  }
}

TEST(ValidateLowLatency, HintRefusesSizesThatOverflow) {
  expect_error([] { get_low_latency_rdma_size_hint(int64_t{1} << 31, 8192, 8, 1 << 30); },
               ErrorKind::kValue, "would need more than 2^61 bytes");
}

TEST(ValidateLowLatency, ValidDispatchPasses) {
  EXPECT_NO_THROW(validate_low_latency_dispatch(ll_info(), valid_dispatch()));
  EXPECT_NO_THROW(validate_low_latency_dispatch(ll_info(), valid_dispatch(0)));
  EXPECT_NO_THROW(validate_low_latency_dispatch(ll_info(), valid_dispatch(7)));
  EXPECT_NO_THROW(validate_low_latency_dispatch(ll_info(), valid_dispatch(kT, true)));
  D round = valid_dispatch(kT, true);
  round.round_scale = true;
  EXPECT_NO_THROW(validate_low_latency_dispatch(ll_info(), round));
  D ue8m0 = round;
  ue8m0.use_ue8m0 = true;
  ue8m0.recv_x_scales = column_major_scales(DType::kInt32, kE, kN, kH / 512);
  EXPECT_NO_THROW(validate_low_latency_dispatch(ll_info(), ue8m0));
  D stats = valid_dispatch();
  stats.cumulative_local_expert_recv_stats = view(DType::kInt32, {kE});
  stats.dispatch_wait_recv_cost_stats = view(DType::kInt64, {kR});
  EXPECT_NO_THROW(validate_low_latency_dispatch(ll_info(), stats));
  // Top-k up to 11, every supported hidden size (buffer sized by the hint).
  D k11 = valid_dispatch();
  k11.topk_idx = view(DType::kInt64, {kT, kLowLatencyMaxTopk});
  EXPECT_NO_THROW(validate_low_latency_dispatch(ll_info(), k11));
  for (int h : kLowLatencyHiddenSizes) {
    D t = valid_dispatch(kT, true);
    t.x = view(DType::kBFloat16, {kT, h});
    t.recv_x = view(DType::kFloat8E4M3, {kE, kN, h});
    t.recv_x_scales = column_major_scales(DType::kFloat32, kE, kN, h / 128);
    EXPECT_NO_THROW(validate_low_latency_dispatch(ll_info(hint(kT, h)), t)) << "hidden " << h;
  }
}

TEST(ValidateLowLatency, DispatchNeedsLowLatencyMode) {
  BufferInfo normal = ll_info();
  normal.low_latency_mode = false;
  expect_error([&] { validate_low_latency_dispatch(normal, valid_dispatch()); }, ErrorKind::kValue,
               "low_latency_dispatch needs a Buffer built with low_latency_mode=True");
  expect_error([&] { validate_low_latency_combine(normal, valid_combine()); }, ErrorKind::kValue,
               "low_latency_combine needs a Buffer built with low_latency_mode=True");
}

TEST(ValidateLowLatency, DispatchInputs) {
  using K = ErrorKind;
  expect_dispatch_error([](D& t) { t.x = view(DType::kFloat32, {kT, kH}); }, K::kType,
                        "x must have dtype bfloat16, got float32");
  expect_dispatch_error([](D& t) { t.x = view(DType::kBFloat16, {kT, kH, 1}); }, K::kValue,
                        "x has shape [32, 2048, 1], expected [*, *] (num_tokens, hidden)");
  expect_dispatch_error([](D& t) { std::swap(t.x.strides[0], t.x.strides[1]); }, K::kValue,
                        "x must be contiguous");
  expect_dispatch_error([](D& t) { t.x.device = DeviceKind::kCPU; }, K::kValue,
                        "x must be on cuda:0 (the Buffer's device), got cpu");
  expect_dispatch_error(
      [](D& t) {
        t.x = view(DType::kBFloat16, {kT, 1024});
        t.recv_x = view(DType::kBFloat16, {kE, kN, 1024});
      },
      K::kValue, "x.shape[1]=1024 (hidden) is not supported by the low-latency kernels");
  expect_dispatch_error(
      [](D& t) { t.x = view(DType::kBFloat16, {kT + 1, kH}); }, K::kValue,
      "x.shape[0]=33 (num_tokens) must be <= num_max_dispatch_tokens_per_rank=32");
  expect_dispatch_error([](D& t) { t.topk_idx = view(DType::kInt32, {kT, kK}); }, K::kType,
                        "topk_idx must have dtype int64, got int32");
  expect_dispatch_error([](D& t) { t.topk_idx = TensorView{}; }, K::kValue, "topk_idx is required");
  expect_dispatch_error([](D& t) { t.topk_idx = view(DType::kInt64, {kT - 1, kK}); }, K::kValue,
                        "topk_idx has shape [31, 8], expected [32, *]");
  expect_dispatch_error([](D& t) { t.topk_idx = view(DType::kInt64, {kT, 12}); }, K::kValue,
                        "topk_idx.shape[1]=12 (num_topk) must be in [1, 11]");
  expect_dispatch_error([](D& t) { t.topk_idx = view(DType::kInt64, {kT, 0}); }, K::kValue,
                        "topk_idx.shape[1]=0 (num_topk) must be in [1, 11]");
  expect_dispatch_error([](D& t) { t.topk_idx.device_index = 1; }, K::kValue,
                        "topk_idx must be on cuda:0 (the Buffer's device), got cuda:1");
}

TEST(ValidateLowLatency, DispatchSizesAndFlags) {
  using K = ErrorKind;
  expect_dispatch_error([](D& t) { t.num_max_dispatch_tokens_per_rank = 0; }, K::kValue,
                        "num_max_dispatch_tokens_per_rank=0 must be >= 1");
  expect_dispatch_error([](D& t) { t.num_experts = 18; }, K::kValue,
                        "num_experts=18 must be a positive multiple of the number of ranks (4)");
  expect_dispatch_error([](D& t) { t.num_experts = 0; }, K::kValue, "num_experts=0 must be");
  // Outputs are sized by T, not by the number of tokens sent.
  D fewer = valid_dispatch(8);
  fewer.num_max_dispatch_tokens_per_rank = kT / 2;
  expect_error([&] { validate_low_latency_dispatch(ll_info(), fewer); }, K::kValue,
               "recv_x has shape [4, 128, 2048], expected [4, 64, 2048]");
  BufferInfo three = ll_info();
  three.num_ranks = 3;
  D odd = valid_dispatch();
  odd.num_experts = 12;
  odd.num_max_dispatch_tokens_per_rank = kT + 1;
  expect_error([&] { validate_low_latency_dispatch(three, odd); }, K::kValue,
               "num_ranks * num_max_dispatch_tokens_per_rank = 3 * 33 = 99 must be a multiple "
               "of 4");
  expect_dispatch_error([](D& t) { t.round_scale = true; }, K::kValue,
                        "round_scale=true needs use_fp8=true");
  expect_dispatch_error([](D& t) { t.use_ue8m0 = true; }, K::kValue,
                        "use_ue8m0=true needs use_fp8=true and round_scale=true (got "
                        "use_fp8=true, round_scale=false)",
                        true);
}

TEST(ValidateLowLatency, DispatchNeedsRoomInTheBuffer) {
  const int64_t need = hint();
  EXPECT_NO_THROW(validate_low_latency_dispatch(ll_info(need), valid_dispatch()));
  expect_error([&] { validate_low_latency_dispatch(ll_info(need - 128), valid_dispatch()); },
               ErrorKind::kValue,
               "num_max_dispatch_tokens_per_rank=32 too large for the buffer: T=32, hidden=2048, "
               "num_experts=16 need num_rdma_bytes >= " +
                   std::to_string(need) +
                   " (get_low_latency_rdma_size_hint) but the Buffer has num_rdma_bytes=" +
                   std::to_string(need - 128));
  // More tokens per rank than the buffer was sized for.
  D big = valid_dispatch();
  big.num_max_dispatch_tokens_per_rank = 2 * kT;
  expect_error([&] { validate_low_latency_dispatch(ll_info(need), big); }, ErrorKind::kValue,
               "num_max_dispatch_tokens_per_rank=64 too large for the buffer");
  expect_error([&] { validate_low_latency_combine(ll_info(need - 128), valid_combine()); },
               ErrorKind::kValue, "num_max_dispatch_tokens_per_rank=32 too large for the buffer");
}

TEST(ValidateLowLatency, DispatchStatistics) {
  using K = ErrorKind;
  expect_dispatch_error(
      [](D& t) { t.cumulative_local_expert_recv_stats = view(DType::kInt64, {kE}); }, K::kType,
      "cumulative_local_expert_recv_stats must have dtype int32, got int64");
  expect_dispatch_error(
      [](D& t) { t.cumulative_local_expert_recv_stats = view(DType::kInt32, {kExperts}); },
      K::kValue, "cumulative_local_expert_recv_stats has shape [16], expected [4]");
  expect_dispatch_error(
      [](D& t) { t.dispatch_wait_recv_cost_stats = view(DType::kInt64, {kR, kR}); }, K::kValue,
      "dispatch_wait_recv_cost_stats has shape [4, 4], expected [4] (num_ranks)");
  expect_dispatch_error([](D& t) { t.dispatch_wait_recv_cost_stats = view(DType::kInt32, {kR}); },
                        K::kType, "dispatch_wait_recv_cost_stats must have dtype int64");
  expect_dispatch_error(
      [](D& t) {
        t.dispatch_wait_recv_cost_stats = view(DType::kInt64, {kR});
        t.dispatch_wait_recv_cost_stats.device = DeviceKind::kCPU;
      },
      K::kValue, "dispatch_wait_recv_cost_stats must be on cuda:0");
}

TEST(ValidateLowLatency, DispatchOutputs) {
  using K = ErrorKind;
  expect_dispatch_error([](D& t) { t.recv_x = view(DType::kFloat8E4M3, {kE, kN, kH}); }, K::kType,
                        "recv_x must have dtype bfloat16, got float8_e4m3fn");
  expect_dispatch_error([](D& t) { t.recv_x = view(DType::kBFloat16, {kE, kN, kH}); }, K::kType,
                        "recv_x must have dtype float8_e4m3fn, got bfloat16", true);
  expect_dispatch_error([](D& t) { t.recv_x = view(DType::kBFloat16, {kE + 1, kN, kH}); },
                        K::kValue, "recv_x has shape [5, 128, 2048], expected [4, 128, 2048]");
  expect_dispatch_error([](D& t) { t.recv_x = TensorView{}; }, K::kValue, "recv_x is required");
  expect_dispatch_error(
      [](D& t) { t.recv_x_scales = column_major_scales(DType::kFloat32, kE, kN, kS); }, K::kValue,
      "recv_x_scales must not be given without use_fp8");
  expect_dispatch_error([](D& t) { t.recv_x_scales = TensorView{}; }, K::kValue,
                        "recv_x_scales is required", true);
  expect_dispatch_error([](D& t) { t.recv_x_scales = view(DType::kFloat32, {kE, kN, kS}); },
                        K::kValue,
                        "recv_x_scales has strides [2048, 16, 1], expected [2048, 1, 128]", true);
  expect_dispatch_error(
      [](D& t) { t.recv_x_scales = column_major_scales(DType::kInt32, kE, kN, kS); }, K::kType,
      "recv_x_scales must have dtype float32, got int32", true);
  expect_dispatch_error(
      [](D& t) { t.recv_x_scales = column_major_scales(DType::kFloat32, kE, kN, kS + 1); },
      K::kValue, "recv_x_scales has shape [4, 128, 17], expected [4, 128, 16]", true);
  expect_dispatch_error(
      [](D& t) {
        t.round_scale = t.use_ue8m0 = true;  // scales stay float32 [E, N, H/128]
      },
      K::kType, "recv_x_scales must have dtype int32, got float32", true);
  expect_dispatch_error(
      [](D& t) {
        t.round_scale = t.use_ue8m0 = true;
        t.recv_x_scales = column_major_scales(DType::kInt32, kE, kN, kS);
      },
      K::kValue, "recv_x_scales has shape [4, 128, 16], expected [4, 128, 4]", true);
  expect_dispatch_error([](D& t) { t.recv_count = view(DType::kInt64, {kE}); }, K::kType,
                        "recv_count must have dtype int32");
  expect_dispatch_error([](D& t) { t.recv_count = view(DType::kInt32, {kExperts}); }, K::kValue,
                        "recv_count has shape [16], expected [4]");
  expect_dispatch_error([](D& t) { t.recv_src_info = view(DType::kInt32, {kE, kT}); }, K::kValue,
                        "recv_src_info has shape [4, 32], expected [4, 128]");
  expect_dispatch_error([](D& t) { t.recv_layout_range = view(DType::kInt32, {kE, kR}); }, K::kType,
                        "recv_layout_range must have dtype int64, got int32");
  expect_dispatch_error([](D& t) { t.recv_layout_range.device_index = 2; }, K::kValue,
                        "recv_layout_range must be on cuda:0");
  expect_dispatch_error([](D& t) { std::swap(t.recv_x.strides[1], t.recv_x.strides[2]); },
                        K::kValue, "recv_x must be contiguous");
}

TEST(ValidateLowLatency, ValidCombinePasses) {
  EXPECT_NO_THROW(validate_low_latency_combine(ll_info(), valid_combine()));
  EXPECT_NO_THROW(validate_low_latency_combine(ll_info(), valid_combine(0)));
  C stats = valid_combine(5);
  stats.combine_wait_recv_cost_stats = view(DType::kInt64, {kR});
  EXPECT_NO_THROW(validate_low_latency_combine(ll_info(), stats));
  C logfmt = valid_combine();
  logfmt.use_logfmt = true;
  EXPECT_NO_THROW(validate_low_latency_combine(ll_info(), logfmt));
  // zero_copy: x is not read; it may be absent, or a strided view.
  C zero = valid_combine();
  zero.zero_copy = true;
  zero.x = TensorView{};
  EXPECT_NO_THROW(validate_low_latency_combine(ll_info(), zero));
  zero.x = view(DType::kBFloat16, {kE, kN, kH});
  zero.x.strides[0] = kN * (kH + 32);
  zero.x.strides[1] = kH + 32;
  EXPECT_NO_THROW(validate_low_latency_combine(ll_info(), zero));
}

TEST(ValidateLowLatency, CombineArguments) {
  using K = ErrorKind;
  expect_combine_error([](C& t) { t.x = TensorView{}; }, K::kValue, "x is required");
  expect_combine_error([](C& t) { t.x = view(DType::kFloat32, {kE, kN, kH}); }, K::kType,
                       "x must have dtype bfloat16, got float32");
  expect_combine_error([](C& t) { t.x = view(DType::kBFloat16, {kE, kT, kH}); }, K::kValue,
                       "x has shape [4, 32, 2048], expected [4, 128, 2048]");
  expect_combine_error(
      [](C& t) {
        t.x = view(DType::kBFloat16, {kE, kN, 1000});
        t.combined_x = view(DType::kBFloat16, {kT, 1000});
      },
      K::kValue, "x.shape[2]=1000 (hidden) is not supported");
  expect_combine_error([](C& t) { std::swap(t.x.strides[1], t.x.strides[2]); }, K::kValue,
                       "x must be contiguous");
  expect_combine_error([](C& t) { t.x.device_index = 3; }, K::kValue,
                       "x must be on cuda:0 (the Buffer's device), got cuda:3");
  expect_combine_error(
      [](C& t) {
        t.topk_idx = view(DType::kInt64, {kT + 1, kK});
        t.topk_weights = view(DType::kFloat32, {kT + 1, kK});
      },
      K::kValue,
      "topk_idx.shape[0]=33 (num_tokens) must be <= num_max_dispatch_tokens_per_rank=32");
  expect_combine_error([](C& t) { t.topk_idx = view(DType::kInt32, {kT, kK}); }, K::kType,
                       "topk_idx must have dtype int64");
  expect_combine_error([](C& t) { t.topk_idx = TensorView{}; }, K::kValue, "topk_idx is required");
  expect_combine_error([](C& t) { t.topk_weights = view(DType::kBFloat16, {kT, kK}); }, K::kType,
                       "topk_weights must have dtype float32, got bfloat16");
  expect_combine_error([](C& t) { t.topk_weights = view(DType::kFloat32, {kT, kK - 1}); },
                       K::kValue, "topk_weights has shape [32, 7], expected [32, 8]");
  expect_combine_error([](C& t) { t.topk_weights = TensorView{}; }, K::kValue,
                       "topk_weights is required");
  expect_combine_error([](C& t) { t.src_info = view(DType::kInt64, {kE, kN}); }, K::kType,
                       "src_info must have dtype int32");
  expect_combine_error([](C& t) { t.layout_range = view(DType::kInt64, {kE, kR + 1}); }, K::kValue,
                       "layout_range has shape [4, 5], expected [4, 4]");
  expect_combine_error([](C& t) { t.num_experts = 2 * kExperts; }, K::kValue,
                       "x has shape [4, 128, 2048], expected [8, 128, 2048]");
  expect_combine_error(
      [](C& t) {
        t.num_experts = 2 * kExperts;
        t.x = view(DType::kBFloat16, {2 * kE, kN, kH});
      },
      K::kValue, "src_info has shape [4, 128], expected [8, 128]");
  expect_combine_error([](C& t) { t.num_experts = 6; }, K::kValue,
                       "num_experts=6 must be a positive multiple of the number of ranks (4)");
  expect_combine_error([](C& t) { t.num_max_dispatch_tokens_per_rank = -1; }, K::kValue,
                       "num_max_dispatch_tokens_per_rank=-1 must be >= 1");
  expect_combine_error([](C& t) { t.combined_x = view(DType::kFloat32, {kT, kH}); }, K::kType,
                       "combined_x must have dtype bfloat16, got float32");
  expect_combine_error([](C& t) { t.combined_x = view(DType::kBFloat16, {kT - 1, kH}); }, K::kValue,
                       "combined_x has shape [31, 2048], expected [32, 2048]");
  expect_combine_error([](C& t) { t.combined_x = TensorView{}; }, K::kValue,
                       "combined_x is required");
  expect_combine_error([](C& t) { t.combine_wait_recv_cost_stats = view(DType::kInt64, {kR + 1}); },
                       K::kValue,
                       "combine_wait_recv_cost_stats has shape [5], expected [4] (num_ranks)");
  expect_combine_error(
      [](C& t) {
        t.use_logfmt = true;
        t.zero_copy = true;
      },
      K::kValue, "use_logfmt=true and zero_copy=true cannot be combined");
  // zero_copy without x: hidden comes from combined_x.
  expect_combine_error(
      [](C& t) {
        t.zero_copy = true;
        t.x = TensorView{};
        t.combined_x = view(DType::kBFloat16, {kT, 1000});
      },
      K::kValue, "combined_x.shape[1]=1000 (hidden) is not supported");
  expect_combine_error(
      [](C& t) {
        t.zero_copy = true;
        t.x = TensorView{};
        t.combined_x = TensorView{};
      },
      K::kValue, "combined_x is required");
}

}  // namespace
}  // namespace uccl::ep
