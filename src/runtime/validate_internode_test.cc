// Argument validation of the internode calls: valid calls pass, and each broken argument is
// named in the error (with the value and the rule).
#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "kernels/routing/routing.h"
#include "runtime/validate/internode.h"
#include "uccl_ep/error.h"
#include "uccl_ep/internode.h"
#include "uccl_ep/routing.h"

namespace uccl::ep::runtime {
namespace {

// 8 ranks as 4 nodes of 2; C = 12 channels.
constexpr int kR = 8, kL = 2, kN = 4, kT = 64, kH = 256, kK = 8, kE = 32, kS = 2, kC = 12;
constexpr int kRecv = 100, kRdmaRecv = 70;
const Config kConfig(2 * kC, 8, 256, 6, 128);
const BufferInfo kInfo{1, kR, int64_t{1} << 30, 0, int64_t{1} << 30, false, kL};

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

InternodeHandle valid_handle(int num_recv = kRecv, int channels = kC) {
  InternodeHandle h;
  h.is_token_in_rank = view(DType::kBool, {kT, kR});
  h.rdma_channel_prefix_matrix = view(DType::kInt32, {kN, channels});
  h.gbl_channel_prefix_matrix = view(DType::kInt32, {kR, channels});
  h.recv_rdma_channel_prefix_matrix = view(DType::kInt32, {kN, channels});
  h.recv_rdma_rank_prefix_sum = view(DType::kInt32, {kN});
  h.recv_gbl_channel_prefix_matrix = view(DType::kInt32, {kR, channels});
  h.recv_gbl_rank_prefix_sum = view(DType::kInt32, {kR});
  h.recv_src_meta = view(DType::kUInt8, {num_recv, 8});
  h.send_rdma_head = view(DType::kInt32, {kT, kN});
  h.send_nvl_head = view(DType::kInt32, {kRdmaRecv, kL});
  return h;
}

InternodeDispatchTensors valid_dispatch(int num_recv = kRecv) {
  InternodeDispatchTensors t;
  t.x = view(DType::kBFloat16, {kT, kH});
  t.topk_idx = view(DType::kInt64, {kT, kK});
  t.topk_weights = view(DType::kFloat32, {kT, kK});
  t.num_experts = kE;
  t.config = kConfig;
  t.handle = valid_handle(num_recv);
  t.recv_x = view(DType::kBFloat16, {num_recv, kH});
  t.recv_topk_idx = view(DType::kInt64, {num_recv, kK});
  t.recv_topk_weights = view(DType::kFloat32, {num_recv, kK});
  return t;
}

/// FP8 rows with column-major float32 scales, no top-k, reusing a handle.
InternodeDispatchTensors valid_cached_fp8() {
  InternodeDispatchTensors t = valid_dispatch();
  t.x = view(DType::kFloat8E4M3, {kT, kH});
  t.x_scales = view(DType::kFloat32, {kT, kS});
  t.x_scales.strides[0] = 1;
  t.x_scales.strides[1] = kT;
  t.topk_idx = t.topk_weights = t.recv_topk_idx = t.recv_topk_weights = TensorView{};
  t.num_experts = 0;
  t.cached = true;
  t.recv_x = view(DType::kFloat8E4M3, {kRecv, kH});
  t.recv_x_scales = view(DType::kFloat32, {kRecv, kS});
  return t;
}

InternodeNotifyTensors valid_notify() {
  InternodeNotifyTensors t;
  t.dispatch = valid_dispatch();
  t.num_tokens_per_rank = view(DType::kInt32, {kR});
  t.num_tokens_per_rdma_rank = view(DType::kInt32, {kN});
  t.num_tokens_per_expert = view(DType::kInt32, {kE});
  return t;
}

InternodeCombineTensors valid_combine() {
  InternodeCombineTensors t;
  t.x = view(DType::kBFloat16, {kRecv, kH});
  t.topk_weights = view(DType::kFloat32, {kRecv, kK});
  t.bias0 = view(DType::kBFloat16, {kT, kH});
  t.bias1 = view(DType::kBFloat16, {kT, kH});
  t.handle = valid_handle();
  t.config = kConfig;
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

void dispatch_error(const InternodeDispatchTensors& t, ErrorKind kind, const std::string& part) {
  expect_error([&] { validate_internode_dispatch(kInfo, t); }, kind, part);
}

void notify_error(const InternodeNotifyTensors& t, ErrorKind kind, const std::string& part) {
  expect_error([&] { validate_internode_notify(kInfo, t); }, kind, part);
}

void combine_error(const InternodeCombineTensors& t, ErrorKind kind, const std::string& part) {
  expect_error([&] { validate_internode_combine(kInfo, t); }, kind, part);
}

TEST(ValidateInternode, ValidCallsPass) {
  EXPECT_NO_THROW(validate_internode_notify(kInfo, valid_notify()));
  EXPECT_NO_THROW(validate_internode_dispatch(kInfo, valid_dispatch()));
  EXPECT_NO_THROW(validate_internode_dispatch(kInfo, valid_cached_fp8()));
  EXPECT_NO_THROW(validate_internode_combine(kInfo, valid_combine()));
  InternodeCombineTensors plain = valid_combine();
  plain.topk_weights = plain.combined_topk_weights = plain.bias0 = plain.bias1 = TensorView{};
  EXPECT_NO_THROW(validate_internode_combine(kInfo, plain));
  // No rows received, none forwarded: empty tensors are fine.
  InternodeDispatchTensors empty = valid_dispatch(0);
  empty.handle.send_nvl_head = view(DType::kInt32, {0, kL});
  EXPECT_NO_THROW(validate_internode_dispatch(kInfo, empty));
  // int32 scales, FP8 with top-k, non-cached.
  InternodeDispatchTensors fp8 = valid_dispatch();
  fp8.x = view(DType::kFloat8E4M3, {kT, kH});
  fp8.x_scales = view(DType::kInt32, {kT, kS});
  fp8.recv_x = view(DType::kFloat8E4M3, {kRecv, kH});
  fp8.recv_x_scales = view(DType::kInt32, {kRecv, kS});
  EXPECT_NO_THROW(validate_internode_dispatch(kInfo, fp8));
}

TEST(ValidateInternode, NodeSizes) {
  for (int l : {1, 2, 4}) {
    BufferInfo info = kInfo;
    info.num_local_ranks = l;
    InternodeDispatchTensors t = valid_dispatch();
    t.handle.rdma_channel_prefix_matrix = view(DType::kInt32, {kR / l, kC});
    t.handle.recv_rdma_channel_prefix_matrix = view(DType::kInt32, {kR / l, kC});
    t.handle.recv_rdma_rank_prefix_sum = view(DType::kInt32, {kR / l});
    t.handle.send_rdma_head = view(DType::kInt32, {kT, kR / l});
    t.handle.send_nvl_head = view(DType::kInt32, {kRdmaRecv, l});
    EXPECT_NO_THROW(validate_internode_dispatch(info, t)) << "L=" << l;
    // The same tensors sized for another node count are refused, naming the field.
    info.num_local_ranks = l == 4 ? 2 : 4;
    expect_error([&] { validate_internode_dispatch(info, t); }, ErrorKind::kValue,
                 "rdma_channel_prefix_matrix has shape");
  }
}

TEST(ValidateInternode, OneNvlinkDomainIsRefused) {
  for (int l : {0, kR}) {
    BufferInfo one = kInfo;
    one.num_local_ranks = l;
    const std::string rule = "needs ranks on several NVLink domains, but all 8 ranks share one";
    expect_error([&] { validate_internode_notify(one, valid_notify()); }, ErrorKind::kValue, rule);
    expect_error([&] { validate_internode_dispatch(one, valid_dispatch()); }, ErrorKind::kValue,
                 rule);
    expect_error([&] { validate_internode_combine(one, valid_combine()); }, ErrorKind::kValue,
                 rule);
  }
  BufferInfo odd = kInfo;
  odd.num_local_ranks = 3;
  expect_error([&] { validate_internode_dispatch(odd, valid_dispatch()); }, ErrorKind::kValue,
               "num_local_ranks=3 must divide num_ranks=8");
}

TEST(ValidateInternode, Config) {
  InternodeDispatchTensors t = valid_dispatch();
  t.config = Config(23, 8, 256);
  dispatch_error(t, ErrorKind::kValue, "config.num_sms=23 must be a positive even number");
  t.config = Config(0, 8, 256);
  dispatch_error(t, ErrorKind::kValue, "config.num_sms=0 must be a positive even number");
  t.config = Config(130, 8, 256);
  dispatch_error(t, ErrorKind::kValue, "config.num_sms=130 must be at most 128");
  InternodeCombineTensors c = valid_combine();
  c.config = Config(21, 8, 256);
  combine_error(c, ErrorKind::kValue, "combine: config.num_sms=21");
  // The RDMA chunk sizes are Config's own rule.
  expect_error([] { Config(24, 8, 256, 8, 8); }, ErrorKind::kValue,
               "num_max_rdma_chunked_send_tokens=8 must be at most half");
}

TEST(ValidateInternode, ChannelsMustMatchTheHandle) {
  InternodeCombineTensors c = valid_combine();
  c.config = Config(2 * kC + 2, 8, 256);
  combine_error(c, ErrorKind::kValue, "config.num_sms=26 gives 13 channels but");
  combine_error(c, ErrorKind::kValue, "use the num_sms of the dispatch that created the handle");
  InternodeDispatchTensors cached = valid_cached_fp8();
  cached.config = Config(2 * kC - 4, 8, 256);
  dispatch_error(cached, ErrorKind::kValue, "handle.rdma_channel_prefix_matrix has 12 channels");
  // Each prefix matrix is checked, not only the first.
  c = valid_combine();
  c.handle.recv_gbl_channel_prefix_matrix = view(DType::kInt32, {kR, kC + 1});
  combine_error(c, ErrorKind::kValue, "handle.recv_gbl_channel_prefix_matrix has 13 channels");
}

TEST(ValidateInternode, X) {
  InternodeDispatchTensors t = valid_dispatch();
  t.x = TensorView{};
  dispatch_error(t, ErrorKind::kValue, "x is required");
  t = valid_dispatch();
  t.x = view(DType::kBFloat16, {kT, 4});
  dispatch_error(t, ErrorKind::kValue, "x.shape[1] * element size = 8 bytes");
  t = valid_dispatch();
  t.x.strides[0] = kH + 8;
  dispatch_error(t, ErrorKind::kValue, "x must be contiguous");
  t = valid_dispatch();
  t.x.device_index = 1;
  dispatch_error(t, ErrorKind::kValue, "x must be on cuda:0");
  t = valid_dispatch();
  t.x.device = DeviceKind::kCPU;
  dispatch_error(t, ErrorKind::kValue, "x must be on cuda:0 (the Buffer's device), got cpu");
  t = valid_dispatch();
  t.x = view(DType::kBFloat16, {kT, kH, 1});
  dispatch_error(t, ErrorKind::kValue, "x has shape [64, 256, 1], expected [*, *]");
  t = valid_dispatch();
  t.x.dtype = DType::kUnknown;
  dispatch_error(t, ErrorKind::kType, "x has an unknown dtype");
  // Raw rows of another element type move as bytes (as in DeepEP).
  t = valid_dispatch();
  t.x = view(DType::kFloat32, {kT, kH});
  t.recv_x = view(DType::kFloat32, {kRecv, kH});
  EXPECT_NO_THROW(validate_internode_dispatch(kInfo, t));
}

TEST(ValidateInternode, Scales) {
  InternodeDispatchTensors t = valid_cached_fp8();
  t.x = view(DType::kBFloat16, {kT, kH});
  t.recv_x = view(DType::kBFloat16, {kRecv, kH});
  dispatch_error(t, ErrorKind::kType, "needs 1-byte data (float8_e4m3fn, ...), got bfloat16");
  t = valid_cached_fp8();
  t.x_scales = view(DType::kInt64, {kT, kS});
  dispatch_error(t, ErrorKind::kType, "x_scales must have dtype float32 or int32, got int64");
  t = valid_cached_fp8();
  t.x_scales = view(DType::kFloat32, {kT + 1, kS});
  dispatch_error(t, ErrorKind::kValue, "x_scales has shape [65, 2], expected [64, *]");
  t = valid_cached_fp8();
  t.x_scales = view(DType::kFloat32, {kT, 1025});
  dispatch_error(t, ErrorKind::kValue, "x_scales.shape[1]=1025 (num_scales) must be in [1, 1024]");
  t = valid_cached_fp8();
  t.x_scales.strides[0] = -1;
  dispatch_error(t, ErrorKind::kValue, "x_scales strides must be non-negative");
  t = valid_cached_fp8();
  t.recv_x_scales = TensorView{};
  dispatch_error(t, ErrorKind::kValue, "recv_x_scales is required");
  t = valid_cached_fp8();
  t.recv_x_scales = view(DType::kInt32, {kRecv, kS});
  dispatch_error(t, ErrorKind::kType, "recv_x_scales must have dtype float32, got int32");
  t = valid_dispatch();
  t.recv_x_scales = view(DType::kFloat32, {kRecv, kS});
  dispatch_error(t, ErrorKind::kValue, "recv_x_scales must not be given without x_scales");
}

TEST(ValidateInternode, TopK) {
  InternodeDispatchTensors t = valid_dispatch();
  t.topk_weights = TensorView{};
  dispatch_error(t, ErrorKind::kValue, "topk_idx and topk_weights must be given together");
  t = valid_dispatch();
  t.topk_idx = view(DType::kInt32, {kT, kK});
  dispatch_error(t, ErrorKind::kType, "topk_idx must have dtype int64, got int32");
  t = valid_dispatch();
  t.topk_idx = view(DType::kInt64, {kT, 33});
  dispatch_error(t, ErrorKind::kValue, "topk_idx.shape[1]=33 (num_topk) must be in [1, 32]");
  t = valid_dispatch();
  t.topk_idx = view(DType::kInt64, {kT - 1, kK});
  dispatch_error(t, ErrorKind::kValue, "topk_idx has shape [63, 8], expected [64, *]");
  t = valid_dispatch();
  t.topk_weights = view(DType::kFloat32, {kT, kK - 1});
  dispatch_error(t, ErrorKind::kValue, "topk_weights has shape [64, 7], expected [64, 8]");
  t = valid_dispatch();
  t.topk_weights = view(DType::kBFloat16, {kT, kK});
  dispatch_error(t, ErrorKind::kType, "topk_weights must have dtype float32");
  t = valid_dispatch();
  t.recv_topk_idx = TensorView{};
  dispatch_error(t, ErrorKind::kValue, "recv_topk_idx is required");
  t = valid_dispatch();
  t.recv_topk_weights = view(DType::kFloat32, {kRecv, kK + 1});
  dispatch_error(t, ErrorKind::kValue, "recv_topk_weights has shape [100, 9], expected [100, 8]");
  t = valid_cached_fp8();
  t.recv_topk_idx = view(DType::kInt64, {kRecv, kK});
  dispatch_error(t, ErrorKind::kValue, "recv_topk_idx must not be given without topk_idx");
}

TEST(ValidateInternode, Modes) {
  InternodeDispatchTensors t = valid_dispatch();
  t.num_experts = kE + 1;
  dispatch_error(t, ErrorKind::kValue, "num_experts=33 must be a positive multiple of");
  t.num_experts = 0;
  dispatch_error(t, ErrorKind::kValue, "num_experts=0 must be a positive multiple");
  t = valid_dispatch();
  t.num_worst_tokens = -1;
  dispatch_error(t, ErrorKind::kValue, "num_worst_tokens=-1 must be >= 0");
  t = valid_dispatch();
  t.num_worst_tokens = kRecv + 1;
  dispatch_error(t, ErrorKind::kValue, "recv_x.shape[0]=100 must equal num_worst_tokens=101");
  t.num_worst_tokens = kRecv;
  EXPECT_NO_THROW(validate_internode_dispatch(kInfo, t));
  InternodeDispatchTensors cached = valid_cached_fp8();
  cached.num_worst_tokens = kRecv;
  dispatch_error(cached, ErrorKind::kValue, "cached dispatch takes no num_worst_tokens");
  cached = valid_dispatch();
  cached.cached = true;
  dispatch_error(cached, ErrorKind::kValue,
                 "cached dispatch (handle given) takes no topk_idx/topk_weights");
  // Without top-k, no worst-case mode (the padding rows are marked in recv_topk_idx).
  t = valid_cached_fp8();
  t.cached = false;
  t.num_experts = kE;
  EXPECT_NO_THROW(validate_internode_dispatch(kInfo, t));
  t.num_worst_tokens = kRecv;
  dispatch_error(t, ErrorKind::kValue, "num_worst_tokens > 0 needs topk_idx and topk_weights");
}

/// Each handle field of `h`, with its name and the shape that is valid for it.
struct HandleField {
  TensorView InternodeHandle::*member;
  const char* name;
  DType dtype;
};

const HandleField kFields[] = {
    {&InternodeHandle::is_token_in_rank, "is_token_in_rank", DType::kBool},
    {&InternodeHandle::rdma_channel_prefix_matrix, "rdma_channel_prefix_matrix", DType::kInt32},
    {&InternodeHandle::gbl_channel_prefix_matrix, "gbl_channel_prefix_matrix", DType::kInt32},
    {&InternodeHandle::recv_rdma_channel_prefix_matrix, "recv_rdma_channel_prefix_matrix",
     DType::kInt32},
    {&InternodeHandle::recv_rdma_rank_prefix_sum, "recv_rdma_rank_prefix_sum", DType::kInt32},
    {&InternodeHandle::recv_gbl_channel_prefix_matrix, "recv_gbl_channel_prefix_matrix",
     DType::kInt32},
    {&InternodeHandle::recv_gbl_rank_prefix_sum, "recv_gbl_rank_prefix_sum", DType::kInt32},
    {&InternodeHandle::recv_src_meta, "recv_src_meta", DType::kUInt8},
    {&InternodeHandle::send_rdma_head, "send_rdma_head", DType::kInt32},
    {&InternodeHandle::send_nvl_head, "send_nvl_head", DType::kInt32},
};

/// `v` with its first dimension (or, with `grow_last`, its last) one larger, contiguous.
TensorView misshapen(const TensorView& v, bool grow_last) {
  TensorView bad = v;
  bad.shape[grow_last ? v.ndim - 1 : 0] += 1;
  int64_t stride = 1;
  for (int j = bad.ndim - 1; j >= 0; --j) {
    bad.strides[j] = stride;
    stride *= bad.shape[j];
  }
  return bad;
}

TEST(ValidateInternode, EveryHandleField) {
  for (const HandleField& f : kFields) {
    const bool nvl_head = std::string(f.name) == "send_nvl_head";
    const std::string shape_rule = std::string("handle.") + f.name + " has shape";
    // Combine reads every field of the handle.
    InternodeCombineTensors c = valid_combine();
    c.handle.*f.member = TensorView{};
    combine_error(c, ErrorKind::kValue, std::string("handle.") + f.name + " is required");
    c = valid_combine();
    (c.handle.*f.member).dtype = f.dtype == DType::kInt32 ? DType::kInt64 : DType::kInt32;
    combine_error(c, ErrorKind::kType, std::string("handle.") + f.name + " must have dtype");
    c = valid_combine();
    c.handle.*f.member = misshapen(c.handle.*f.member, nvl_head);
    // A longer is_token_in_rank makes the handle's other [T, ...] fields the odd ones out.
    const bool defines_t = std::string(f.name) == "is_token_in_rank";
    const bool defines_recv = std::string(f.name) == "recv_src_meta";
    if (defines_recv)
      combine_error(c, ErrorKind::kValue, "must equal the number of rows the dispatch received");
    else if (defines_t)
      combine_error(c, ErrorKind::kValue, "handle.send_rdma_head has shape [64, 4], expected [65");
    else
      combine_error(c, ErrorKind::kValue, shape_rule);
    c = valid_combine();
    (c.handle.*f.member).strides[0] += 1;
    if ((c.handle.*f.member).ndim > 1 && (c.handle.*f.member).shape[0] > 1)
      combine_error(c, ErrorKind::kValue, std::string("handle.") + f.name + " must be contiguous");
    c = valid_combine();
    (c.handle.*f.member).device_index = 3;
    combine_error(c, ErrorKind::kValue, std::string("handle.") + f.name + " must be on cuda:0");
    // A cached dispatch reads them too, named as the handle's.
    InternodeDispatchTensors d = valid_cached_fp8();
    (d.handle.*f.member).dtype = DType::kFloat64;
    dispatch_error(d, ErrorKind::kType, std::string("handle.") + f.name + " must have dtype");
    // A non-cached dispatch: notify's outputs and the caller's is_token_in_rank, unprefixed.
    d = valid_dispatch();
    (d.handle.*f.member).dtype = DType::kFloat64;
    dispatch_error(d, ErrorKind::kType, std::string(f.name) + " must have dtype");
  }
}

TEST(ValidateInternode, DispatchOutputs) {
  InternodeDispatchTensors t = valid_dispatch();
  t.recv_x = view(DType::kFloat32, {kRecv, kH});
  dispatch_error(t, ErrorKind::kType, "recv_x must have dtype bfloat16, got float32");
  t = valid_dispatch();
  t.recv_x = view(DType::kBFloat16, {kRecv, kH + 8});
  dispatch_error(t, ErrorKind::kValue, "recv_x has shape [100, 264], expected [*, 256]");
  t = valid_dispatch();
  t.handle.recv_src_meta = view(DType::kUInt8, {kRecv + 1, 8});
  dispatch_error(t, ErrorKind::kValue, "recv_src_meta has shape [101, 8], expected [100, 8]");
  t = valid_dispatch();
  t.handle.recv_src_meta = view(DType::kUInt8, {kRecv, 4});
  dispatch_error(t, ErrorKind::kValue, "recv_src_meta has shape [100, 4], expected [100, 8]");
  t = valid_dispatch();
  t.handle.send_rdma_head = view(DType::kInt32, {kT, kR});
  dispatch_error(t, ErrorKind::kValue, "send_rdma_head has shape [64, 8], expected [64, 4]");
  t = valid_dispatch();
  t.handle.send_nvl_head = view(DType::kInt32, {kRdmaRecv, kR});
  dispatch_error(t, ErrorKind::kValue, "send_nvl_head has shape [70, 8], expected [*, 2]");
  // The output-only checks the runtime runs after a notify.
  t = valid_dispatch();
  t.recv_x = TensorView{};
  expect_error([&] { validate_internode_dispatch_outputs(kInfo, t); }, ErrorKind::kValue,
               "recv_x is required");
  EXPECT_NO_THROW(validate_internode_dispatch_outputs(kInfo, valid_dispatch()));
}

TEST(ValidateInternode, Notify) {
  InternodeNotifyTensors t = valid_notify();
  t.dispatch.cached = true;
  notify_error(t, ErrorKind::kValue, "notify_dispatch is only for non-cached dispatch");
  t = valid_notify();
  t.num_tokens_per_rdma_rank = TensorView{};
  notify_error(t, ErrorKind::kValue, "num_tokens_per_rdma_rank is required");
  t = valid_notify();
  t.num_tokens_per_rdma_rank = view(DType::kInt32, {kR / 8});
  notify_error(t, ErrorKind::kValue, "num_tokens_per_rdma_rank has shape [1], expected [4]");
  t = valid_notify();
  t.num_tokens_per_rdma_rank = view(DType::kInt64, {kN});
  notify_error(t, ErrorKind::kType, "num_tokens_per_rdma_rank must have dtype int32");
  t = valid_notify();
  t.num_tokens_per_rank = view(DType::kInt32, {kN});
  notify_error(t, ErrorKind::kValue, "num_tokens_per_rank has shape [4], expected [8]");
  t = valid_notify();
  t.num_tokens_per_expert = view(DType::kInt32, {kE + kR});
  notify_error(t, ErrorKind::kValue, "num_tokens_per_expert.shape[0]=40 must equal num_experts=32");
  t = valid_notify();
  t.num_tokens_per_expert = view(DType::kInt32, {kE}, 1);
  notify_error(t, ErrorKind::kValue, "num_tokens_per_expert must be on cuda:0");
  t = valid_notify();
  t.expert_alignment = 0;
  notify_error(t, ErrorKind::kValue, "expert_alignment=0 must be >= 1");
  t = valid_notify();
  t.wait_for_counts = false;
  notify_error(t, ErrorKind::kValue, "waits for counts exactly when num_worst_tokens == 0");
  // Notify checks the dispatch inputs and what it fills (prefix sums, send_rdma_head), not the
  // dispatch's outputs (their sizes come from the counts).
  t = valid_notify();
  t.dispatch.recv_x = t.dispatch.recv_topk_idx = t.dispatch.recv_topk_weights = TensorView{};
  t.dispatch.handle.recv_src_meta = t.dispatch.handle.send_nvl_head = TensorView{};
  EXPECT_NO_THROW(validate_internode_notify(kInfo, t));
  t.dispatch.handle.send_rdma_head = TensorView{};
  notify_error(t, ErrorKind::kValue, "send_rdma_head is required");
  t.dispatch.handle.send_rdma_head = view(DType::kInt32, {kT, kR});
  notify_error(t, ErrorKind::kValue, "send_rdma_head has shape [64, 8], expected [64, 4]");
  t.dispatch.handle.send_rdma_head = view(DType::kInt32, {kT, kN});
  t.dispatch.num_worst_tokens = 500;
  t.wait_for_counts = false;
  EXPECT_NO_THROW(validate_internode_notify(kInfo, t));
  t.dispatch.handle.gbl_channel_prefix_matrix = view(DType::kInt32, {kN, kC});
  notify_error(t, ErrorKind::kValue,
               "gbl_channel_prefix_matrix has shape [4, 12], expected [8, *]");
}

TEST(ValidateInternode, Combine) {
  InternodeCombineTensors t = valid_combine();
  t.x = view(DType::kFloat32, {kRecv, kH});
  combine_error(t, ErrorKind::kType, "x must have dtype bfloat16, got float32");
  t = valid_combine();
  t.x = view(DType::kBFloat16, {kRecv + 1, kH});
  t.topk_weights = view(DType::kFloat32, {kRecv + 1, kK});
  combine_error(t, ErrorKind::kValue, "x.shape[0]=101 must equal the number of rows the dispatch");
  t = valid_combine();
  t.x = view(DType::kBFloat16, {kRecv, 4});
  combine_error(t, ErrorKind::kValue, "x.shape[1]=4 must be a positive multiple of 8");
  t = valid_combine();
  t.topk_weights = view(DType::kFloat32, {kRecv, 33});
  combine_error(t, ErrorKind::kValue, "topk_weights.shape[1]=33 (num_topk) must be in [1, 32]");
  t = valid_combine();
  t.topk_weights = view(DType::kFloat32, {kRecv - 1, kK});
  combine_error(t, ErrorKind::kValue, "topk_weights has shape [99, 8], expected [100, *]");
  t = valid_combine();
  t.bias0 = view(DType::kBFloat16, {kT, kH + 8});
  combine_error(t, ErrorKind::kValue, "bias[0] has shape [64, 264], expected [64, 256]");
  t = valid_combine();
  t.bias1 = view(DType::kFloat32, {kT, kH});
  combine_error(t, ErrorKind::kType, "bias[1] must have dtype bfloat16");
  t = valid_combine();
  t.combined_x = view(DType::kBFloat16, {kRecv, kH});
  combine_error(t, ErrorKind::kValue, "combined_x has shape [100, 256], expected [64, 256]");
  t = valid_combine();
  t.combined_topk_weights = TensorView{};
  combine_error(t, ErrorKind::kValue, "combined_topk_weights is required");
  t = valid_combine();
  t.topk_weights = TensorView{};
  combine_error(t, ErrorKind::kValue,
                "combined_topk_weights must not be given without topk_weights");
}

}  // namespace
}  // namespace uccl::ep::runtime

namespace uccl::ep::runtime {
namespace {

// get_dispatch_layout's num_tokens_per_rdma_rank: [N] whenever the ranks span N > 1 nodes.
TEST(ValidateInternode, LayoutPerNodeCounts) {
  LayoutTensors t;
  t.topk_idx = view(DType::kInt64, {kT, kK});
  t.num_experts = kE;
  t.num_tokens_per_rank = view(DType::kInt32, {kR});
  t.num_tokens_per_expert = view(DType::kInt32, {kE});
  t.is_token_in_rank = view(DType::kBool, {kT, kR});
  expect_error([&] { validate_layout(kInfo, t); }, ErrorKind::kValue,
               "num_tokens_per_rdma_rank is required");
  for (int l : {1, 2, 4}) {
    BufferInfo info = kInfo;
    info.num_local_ranks = l;
    t.num_tokens_per_rdma_rank = view(DType::kInt32, {kR / l});
    EXPECT_NO_THROW(validate_layout(info, t)) << "L=" << l;
    t.num_tokens_per_rdma_rank = view(DType::kInt32, {kR / 8});  // DeepEP's R / 8
    expect_error([&] { validate_layout(info, t); }, ErrorKind::kValue,
                 "num_tokens_per_rdma_rank has shape [1], expected [" + std::to_string(kR / l) +
                     "] (num_nodes = num_ranks / num_local_ranks)");
  }
  t.num_tokens_per_rdma_rank = view(DType::kInt64, {kN});
  expect_error([&] { validate_layout(kInfo, t); }, ErrorKind::kType,
               "num_tokens_per_rdma_rank must have dtype int32");
  t.num_tokens_per_rdma_rank = view(DType::kInt32, {kN}, 1);
  expect_error([&] { validate_layout(kInfo, t); }, ErrorKind::kValue,
               "num_tokens_per_rdma_rank must be on cuda:0");
  // One NVLink domain (the intranode mode, 8 ranks included): not given.
  for (int l : {0, kR}) {
    BufferInfo one = kInfo;
    one.num_local_ranks = l;
    expect_error([&] { validate_layout(one, t); }, ErrorKind::kValue,
                 "num_tokens_per_rdma_rank must not be given when every rank shares one NVLink "
                 "domain");
    t.num_tokens_per_rdma_rank = TensorView{};
    EXPECT_NO_THROW(validate_layout(one, t));
    t.num_tokens_per_rdma_rank = view(DType::kInt32, {kN});
  }
}

}  // namespace
}  // namespace uccl::ep::runtime

namespace uccl::ep::runtime {
namespace {

// The layout kernel's per-token logic counts a token once per node for any node size: nodes of
// L ranks own L * E / R consecutive experts.
TEST(ValidateInternode, RoutingCountsEachNodeOnce) {
  std::mt19937 rng(7);
  for (int local : {1, 2, 4, 8}) {
    for (int trial = 0; trial < 300; ++trial) {
      const int ranks = local * (2 + trial % 3), experts = ranks * (1 + trial % 4);
      const int topk = 1 + trial % 9;
      std::uniform_int_distribution<int> pick(-1, experts - 1);
      std::vector<int64_t> row(topk);
      for (auto& e : row) e = pick(rng);
      const int64_t per_rank = experts / ranks, per_node = per_rank * local;
      std::set<int> want_nodes;
      for (int64_t e : row)
        if (e >= 0) want_nodes.insert(static_cast<int>(e / per_node));
      std::multiset<int> got_nodes;
      kernels::routing::route_token(
          row.data(), topk, experts, per_rank, per_node, [](int64_t) {}, [](int) {},
          [&](int n) { got_nodes.insert(n); });
      EXPECT_EQ(std::set<int>(got_nodes.begin(), got_nodes.end()), want_nodes) << "L=" << local;
      EXPECT_EQ(got_nodes.size(), want_nodes.size()) << "a node counted twice, L=" << local;
    }
  }
}

}  // namespace
}  // namespace uccl::ep::runtime
