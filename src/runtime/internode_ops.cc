// InternodeOps: the internode normal mode's notify, dispatch and combine on a Buffer whose ranks
// span several NVLink domains (network stage through the CPU proxies, forwarding over NVLink).
#include <atomic>

#include "common/cuda_check.h"
#include "common/error.h"
#include "kernels/internode/args.h"
#include "kernels/rdma/launch.h"
#include "runtime/buffer_impl.h"
#include "runtime/kernel_args.h"
#include "uccl_ep/internode.h"

namespace uccl::ep {

using runtime::ptr_or_null;

namespace in = kernels::internode;
using protocol::InternodeHostResult;
using protocol::InternodeNvlLayout;
using protocol::InternodeRdmaLayout;

namespace {

/// The handle fields the internode dispatch and combine kernels both read.
template <typename Args>
void fill_handle_inputs(Args& a, const InternodeHandle& h) {
  a.rdma_channel_prefix_matrix = h.rdma_channel_prefix_matrix.ptr<const int32_t>();
  a.recv_rdma_channel_prefix_matrix = h.recv_rdma_channel_prefix_matrix.ptr<const int32_t>();
  a.recv_rdma_rank_prefix_sum = h.recv_rdma_rank_prefix_sum.ptr<const int32_t>();
  a.recv_gbl_channel_prefix_matrix = h.recv_gbl_channel_prefix_matrix.ptr<const int32_t>();
  a.recv_gbl_rank_prefix_sum = h.recv_gbl_rank_prefix_sum.ptr<const int32_t>();
  a.send_rdma_head = h.send_rdma_head.ptr<const int32_t>();
}

int64_t dispatch_slot_bytes(int64_t hidden_bytes, int num_scales, int num_topk) {
  return protocol::InternodeDispatchSlot::make(hidden_bytes, num_scales, num_topk).bytes;
}

/// The slots of both kinds of call: dispatch rows are hidden_bytes of x (at most BF16's),
/// combine rows BF16 of the same hidden size.
int64_t ring_slot_bytes(int64_t hidden_bytes, int num_scales, int num_topk) {
  const int64_t d = dispatch_slot_bytes(hidden_bytes, num_scales, num_topk);
  const int64_t c = protocol::InternodeCombineSlot::make(hidden_bytes, num_topk).bytes;
  return d > c ? d : c;
}

InternodeRdmaLayout rdma_layout(const Config& config, int num_ranks, int num_local_ranks,
                                int64_t slot_bytes, int64_t num_user_slots) {
  const int num_nodes = num_ranks / num_local_ranks;
  const int chunk = config.num_max_rdma_chunked_send_tokens();
  const int wanted = config.num_max_rdma_chunked_recv_tokens() / chunk;
  const int signal_window = protocol::internode_signal_window(num_nodes, num_user_slots);
  const int window = wanted < signal_window ? wanted : signal_window;
  return {num_ranks, num_nodes, config.num_channels(), chunk, window, signal_window, slot_bytes};
}

}  // namespace

int64_t internode_rdma_bytes(const Config& config, int num_ranks, int num_local_ranks,
                             int64_t hidden_bytes, int num_scales, int num_topk) {
  UCCL_EP_CHECK_VALUE(num_local_ranks > 0 && num_ranks % num_local_ranks == 0,
                      "internode_rdma_bytes: num_local_ranks=", num_local_ranks,
                      " must divide num_ranks=", num_ranks);
  // Sized for the window the configuration asks for (the signal region may cap it lower).
  const int64_t slot = ring_slot_bytes(hidden_bytes, num_scales, num_topk);
  InternodeRdmaLayout l = rdma_layout(config, num_ranks, num_local_ranks, slot, 0);
  l.window = config.num_max_rdma_chunked_recv_tokens() / l.chunk;
  return l.total_bytes();
}

int64_t internode_nvl_bytes(const Config& config, int num_local_ranks, int64_t hidden_bytes,
                            int num_scales, int num_topk) {
  const InternodeNvlLayout nvl{config.num_channels(), num_local_ranks,
                               config.num_max_nvl_chunked_recv_tokens(),
                               ring_slot_bytes(hidden_bytes, num_scales, num_topk)};
  return nvl.total_bytes();
}

struct InternodeOps::State {
  Buffer& buffer;
  Buffer::Impl& b;
  runtime::MappedHost<InternodeHostResult> notify;
  int64_t notify_seq = 0;
  protocol::InternodeState* state = nullptr;   // device memory
  queue::QueueDeviceHandle* queues = nullptr;  // device memory
  int num_queues = 0;

