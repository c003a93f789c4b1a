// Argument validation: a valid call passes, and each broken argument is named in the error.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "runtime/validate/buffer.h"
#include "uccl_ep/error.h"
#include "uccl_ep/intranode.h"

namespace uccl::ep::runtime {
namespace {

constexpr int kR = 4, kT = 64, kH = 256, kK = 8, kE = 32, kS = 2;
const Config kConfig(24, 8, 256);
const BufferInfo kInfo{1, kR, int64_t{1} << 30, 0};

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

DispatchTensors valid_dispatch(int n = 100) {
  DispatchTensors t;
  t.x = view(DType::kBFloat16, {kT, kH});
  t.topk_idx = view(DType::kInt64, {kT, kK});
  t.topk_weights = view(DType::kFloat32, {kT, kK});
  t.is_token_in_rank = view(DType::kBool, {kT, kR});
  t.rank_prefix_matrix = view(DType::kInt32, {kR, kR});
  t.channel_prefix_matrix = view(DType::kInt32, {kR, 12});
  t.num_experts = kE;
  t.config = kConfig;
  t.recv_x = view(DType::kBFloat16, {n, kH});
  t.recv_topk_idx = view(DType::kInt64, {n, kK});
  t.recv_topk_weights = view(DType::kFloat32, {n, kK});
  t.recv_src_idx = view(DType::kInt32, {n});
  t.recv_channel_prefix_matrix = view(DType::kInt32, {kR, 12});
  t.send_head = view(DType::kInt32, {kT, kR});
  return t;
}

CombineTensors valid_combine(int n = 100) {
  CombineTensors t;
  t.x = view(DType::kBFloat16, {n, kH});
  t.topk_weights = view(DType::kFloat32, {n, kK});
  t.rank_prefix_matrix = view(DType::kInt32, {kR, kR});
  t.recv_channel_prefix_matrix = view(DType::kInt32, {kR, 12});
  t.recv_src_idx = view(DType::kInt32, {n});
  t.is_token_in_rank = view(DType::kBool, {kT, kR});
  t.send_head = view(DType::kInt32, {kT, kR});
  t.config = Config(24, 8, 256);
  t.combined_x = view(DType::kBFloat16, {kT, kH});
  t.combined_topk_weights = view(DType::kFloat32, {kT, kK});
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

template <typename T, typename F>
void expect_dispatch_error(F mutate, ErrorKind kind, const std::string& part) {
  T t = valid_dispatch();
  mutate(t);
  expect_error([&] { validate_dispatch(kInfo, t); }, kind, part);
}

TEST(Validate, ValidCallsPass) {
  EXPECT_NO_THROW(validate_dispatch(kInfo, valid_dispatch()));
  EXPECT_NO_THROW(validate_combine(kInfo, valid_combine()));
  DispatchTensors fp8 = valid_dispatch();
  fp8.x = view(DType::kFloat8E4M3, {kT, kH});
  fp8.x_scales = view(DType::kFloat32, {kS, kT});  // column-major [kT, kS]
  fp8.x_scales.shape[0] = kT;
  fp8.x_scales.shape[1] = kS;
  fp8.x_scales.strides[0] = 1;
  fp8.x_scales.strides[1] = kT;
  fp8.recv_x = view(DType::kFloat8E4M3, {100, kH});
  fp8.recv_x_scales = view(DType::kFloat32, {100, kS});
  EXPECT_NO_THROW(validate_dispatch(kInfo, fp8));
  // Rows move as raw bytes, as in DeepEP: any element type (scales only with 1-byte data).
  for (DType d : {DType::kFloat32, DType::kFloat16, DType::kFloat8E4M3, DType::kFloat8E5M2,
                  DType::kUInt8, DType::kFloat64}) {
    DispatchTensors raw = valid_dispatch();
    raw.x = view(d, {kT, kH});
    raw.recv_x = view(d, {100, kH});
    EXPECT_NO_THROW(validate_dispatch(kInfo, raw)) << dtype_name(d);
  }
  DispatchTensors u8 = fp8;
  u8.x = view(DType::kUInt8, {kT, kH});
  u8.recv_x = view(DType::kUInt8, {100, kH});
  EXPECT_NO_THROW(validate_dispatch(kInfo, u8));
}

TEST(Validate, DispatchArguments) {
  using K = ErrorKind;
  using D = DispatchTensors;
  expect_dispatch_error<D>([](D& t) { t.x = view(DType::kUnknown, {kT, kH}); }, K::kType,
                           "x has an unknown dtype");
  expect_dispatch_error<D>(
      [](D& t) { t.x = view(DType::kFloat32, {kT, 6}); }, K::kValue,
      "x.shape[1] * element size = 24 bytes must be a positive multiple of 16");
  expect_dispatch_error<D>([](D& t) { t.x = view(DType::kFloat32, {kT, kH}); }, K::kType,
                           "recv_x must have dtype float32, got bfloat16");
  expect_dispatch_error<D>([](D& t) { t.x = view(DType::kBFloat16, {kT}); }, K::kValue,
                           "x has shape [64]");
  expect_dispatch_error<D>([](D& t) { t.x = view(DType::kBFloat16, {kT, 4}); }, K::kValue,
                           "multiple of 16");
  expect_dispatch_error<D>([](D& t) { t.x.device = DeviceKind::kCPU; }, K::kValue,
                           "x must be on cuda:0");
  expect_dispatch_error<D>([](D& t) { t.x.device_index = 1; }, K::kValue, "got cuda:1");
  expect_dispatch_error<D>([](D& t) { std::swap(t.x.strides[0], t.x.strides[1]); }, K::kValue,
                           "x must be contiguous");
  expect_dispatch_error<D>([](D& t) { t.topk_idx = view(DType::kInt32, {kT, kK}); }, K::kType,
                           "topk_idx must have dtype int64");
  expect_dispatch_error<D>([](D& t) { t.topk_weights = TensorView{}; }, K::kValue,
                           "topk_idx and topk_weights must be given together");
  expect_dispatch_error<D>([](D& t) { t.topk_weights = view(DType::kFloat32, {kT, kK + 1}); },
                           K::kValue, "topk_weights has shape [64, 9]");
  expect_dispatch_error<D>(
      [](D& t) {
        t.topk_idx = view(DType::kInt64, {kT, 33});
        t.topk_weights = view(DType::kFloat32, {kT, 33});
      },
      K::kValue, "num_topk) must be in [1, 32]");
  expect_dispatch_error<D>([](D& t) { t.num_experts = 30; }, K::kValue,
                           "num_experts=30 must be a positive multiple of the number of ranks (4)");
  expect_dispatch_error<D>([](D& t) { t.num_experts = kR * 1025; }, K::kValue, "at most 1024");
  expect_dispatch_error<D>([](D& t) { t.is_token_in_rank = view(DType::kBool, {kT, kR + 1}); },
                           K::kValue, "is_token_in_rank has shape");
  expect_dispatch_error<D>([](D& t) { t.config = Config(20, 8, 256); }, K::kValue,
                           "handle's channel_prefix_matrix was made with 12 channels");
  expect_dispatch_error<D>([](D& t) { t.config = Config(0, 8, 256); }, K::kValue,
                           "config.num_sms=0 must be a positive even number");
  expect_dispatch_error<D>([](D& t) { t.config = Config(250, 8, 256); }, K::kValue,
                           "must be at most 128");
  expect_dispatch_error<D>([](D& t) { t.cached = true; }, K::kValue,
                           "cached dispatch (handle given) takes no topk_idx");
  expect_dispatch_error<D>([](D& t) { t.num_worst_tokens = 7; }, K::kValue,
                           "recv_x.shape[0]=100 must equal num_worst_tokens=7");
  expect_dispatch_error<D>([](D& t) { t.num_worst_tokens = -1; }, K::kValue,
                           "num_worst_tokens=-1 must be >= 0");
  expect_dispatch_error<D>(
      [](D& t) {
        t.x = view(DType::kFloat8E4M3, {kT, kH});
        t.x_scales = view(DType::kBFloat16, {kT, kS});
      },
      K::kType, "x_scales must have dtype float32 or int32");
  expect_dispatch_error<D>([](D& t) { t.x_scales = view(DType::kFloat32, {kT, kS}); }, K::kType,
                           "x given as (data, scales) needs 1-byte data (float8_e4m3fn, ...), "
                           "got bfloat16");
  expect_dispatch_error<D>(
      [](D& t) {
        t.x = view(DType::kFloat8E4M3, {kT, kH});
        t.recv_x = view(DType::kFloat8E4M3, {100, kH});
        t.recv_x_scales = view(DType::kFloat32, {100, kS});
      },
      K::kValue, "recv_x_scales must not be given without x_scales");
  expect_dispatch_error<D>([](D& t) { t.recv_topk_idx = view(DType::kInt64, {99, kK}); }, K::kValue,
                           "recv_topk_idx has shape [99, 8]");
  expect_dispatch_error<D>([](D& t) { t.send_head = TensorView{}; }, K::kValue,
                           "send_head is required");
}

TEST(Validate, DispatchNeedsRoomInTheBuffer) {
  const BufferInfo small{0, kR, 1 << 20, 0};
  expect_error([&] { validate_dispatch(small, valid_dispatch()); }, ErrorKind::kValue,
               "num_nvl_bytes=1048576");
  EXPECT_EQ(dispatch_ring_bytes(kConfig, kR, 512, 0, 8), int64_t{12} * kR * 256 * 592);
}

TEST(Validate, CachedDispatch) {
  DispatchTensors t = valid_dispatch();
  t.cached = true;
  t.topk_idx = t.topk_weights = t.recv_topk_idx = t.recv_topk_weights = TensorView{};
  t.recv_src_idx = t.recv_channel_prefix_matrix = t.send_head = TensorView{};
  EXPECT_NO_THROW(validate_dispatch(kInfo, t));
  t.send_head = view(DType::kInt32, {kT, kR});
  expect_error([&] { validate_dispatch(kInfo, t); }, ErrorKind::kValue,
               "send_head must not be given in cached mode");
}

TEST(Validate, NotifyChecksTheDispatchInputsFirst) {
  NotifyTensors n;
  n.dispatch = valid_dispatch();
  n.num_tokens_per_rank = view(DType::kInt32, {kR});
  n.num_tokens_per_expert = view(DType::kInt32, {kE});
  EXPECT_NO_THROW(validate_notify(kInfo, n));
  n.dispatch.x_scales = view(DType::kFloat32, {kT, kS});  // scales with bf16 data
  expect_error([&] { validate_notify(kInfo, n); }, ErrorKind::kType, "needs 1-byte data");
  n.dispatch = valid_dispatch();
  n.num_tokens_per_expert = view(DType::kInt32, {kE + kR});
  expect_error([&] { validate_notify(kInfo, n); }, ErrorKind::kValue, "must equal num_experts=32");
  n.num_tokens_per_expert = view(DType::kInt32, {kE});
  n.expert_alignment = 0;
  expect_error([&] { validate_notify(kInfo, n); }, ErrorKind::kValue, "expert_alignment=0");
}

TEST(Validate, CombineArguments) {
  auto check = [](auto mutate, ErrorKind kind, const std::string& part) {
    CombineTensors t = valid_combine();
    mutate(t);
    expect_error([&] { validate_combine(kInfo, t); }, kind, part);
  };
  using C = CombineTensors;
  check([](C& t) { t.x = view(DType::kFloat32, {100, kH}); }, ErrorKind::kType,
        "x must have dtype bfloat16, got float32");
  check([](C& t) { t.x = view(DType::kBFloat16, {99, kH}); }, ErrorKind::kValue,
        "x.shape[0]=99 must equal the number of rows the dispatch received (100)");
  check([](C& t) { t.config = Config(20, 8, 256); }, ErrorKind::kValue,
        "use the num_sms of the dispatch");
  check([](C& t) { t.config = Config(24, 16, 30); }, ErrorKind::kValue,
        "must be >= num_max_nvl_chunked_send_tokens + 24");
  check([](C& t) { t.bias0 = view(DType::kBFloat16, {kT + 1, kH}); }, ErrorKind::kValue,
        "bias[0] has shape [65, 256]");
  check([](C& t) { t.bias1 = view(DType::kFloat32, {kT, kH}); }, ErrorKind::kType,
        "bias[1] must have dtype bfloat16");
  check([](C& t) { t.combined_topk_weights = TensorView{}; }, ErrorKind::kValue,
        "combined_topk_weights is required");
  check([](C& t) { t.topk_weights = TensorView{}; }, ErrorKind::kValue,
        "combined_topk_weights must not be given");
}

TEST(Validate, BufferOptions) {
  const auto options = [](int rank, int num_ranks, int64_t nvl, int64_t rdma, bool ll = false) {
    BufferOptions o;
    o.rank = rank;
    o.num_ranks = num_ranks;
    o.num_nvl_bytes = nvl;
    o.num_rdma_bytes = rdma;
    o.low_latency_mode = ll;
    return o;
  };
  EXPECT_NO_THROW(validate_buffer_options(options(0, 8, 1 << 20, 0)));
  EXPECT_NO_THROW(validate_buffer_options(options(5, 6, 1 << 20, 1 << 20)));
  expect_error([&] { validate_buffer_options(options(0, 2, 100, 0)); }, ErrorKind::kValue,
               "num_nvl_bytes=100 must be a non-negative multiple of 128");
  expect_error([&] { validate_buffer_options(options(0, 2, 128, 129)); }, ErrorKind::kValue,
               "num_rdma_bytes=129 must be a non-negative multiple of 128");
  expect_error([&] { validate_buffer_options(options(2, 2, 128, 0)); }, ErrorKind::kValue,
               "rank=2 must be in [0, 2)");
  expect_error([&] { validate_buffer_options(options(0, 0, 128, 0)); }, ErrorKind::kValue,
               "num_ranks=0 must be >= 1");
  expect_error([&] { validate_buffer_options(options(0, 2, int64_t{1} << 36, 0)); },
               ErrorKind::kValue, "num_nvl_bytes / 16 must be < 2^31 - 1");
  expect_error([&] { validate_buffer_options(options(0, 2, 128, int64_t{1} << 32)); },
               ErrorKind::kValue, "must be <= 2^31 - 1 without low_latency_mode");
  // The low-latency mode allows an RDMA buffer above 2^31 bytes (below 2^35).
  EXPECT_NO_THROW(validate_buffer_options(options(0, 2, 128, int64_t{1} << 32, true)));
  expect_error([&] { validate_buffer_options(options(0, 2, 128, int64_t{1} << 36, true)); },
               ErrorKind::kValue, "num_rdma_bytes / 16 must be < 2^31 - 1");
}

TEST(Validate, RdmaBufferNeedsSeveralNodes) {
  BufferOptions o;
  o.num_ranks = 4;
  o.num_rdma_bytes = 1 << 20;
  Topology one_node;
  one_node.num_ranks = one_node.num_local_ranks = 4;
  expect_error([&] { validate_buffer_topology(o, one_node); }, ErrorKind::kValue,
               "num_rdma_bytes=1048576 must be 0 when every rank shares one NVLink domain");
  Topology two_nodes = one_node;
  two_nodes.num_local_ranks = 2;
  EXPECT_NO_THROW(validate_buffer_topology(o, two_nodes));
  o.num_rdma_bytes = 0;
  EXPECT_NO_THROW(validate_buffer_topology(o, one_node));
}

TEST(Validate, Layout) {
  LayoutTensors t;
  t.topk_idx = view(DType::kInt64, {kT, kK});
  t.num_experts = kE;
  t.num_tokens_per_rank = view(DType::kInt32, {kR});
  t.num_tokens_per_expert = view(DType::kInt32, {kE});
  t.is_token_in_rank = view(DType::kBool, {kT, kR});
  EXPECT_NO_THROW(validate_layout(kInfo, t));
  t.num_tokens_per_rdma_rank = view(DType::kInt32, {1});
  expect_error([&] { validate_layout(kInfo, t); }, ErrorKind::kValue,
               "num_tokens_per_rdma_rank must not be given");
  t.num_tokens_per_rdma_rank = TensorView{};
  t.num_experts = 6;
  expect_error([&] { validate_layout(kInfo, t); }, ErrorKind::kValue, "num_experts=6");
}

}  // namespace
}  // namespace uccl::ep::runtime

namespace uccl::ep::runtime {
namespace {

// Users size num_nvl_bytes with DeepEP's hint: every supported rank count (EP 8 included) and
// every tuned or swept config must then fit, for BF16 and FP8 (56 scales) with top-8.
TEST(Validate, DeepEPHintAlwaysFits) {
  for (int r : {2, 4, 8}) {
    for (int sms : {20, 24, 48}) {
      std::vector<Config> configs = {get_dispatch_config(r, sms), get_combine_config(r, sms)};
      for (int chunk = 1; chunk <= 32; ++chunk) configs.emplace_back(sms, chunk, 256);
      for (const Config& c : configs) {
        const int64_t hint = c.get_nvl_buffer_size_hint(7168 * 2, r);
        EXPECT_LE(dispatch_ring_bytes(c, r, 7168 * 2, 0, 8), hint) << "bf16 r=" << r;
        EXPECT_LE(dispatch_ring_bytes(c, r, 7168, 56, 8), hint) << "fp8 r=" << r;
        EXPECT_LE(combine_ring_bytes(c, r, 7168 * 2, 8), hint) << "combine r=" << r;
        const BufferInfo info{r - 1, r, hint, 0};
        DispatchTensors t = valid_dispatch();
        t.config = c;
        t.is_token_in_rank = view(DType::kBool, {kT, r});
        t.rank_prefix_matrix = view(DType::kInt32, {r, r});
        t.channel_prefix_matrix = view(DType::kInt32, {r, c.num_channels()});
        t.recv_channel_prefix_matrix = view(DType::kInt32, {r, c.num_channels()});
        t.send_head = view(DType::kInt32, {kT, r});
        t.num_experts = 8 * r;
        EXPECT_NO_THROW(validate_dispatch(info, t)) << "r=" << r << " sms=" << sms;
      }
    }
  }
}

}  // namespace
}  // namespace uccl::ep::runtime
