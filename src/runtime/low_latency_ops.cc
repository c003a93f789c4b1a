// LowLatencyOps: the low-latency mode's dispatch, combine and clean on a Buffer's RDMA domain
// (direct peers through CUDA IPC mappings, the others through the CPU proxies).
#include "common/cuda_check.h"
#include "common/error.h"
#include "common/log.h"
#include "kernels/low_latency/args.h"
#include "kernels/rdma/launch.h"
#include "runtime/buffer_impl.h"
#include "runtime/kernel_args.h"
#include "uccl_ep/low_latency.h"

namespace uccl::ep {

using runtime::ptr_or_null;

namespace ll = kernels::low_latency;
using protocol::LowLatencyLayout;

struct LowLatencyOps::State {
  Buffer::Impl& b;
  bool allow_nvlink;
  int num_sms = 0;  // most blocks per kernel: the device's SMs, or the caller's cap
  int next_half = 0;
  ll::SequenceState* sequence = nullptr;       // device memory
  queue::QueueDeviceHandle* queues = nullptr;  // device memory
  int num_queues = 0;
  int32_t* mask = nullptr;  // device memory [num_ranks]; null without enable_shrink

  State(Buffer::Impl& impl, bool nvlink) : b(impl), allow_nvlink(nvlink) {}
  ~State() {
    if (sequence != nullptr) cudaFree(sequence);
    if (queues != nullptr) cudaFree(queues);
    if (mask != nullptr) cudaFree(mask);
  }

  int32_t* require_mask(const char* op) const {
    UCCL_EP_CHECK_VALUE(mask != nullptr, op,
                        " needs a Buffer built with enable_shrink=True (the rank mask)");
    return mask;
  }

  ll::Peers peers(const LowLatencyLayout& layout) const {
    ll::Peers p{};
    p.layout = layout;
    p.local = static_cast<uint8_t*>(b.rdma_buffer.data());
    p.local_in_host_memory = !b.rdma_buffer.on_device();
    if (allow_nvlink && !b.rdma_direct.empty() &&
        static_cast<int>(b.rdma_direct.size()) <= ll::kMaxDirectPeers) {
      p.direct_base = b.topology.local_base();
      p.num_direct = static_cast<int>(b.rdma_direct.size());
      for (int i = 0; i < p.num_direct; ++i) p.direct[i] = b.rdma_direct[i];
    }
    p.signals = b.rdma->device_signals();
    p.queues = queues;
    p.num_queues = num_queues;
    p.rank = b.options.rank;
    p.num_ranks = b.options.num_ranks;
    p.state = sequence;
    p.diag = b.diag();
    p.mask = mask;
    p.relaxed_signals = b.env.aggressive_atomic;
    return p;
  }

  LowLatencyLayout layout(int T, int hidden, int num_experts, const char* op) const {
    const LowLatencyLayout layout(T, hidden, num_experts, b.options.num_ranks);
    UCCL_EP_CHECK_VALUE(layout.total_bytes() <= b.options.num_rdma_bytes, op,
                        ": num_max_dispatch_tokens_per_rank=", T, ", hidden=", hidden,
                        ", num_experts=", num_experts, " need ", layout.total_bytes(),
                        " bytes of RDMA buffer, the Buffer has num_rdma_bytes=",
                        b.options.num_rdma_bytes, " (see Buffer.get_low_latency_rdma_size_hint)");
    UCCL_EP_CHECK_VALUE(layout.num_signal_slots() <= b.rdma->num_user_signal_slots(), op,
                        ": num_experts=", num_experts, " needs ", layout.num_signal_slots(),
                        " signal slots, the command path has ", b.rdma->num_user_signal_slots());
    return layout;
  }

  void check_topk(int num_tokens, int num_topk, const char* op) const {
    UCCL_EP_CHECK_VALUE(ll::topk_shared_bytes(num_tokens, num_topk) <= ll::kMaxTopkSharedBytes, op,
                        ": topk_idx of ", num_tokens, " x ", num_topk,
                        " entries exceeds what the kernels hold in shared memory (",
                        ll::kMaxTopkSharedBytes / 4, " entries)");
  }