  explicit State(Buffer& buf) : buffer(buf), b(buf.impl()) {}
  ~State() {
    if (state != nullptr) cudaFree(state);
    if (queues != nullptr) cudaFree(queues);
  }

  /// The peers and layouts of a call whose rows take `slot_bytes` per ring slot.
  in::InternodePeers peers(const Config& config, int64_t slot_bytes, const char* op) const {
    const Topology& topo = b.topology;
    in::InternodePeers p{};
    p.rdma = rdma_layout(config, b.options.num_ranks, topo.num_local_ranks, slot_bytes,
                         b.rdma->num_user_signal_slots());
    UCCL_EP_CHECK_VALUE(p.rdma.window >= 2, op, ": a ring of ", p.rdma.window,
                        " chunks (num_max_rdma_chunked_recv_tokens / num_max_rdma_chunked_send_"
                        "tokens, at most the ",
                        p.rdma.signal_window,
                        " chunk signals per stream the signal region holds for ", p.rdma.num_nodes,
                        " nodes); at least 2 are needed");
    UCCL_EP_CHECK_VALUE(p.rdma.chunk <= 64, op, ": num_max_rdma_chunked_send_tokens=", p.rdma.chunk,
                        " must be at most 64 in the internode mode");
    UCCL_EP_CHECK_VALUE(p.rdma.total_bytes() <= b.options.num_rdma_bytes, op, ": the call needs ",
                        p.rdma.total_bytes(), " bytes of RDMA buffer (", p.rdma.num_channels,
                        " channels x ", p.rdma.num_nodes, " nodes x 2 rings of ",
                        p.rdma.ring_slots(), " slots of ", slot_bytes,
                        " bytes), the Buffer has num_rdma_bytes=", b.options.num_rdma_bytes,
                        " (lower num_sms or num_max_rdma_chunked_recv_tokens, or use "
                        "Config.get_rdma_buffer_size_hint)");
    p.nvl = {config.num_channels(), topo.num_local_ranks, config.num_max_nvl_chunked_recv_tokens(),
             slot_bytes};
    UCCL_EP_CHECK_VALUE(
        p.nvl.total_bytes() <= b.options.num_nvl_bytes, op, ": the call needs ",
        p.nvl.total_bytes(),
        " bytes of NVLink buffer, the Buffer has num_nvl_bytes=", b.options.num_nvl_bytes,
        " (lower num_sms or num_max_nvl_chunked_recv_tokens, or use "
        "Config.get_nvl_buffer_size_hint)");
    p.rdma_local = static_cast<uint8_t*>(b.rdma_buffer.data());
    p.rdma_in_host_memory = !b.rdma_buffer.on_device();
    p.signals = b.rdma->device_signals();
    p.queues = queues;
    p.num_queues = num_queues;
    const kernels::nvl::NvlPeers& nvl = b.nvl->peers();
    for (int l = 0; l < topo.num_local_ranks; ++l) {
      p.nvl_data[l] = nvl.buffers[l];
      p.ctrl[l] = protocol::internode_control(nvl.ctrl[l]);
    }
    p.state = state;
    p.rank = b.options.rank;
    p.num_ranks = b.options.num_ranks;
    p.local_rank = topo.local_rank();
    p.num_local_ranks = topo.num_local_ranks;
    p.node = topo.node();
    p.num_nodes = topo.num_nodes();
    p.diag = b.diag();
    return p;
  }