  int take_half() {
    const int half = next_half;
    next_half ^= 1;
    return half;
  }
};

namespace {

BufferInfo info_of(const Buffer::Impl& b) {
  const BufferOptions& o = b.options;
  return {o.rank, o.num_ranks, o.num_nvl_bytes, o.device, o.num_rdma_bytes, o.low_latency_mode};
}

bool runs(LowLatencyPhase phase, LowLatencyPhase part) {
  return (static_cast<uint8_t>(phase) & static_cast<uint8_t>(part)) != 0;
}

}  // namespace

LowLatencyOps::LowLatencyOps(Buffer& buffer, bool allow_nvlink, int num_sms, bool enable_shrink)
    : s_(std::make_unique<State>(buffer.impl(), allow_nvlink)) {
  Buffer::Impl& b = s_->b;
  UCCL_EP_CHECK_VALUE(b.options.low_latency_mode,
                      "the low-latency mode needs a Buffer built with low_latency_mode=True");
  UCCL_EP_CHECK_VALUE(b.rdma != nullptr && b.options.num_rdma_bytes > 0,
                      "the low-latency mode needs num_rdma_bytes > 0 "
                      "(Buffer.get_low_latency_rdma_size_hint)");
  UCCL_EP_CHECK_VALUE(!b.rdma->host_queues(), "the low-latency mode needs GPU command queues");
  UCCL_EP_CHECK_VALUE(num_sms >= 0, "num_sms=", num_sms,
                      " must be >= 0 (0: every SM of the device)");
  b.require_ready("low-latency mode");
  runtime::DeviceGuard guard(b.options.device);
  int device_sms = 0;
  UCCL_EP_CUDA_CHECK(
      cudaDeviceGetAttribute(&device_sms, cudaDevAttrMultiProcessorCount, b.options.device));
  s_->num_sms = num_sms == 0 || num_sms > device_sms ? device_sms : num_sms;
  // Every kernel a call launches is loaded now, before any of them spins on a peer.
  ll::preload_dispatch();
  ll::preload_combine();
  kernels::rdma::preload_barrier();
  ll::preload_mask();
  if (enable_shrink) {
    const size_t bytes = static_cast<size_t>(b.options.num_ranks) * sizeof(int32_t);
    UCCL_EP_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&s_->mask), bytes));
    UCCL_EP_CUDA_CHECK(cudaMemset(s_->mask, 0, bytes));
  }
  UCCL_EP_CUDA_CHECK(
      cudaMalloc(reinterpret_cast<void**>(&s_->sequence), sizeof(ll::SequenceState)));
  UCCL_EP_CUDA_CHECK(cudaMemset(s_->sequence, 0, sizeof(ll::SequenceState)));
  const std::vector<queue::QueueDeviceHandle> handles = b.rdma->device_handles();
  s_->num_queues = static_cast<int>(handles.size());
  UCCL_EP_CHECK_VALUE(s_->num_queues > 0, "the RDMA domain has no command queues");
  UCCL_EP_CUDA_CHECK(
      cudaMalloc(reinterpret_cast<void**>(&s_->queues), handles.size() * sizeof(handles[0])));
  UCCL_EP_CUDA_CHECK(cudaMemcpy(s_->queues, handles.data(), handles.size() * sizeof(handles[0]),
                                cudaMemcpyHostToDevice));
  // The signals of both halves start at zero, as the sequence state does.
  UCCL_EP_CUDA_CHECK(cudaDeviceSynchronize());
}

LowLatencyOps::~LowLatencyOps() = default;

bool LowLatencyOps::peer_is_direct(int rank) const {
  return s_->peers(LowLatencyLayout{}).direct_buffer(rank) != nullptr;
}

namespace {

ll::DispatchArgs dispatch_args(const LowLatencyDispatchTensors& t, const ll::Peers& peers,
                               int half) {
  ll::DispatchArgs a{};
  a.p = peers;
  a.half = half;
  a.x = static_cast<const uint16_t*>(t.x.data);
  a.topk_idx = t.topk_idx.ptr<int64_t>();
  a.num_tokens = static_cast<int>(t.x.size(0));
  a.num_topk = static_cast<int>(t.topk_idx.size(1));
  a.use_fp8 = t.use_fp8;
  a.round_scale = t.round_scale;
  a.use_ue8m0 = t.use_ue8m0;
  a.cumulative_stats = ptr_or_null<int>(t.cumulative_local_expert_recv_stats);
  a.wait_stats = ptr_or_null<int64_t>(t.dispatch_wait_recv_cost_stats);
  a.recv_x = static_cast<uint8_t*>(t.recv_x.data);
  a.recv_scales = t.use_fp8 ? t.recv_x_scales.data : nullptr;
  a.recv_count = t.recv_count.ptr<int>();
  a.recv_src_info = t.recv_src_info.ptr<int>();
  a.recv_layout_range = t.recv_layout_range.ptr<int64_t>();
  a.outputs.count = 0;
  a.outputs.add(t.recv_x.data, t.recv_x.nbytes());
  if (t.use_fp8) a.outputs.add(t.recv_x_scales.data, t.recv_x_scales.nbytes());
  a.outputs.add(t.recv_count.data, t.recv_count.nbytes(), device::kZeroByte);
  a.outputs.add(t.recv_src_info.data, t.recv_src_info.nbytes());
  a.outputs.add(t.recv_layout_range.data, t.recv_layout_range.nbytes());
  return a;
}

ll::CombineArgs combine_args(const LowLatencyCombineTensors& t, const ll::Peers& peers, int half) {
  ll::CombineArgs a{};
  a.p = peers;
  a.half = half;
  a.x = t.zero_copy ? nullptr : static_cast<const uint16_t*>(t.x.data);
  a.topk_idx = t.topk_idx.ptr<int64_t>();
  a.topk_weights = t.topk_weights.ptr<float>();
  a.layout_range = t.layout_range.ptr<int64_t>();
  a.num_tokens = static_cast<int>(t.topk_idx.size(0));
  a.num_topk = static_cast<int>(t.topk_idx.size(1));
  a.zero_copy = t.zero_copy;
  a.use_logfmt = t.use_logfmt;
  a.wait_stats = ptr_or_null<int64_t>(t.combine_wait_recv_cost_stats);
  a.combined_x = static_cast<uint16_t*>(t.combined_x.data);
  a.outputs.count = 0;
  a.outputs.add(t.combined_x.data, t.combined_x.nbytes());
  return a;
}

}  // namespace

int LowLatencyOps::dispatch(const LowLatencyDispatchTensors& t, LowLatencyPhase phase,
                            cudaStream_t stream) {
  State& s = *s_;
  validate_low_latency_dispatch(info_of(s.b), t);
  s.b.require_ready("low_latency_dispatch");
  const auto layout = s.layout(t.num_max_dispatch_tokens_per_rank, static_cast<int>(t.x.size(1)),
                               t.num_experts, "low_latency_dispatch");
  s.check_topk(static_cast<int>(t.x.size(0)), static_cast<int>(t.topk_idx.size(1)),
               "low_latency_dispatch");
  const int half = s.take_half();
  runtime::DeviceGuard guard(s.b.options.device);
  const ll::DispatchArgs a = dispatch_args(t, s.peers(layout), half);
  if (runs(phase, LowLatencyPhase::kSend)) ll::launch_dispatch_send(a, s.num_sms, stream);
  if (runs(phase, LowLatencyPhase::kRecv)) ll::launch_dispatch_recv(a, s.num_sms, stream);
  return half;
}

void LowLatencyOps::dispatch_recv(const LowLatencyDispatchTensors& t, int half,
                                  cudaStream_t stream) {
  State& s = *s_;
  UCCL_EP_CHECK_VALUE(half == 0 || half == 1, "half=", half, " must be 0 or 1");
  s.b.require_ready("low_latency_dispatch (receive hook)");
  const auto layout = s.layout(t.num_max_dispatch_tokens_per_rank, static_cast<int>(t.x.size(1)),
                               t.num_experts, "low_latency_dispatch");
  runtime::DeviceGuard guard(s.b.options.device);
  ll::launch_dispatch_recv(dispatch_args(t, s.peers(layout), half), s.num_sms, stream);
}

int LowLatencyOps::combine(const LowLatencyCombineTensors& t, LowLatencyPhase phase,
                           cudaStream_t stream) {
  State& s = *s_;
  validate_low_latency_combine(info_of(s.b), t);
  s.b.require_ready("low_latency_combine");
  const int hidden = static_cast<int>(t.combined_x.size(1));
  const auto layout =
      s.layout(t.num_max_dispatch_tokens_per_rank, hidden, t.num_experts, "low_latency_combine");
  s.check_topk(static_cast<int>(t.topk_idx.size(0)), static_cast<int>(t.topk_idx.size(1)),
               "low_latency_combine");
  const int half = s.take_half();
  runtime::DeviceGuard guard(s.b.options.device);
  const ll::CombineArgs a = combine_args(t, s.peers(layout), half);
  if (runs(phase, LowLatencyPhase::kSend)) ll::launch_combine_send(a, s.num_sms, stream);
  if (runs(phase, LowLatencyPhase::kRecv)) ll::launch_combine_recv(a, s.num_sms, stream);
  return half;
}