  InternodeNotifyResult wait_for_counts(int64_t seq, int num_local_experts);
};

InternodeOps::InternodeOps(Buffer& buffer) : s_(std::make_unique<State>(buffer)) {
  Buffer::Impl& b = s_->b;
  b.require_ready("internode mode");
  const Topology& topo = b.topology;
  UCCL_EP_CHECK_VALUE(!topo.all_local(),
                      "the internode mode needs ranks on several NVLink "
                      "domains; all ",
                      b.options.num_ranks, " ranks share one (", topo.describe(),
                      "): use the intranode mode");
  UCCL_EP_CHECK_VALUE(
      b.rdma != nullptr && b.options.num_rdma_bytes > 0,
      "the internode mode needs num_rdma_bytes > 0 (Config.get_rdma_buffer_size_hint)");
  UCCL_EP_CHECK_VALUE(!b.rdma->host_queues(), "the internode mode needs GPU command queues");
  UCCL_EP_CHECK_VALUE(topo.num_local_ranks <= protocol::kMaxNvlPeers,
                      "the internode mode supports at most ", protocol::kMaxNvlPeers,
                      " ranks per node, got ", topo.num_local_ranks);
  UCCL_EP_CHECK_VALUE(topo.num_nodes() <= protocol::kMaxNodes &&
                          b.options.num_ranks <= protocol::kMaxInternodeRanks,
                      "the internode mode supports at most ", protocol::kMaxNodes, " nodes and ",
                      protocol::kMaxInternodeRanks, " ranks, got ", topo.num_nodes(), " and ",
                      b.options.num_ranks);
  runtime::DeviceGuard guard(b.options.device);
  in::preload_notify();
  in::preload_dispatch();
  in::preload_combine();
  kernels::rdma::preload_barrier();
  s_->notify.allocate();
  UCCL_EP_CUDA_CHECK(
      cudaMalloc(reinterpret_cast<void**>(&s_->state), sizeof(protocol::InternodeState)));
  UCCL_EP_CUDA_CHECK(cudaMemset(s_->state, 0, sizeof(protocol::InternodeState)));
  const std::vector<queue::QueueDeviceHandle> handles = b.rdma->device_handles();
  s_->num_queues = static_cast<int>(handles.size());
  UCCL_EP_CHECK_VALUE(s_->num_queues > 0, "the RDMA domain has no command queues");
  UCCL_EP_CUDA_CHECK(
      cudaMalloc(reinterpret_cast<void**>(&s_->queues), handles.size() * sizeof(handles[0])));
  UCCL_EP_CUDA_CHECK(cudaMemcpy(s_->queues, handles.data(), handles.size() * sizeof(handles[0]),
                                cudaMemcpyHostToDevice));
  UCCL_EP_CUDA_CHECK(cudaDeviceSynchronize());
}

InternodeOps::~InternodeOps() = default;

InternodeNotifyResult InternodeOps::State::wait_for_counts(int64_t seq, int num_local_experts) {
  InternodeHostResult* r = notify.host();
  b.health->wait_for_sequence(&r->seq, static_cast<int32_t>(seq), "the internode dispatch",
                              "the received-token counts of all peers (notify)");
  InternodeNotifyResult out;
  out.num_recv_tokens = std::atomic_ref<int32_t>(r->num_recv_tokens).load();
  out.num_rdma_recv_tokens = std::atomic_ref<int32_t>(r->num_rdma_recv_tokens).load();
  out.num_recv_tokens_per_expert.resize(num_local_experts);
  for (int e = 0; e < num_local_experts; ++e)
    out.num_recv_tokens_per_expert[e] =
        std::atomic_ref<int32_t>(r->num_recv_tokens_per_expert[e]).load();
  return out;
}

InternodeNotifyResult InternodeOps::notify_dispatch(const InternodeNotifyTensors& t,
                                                    cudaStream_t stream) {
  State& s = *s_;
  Buffer::Impl& b = s.b;
  b.require_ready("dispatch");
  validate_internode_notify(s.buffer.info(), t);
  runtime::DeviceGuard guard(b.options.device);
  const InternodeDispatchTensors& d = t.dispatch;
  const int num_experts = static_cast<int>(t.num_tokens_per_expert.size(0));
  const int64_t hidden_bytes = d.x.size(1) * dtype_size(d.x.dtype);
  const int num_scales = d.x_scales.defined() ? static_cast<int>(d.x_scales.size(1)) : 0;
  const int num_topk = d.topk_idx.defined() ? static_cast<int>(d.topk_idx.size(1)) : 0;
  const in::InternodePeers p =
      s.peers(d.config, ring_slot_bytes(hidden_bytes, num_scales, num_topk), "dispatch");
  UCCL_EP_CHECK_VALUE(num_experts / b.options.num_ranks <= protocol::kMaxLocalExperts,
                      "dispatch: ", num_experts / b.options.num_ranks,
                      " experts per rank; the internode mode supports at most ",
                      protocol::kMaxLocalExperts);
  const InternodeHandle& h = d.handle;
  in::NotifyCountArgs count{};
  count.p = p;
  count.is_token_in_rank = h.is_token_in_rank.ptr<const bool>();
  count.num_tokens = static_cast<int>(h.is_token_in_rank.size(0));
  count.num_channels = d.config.num_channels();
  count.gbl_channel_prefix_matrix = h.gbl_channel_prefix_matrix.ptr<int32_t>();
  count.rdma_channel_prefix_matrix = h.rdma_channel_prefix_matrix.ptr<int32_t>();
  count.send_rdma_head = h.send_rdma_head.ptr<int32_t>();
  count.outputs.add(count.send_rdma_head, h.send_rdma_head.nbytes());
  in::NotifyExchangeArgs ex{};
  ex.p = p;
  ex.num_tokens_per_rank = t.num_tokens_per_rank.ptr<const int32_t>();
  ex.num_tokens_per_rdma_rank = t.num_tokens_per_rdma_rank.ptr<const int32_t>();
  ex.num_tokens_per_expert = t.num_tokens_per_expert.ptr<const int32_t>();
  ex.num_experts = num_experts;
  ex.num_channels = count.num_channels;
  ex.expert_alignment = t.expert_alignment;
  ex.gbl_channel_prefix_matrix = count.gbl_channel_prefix_matrix;
  ex.rdma_channel_prefix_matrix = count.rdma_channel_prefix_matrix;
  ex.recv_rdma_channel_prefix_matrix = h.recv_rdma_channel_prefix_matrix.ptr<int32_t>();
  ex.recv_rdma_rank_prefix_sum = h.recv_rdma_rank_prefix_sum.ptr<int32_t>();
  ex.recv_gbl_channel_prefix_matrix = h.recv_gbl_channel_prefix_matrix.ptr<int32_t>();
  ex.recv_gbl_rank_prefix_sum = h.recv_gbl_rank_prefix_sum.ptr<int32_t>();
  ex.host_result = t.wait_for_counts ? s.notify.device() : nullptr;
  ex.seq = ++s.notify_seq;
  ex.diag = b.diag();
  for (const TensorView* v : {&h.gbl_channel_prefix_matrix, &h.rdma_channel_prefix_matrix,
                              &h.recv_rdma_channel_prefix_matrix, &h.recv_rdma_rank_prefix_sum,
                              &h.recv_gbl_channel_prefix_matrix, &h.recv_gbl_rank_prefix_sum})
    ex.outputs.add(v->data, v->nbytes());
  in::launch_notify(count, ex, stream);
  if (!t.wait_for_counts) return {};
  return s.wait_for_counts(ex.seq, num_experts / b.options.num_ranks);
}

void InternodeOps::dispatch(const InternodeDispatchTensors& t, cudaStream_t stream) {
  State& s = *s_;
  Buffer::Impl& b = s.b;
  b.require_ready("dispatch");
  validate_internode_dispatch(s.buffer.info(), t);
  runtime::DeviceGuard guard(b.options.device);
  const InternodeHandle& h = t.handle;
  in::DispatchArgs a{};
  runtime::fill_dispatch_inputs(a, t);
  a.num_experts = t.num_experts;
  a.p = s.peers(t.config, ring_slot_bytes(a.hidden_bytes, a.num_scales, a.num_topk), "dispatch");
  a.is_token_in_rank = h.is_token_in_rank.ptr<const bool>();
  fill_handle_inputs(a, h);
  a.recv_x = t.recv_x.ptr<uint8_t>();
  a.num_recv_rows = t.recv_x.size(0);
  a.recv_x_scales = ptr_or_null<int32_t>(t.recv_x_scales);
  a.recv_topk_idx = ptr_or_null<int64_t>(t.recv_topk_idx);
  a.recv_topk_weights = ptr_or_null<float>(t.recv_topk_weights);
  a.recv_src_meta = h.recv_src_meta.ptr<uint8_t>();
  a.send_nvl_head = h.send_nvl_head.ptr<int32_t>();
  a.num_nvl_head_rows = h.send_nvl_head.size(0);
  a.num_channels = t.config.num_channels();
  a.slot = protocol::InternodeDispatchSlot::make(a.hidden_bytes, a.num_scales, a.num_topk);
  a.outputs.add(a.recv_x, t.recv_x.nbytes());
  a.outputs.add(a.recv_x_scales, t.recv_x_scales.defined() ? t.recv_x_scales.nbytes() : 0);
  a.outputs.add(a.recv_topk_idx, t.recv_topk_idx.defined() ? t.recv_topk_idx.nbytes() : 0);
  a.outputs.add(a.recv_topk_weights,
                t.recv_topk_weights.defined() ? t.recv_topk_weights.nbytes() : 0);
  a.outputs.add(a.recv_src_meta, h.recv_src_meta.nbytes());
  a.outputs.add(a.send_nvl_head, h.send_nvl_head.nbytes());
  // A cached dispatch has no notify to separate it from the previous call on every rank.
  if (t.cached) b.rdma->barrier(b.diag(), stream);
  in::launch_dispatch(a, stream);
}

void InternodeOps::combine(const InternodeCombineTensors& t, cudaStream_t stream) {
  State& s = *s_;
  Buffer::Impl& b = s.b;
  b.require_ready("combine");
  validate_internode_combine(s.buffer.info(), t);
  runtime::DeviceGuard guard(b.options.device);
  const InternodeHandle& h = t.handle;
  in::CombineArgs a{};
  a.x = t.x.ptr<const uint8_t>();
  a.hidden_bytes = t.x.size(1) * 2;
  a.topk_weights = ptr_or_null<const float>(t.topk_weights);
  a.num_topk = t.topk_weights.defined() ? static_cast<int>(t.topk_weights.size(1)) : 0;
  a.p = s.peers(t.config, ring_slot_bytes(a.hidden_bytes, 0, a.num_topk), "combine");
  a.bias0 = ptr_or_null<const uint8_t>(t.bias0);
  a.bias1 = ptr_or_null<const uint8_t>(t.bias1);
  a.num_tokens = static_cast<int>(h.is_token_in_rank.size(0));
  fill_handle_inputs(a, h);
  a.send_nvl_head = h.send_nvl_head.ptr<const int32_t>();
  a.combined_x = t.combined_x.ptr<uint8_t>();
  a.combined_topk_weights = ptr_or_null<float>(t.combined_topk_weights);
  a.num_channels = t.config.num_channels();
  a.slot = protocol::InternodeCombineSlot::make(a.hidden_bytes, a.num_topk);
  a.outputs.add(a.combined_x, t.combined_x.nbytes());
  a.outputs.add(a.combined_topk_weights,
                t.combined_topk_weights.defined() ? t.combined_topk_weights.nbytes() : 0);
  b.rdma->barrier(b.diag(), stream);  // no rank still reads the rings of the previous call
  in::launch_combine(a, stream);
}

}  // namespace uccl::ep