void LowLatencyOps::combine_recv(const LowLatencyCombineTensors& t, int half, cudaStream_t stream) {
  State& s = *s_;
  UCCL_EP_CHECK_VALUE(half == 0 || half == 1, "half=", half, " must be 0 or 1");
  s.b.require_ready("low_latency_combine (receive hook)");
  const auto layout =
      s.layout(t.num_max_dispatch_tokens_per_rank, static_cast<int>(t.combined_x.size(1)),
               t.num_experts, "low_latency_combine");
  runtime::DeviceGuard guard(s.b.options.device);
  ll::launch_combine_recv(combine_args(t, s.peers(layout), half), s.num_sms, stream);
}

void LowLatencyOps::clean(int num_max_dispatch_tokens_per_rank, int hidden, int num_experts,
                          cudaStream_t stream) {
  State& s = *s_;
  s.b.require_ready("clean_low_latency_buffer");
  UCCL_EP_CHECK_VALUE(
      num_max_dispatch_tokens_per_rank >= 1 && hidden >= 128 && hidden % 128 == 0 &&
          num_experts >= s.b.options.num_ranks && num_experts % s.b.options.num_ranks == 0,
      "clean_low_latency_buffer: num_max_dispatch_tokens_per_rank=",
      num_max_dispatch_tokens_per_rank, ", hidden=", hidden, ", num_experts=", num_experts,
      " (need >= 1, a multiple of 128, a multiple of num_ranks)");
  const auto layout =
      s.layout(num_max_dispatch_tokens_per_rank, hidden, num_experts, "clean_low_latency_buffer");
  runtime::DeviceGuard guard(s.b.options.device);
  s.b.rdma->barrier(s.b.diag(), stream);
  ll::launch_clean({s.peers(layout)}, stream);
  s.b.rdma->barrier(s.b.diag(), stream);
  s.next_half = 0;
}

TensorView LowLatencyOps::next_combine_buffer(int num_max_dispatch_tokens_per_rank, int hidden,
                                              int num_experts) const {
  const State& s = *s_;
  const auto layout =
      s.layout(num_max_dispatch_tokens_per_rank, hidden, num_experts, "next_combine_buffer");
  TensorView v;
  v.data = static_cast<uint8_t*>(s.b.rdma_buffer.data()) + layout.send_offset(s.next_half);
  v.dtype = DType::kBFloat16;
  v.ndim = 3;
  const int64_t rows = layout.num_ranks * layout.T, row_elems = layout.combine_message / 2;
  v.shape[0] = layout.local_experts();
  v.shape[1] = rows;
  v.shape[2] = hidden;
  v.strides[0] = rows * row_elems;
  v.strides[1] = row_elems;
  v.strides[2] = 1;
  v.device = DeviceKind::kCUDA;  // device memory, or the device alias of pinned host memory
  v.device_index = s.b.options.device;
  return v;
}

void LowLatencyOps::update_mask(int rank, bool masked, cudaStream_t stream) {
  State& s = *s_;
  int32_t* mask = s.require_mask("low_latency_update_mask_buffer");
  UCCL_EP_CHECK_VALUE(rank >= 0 && rank < s.b.options.num_ranks,
                      "low_latency_update_mask_buffer: rank_to_mask=", rank,
                      " must be in [0, num_ranks=", s.b.options.num_ranks, ")");
  runtime::DeviceGuard guard(s.b.options.device);
  ll::launch_set_mask(mask, rank, masked, stream);
}

void LowLatencyOps::query_mask(const TensorView& out, cudaStream_t stream) const {
  const State& s = *s_;
  const int32_t* mask = s.require_mask("low_latency_query_mask_buffer");
  const int num_ranks = s.b.options.num_ranks;
  UCCL_EP_CHECK_TYPE(out.defined() && out.dtype == DType::kInt32,
                     "low_latency_query_mask_buffer: mask_status must be an int32 tensor");
  UCCL_EP_CHECK_VALUE(out.ndim == 1 && out.shape[0] == num_ranks && out.strides[0] == 1,
                      "low_latency_query_mask_buffer: mask_status must be a contiguous [",
                      num_ranks, "] tensor (one entry per rank)");
  UCCL_EP_CHECK_VALUE(
      out.device == DeviceKind::kCUDA && out.device_index == s.b.options.device,
      "low_latency_query_mask_buffer: mask_status must be on the Buffer's device cuda:",
      s.b.options.device);
  runtime::DeviceGuard guard(s.b.options.device);
  ll::launch_copy_mask(mask, num_ranks, out.ptr<int32_t>(), stream);
}

void LowLatencyOps::clean_mask(cudaStream_t stream) {
  State& s = *s_;
  int32_t* mask = s.require_mask("low_latency_clean_mask_buffer");
  runtime::DeviceGuard guard(s.b.options.device);
  ll::launch_clear_mask(mask, s.b.options.num_ranks, stream);
}

}  // namespace uccl::ep
