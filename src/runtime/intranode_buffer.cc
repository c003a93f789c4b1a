// IntranodeBuffer: owns one rank's NVLink buffer, maps the peers' buffers and orchestrates the
// layout, notify, dispatch and combine kernels.
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "common/cuda_check.h"
#include "common/env.h"
#include "common/log.h"
#include "kernels/intranode/launch.h"
#include "kernels/layout/launch.h"
#include "runtime/error_report.h"
#include "runtime/host_memory.h"
#include "runtime/validate.h"
#include "uccl_ep/intranode.h"

namespace uccl::ep {

using kernels::intranode::PeerPointers;
using protocol::HostErrorRecord;
using protocol::HostNotifyResult;

struct IntranodeBuffer::Impl {
  BufferInfo info;
  EnvSettings env;
  uint8_t* local = nullptr;  // this rank's allocation (ring storage, then ControlBlock)
  PeerPointers peers{};
  std::vector<uint8_t*> opened;  // peer allocations opened through IPC
  runtime::MappedHost<HostErrorRecord> error;
  runtime::MappedHost<HostNotifyResult> notify;
  int32_t notify_seq = 0;
  cudaEvent_t order_event = nullptr;  // stream_wait's event
  bool available = false;
  bool destroyed = false;
  std::string host_failure;  // set when a host-side wait gave up

  device::DeviceDiag diag() const {
    return {error.device(),
            &reinterpret_cast<protocol::ControlBlock*>(local +
                                                       protocol::control_offset(info.num_nvl_bytes))
                 ->abort_flag,
            static_cast<uint64_t>(env.timeout_secs * 1e9), info.rank};
  }
  void require_ready(const char* op) const;
  NotifyResult wait_for_counts(int32_t seq, int num_local_experts);
};

namespace {

void fill_layout(kernels::layout::LayoutArgs& a, const LayoutTensors& t, int num_ranks) {
  a.topk_idx = t.topk_idx.ptr<const int64_t>();
  a.num_tokens = static_cast<int>(t.topk_idx.size(0));
  a.num_topk = static_cast<int>(t.topk_idx.size(1));
  a.num_ranks = num_ranks;
  a.num_experts = t.num_experts;
  a.ranks_per_node = protocol::kMaxNvlPeers;
  a.num_tokens_per_rank = t.num_tokens_per_rank.ptr<int32_t>();
  a.num_tokens_per_node =
      t.num_tokens_per_rdma_rank.defined() ? t.num_tokens_per_rdma_rank.ptr<int32_t>() : nullptr;
  a.num_tokens_per_expert = t.num_tokens_per_expert.ptr<int32_t>();
  a.is_token_in_rank = t.is_token_in_rank.ptr<bool>();
}

template <typename T>
T* ptr_or_null(const TensorView& t) {
  return t.defined() ? t.ptr<T>() : nullptr;
}

}  // namespace

void IntranodeBuffer::Impl::require_ready(const char* op) const {
  UCCL_EP_CHECK_RUNTIME(!destroyed, op, ": the Buffer was destroyed");
  UCCL_EP_CHECK_RUNTIME(available, op, ": the Buffer is not connected to its peers yet");
  UCCL_EP_CHECK_RUNTIME(host_failure.empty(), host_failure);
  const auto flag = std::atomic_ref<int32_t>(error.host()->flag).load(std::memory_order_acquire);
  if (flag != 0) {
    HostErrorRecord record;
    std::memcpy(&record, error.host(), sizeof(record));
    throw_error(ErrorKind::kTimeout, runtime::describe_timeout(record, env.timeout_secs));
  }
}

NotifyResult IntranodeBuffer::Impl::wait_for_counts(int32_t seq, int num_local_experts) {
  HostNotifyResult* r = notify.host();
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration<double>(env.timeout_secs);
  for (uint64_t iter = 0;; ++iter) {
    if (std::atomic_ref<int32_t>(r->seq).load(std::memory_order_acquire) == seq) break;
    if ((iter & 1023) == 0) {
      require_ready("dispatch");  // a GPU wait that timed out explains the missing counts
      if (std::chrono::steady_clock::now() > deadline) {
        host_failure = str_cat(
            "uccl-ep: rank ", info.rank, " timed out after ", env.timeout_secs,
            " s in dispatch waiting for the received-token counts of all peers (notify sequence ",
            seq, ", last seen ", std::atomic_ref<int32_t>(r->seq).load(),
            "). The Buffer refuses "
            "further work (UCCL_EP_TIMEOUT_SECS=",
            env.timeout_secs, ")");
        throw_error(ErrorKind::kTimeout, host_failure);
      }
      if (iter > (1u << 16)) std::this_thread::yield();
    }
  }
  NotifyResult out;
  out.num_recv_tokens = std::atomic_ref<int32_t>(r->num_recv_tokens).load();
  out.num_recv_tokens_per_expert.resize(num_local_experts);
  for (int e = 0; e < num_local_experts; ++e)
    out.num_recv_tokens_per_expert[e] =
        std::atomic_ref<int32_t>(r->num_recv_tokens_per_expert[e]).load();
  return out;
}

IntranodeBuffer::IntranodeBuffer(int rank, int num_ranks, int64_t num_nvl_bytes, int device_index)
    : impl_(std::make_unique<Impl>()) {
  runtime::validate_buffer_args(rank, num_ranks, num_nvl_bytes);
  impl_->info = {rank, num_ranks, num_nvl_bytes, device_index};
  impl_->env = read_env_settings();
  set_log_level(impl_->env.log_level);
  runtime::DeviceGuard guard(device_index);
  const int64_t bytes = protocol::allocation_bytes(num_nvl_bytes);
  UCCL_EP_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&impl_->local), bytes));
  UCCL_EP_CUDA_CHECK(cudaMemset(impl_->local, 0, bytes));
  impl_->error.allocate();
  impl_->notify.allocate();
  UCCL_EP_CUDA_CHECK(cudaEventCreateWithFlags(&impl_->order_event, cudaEventDisableTiming));
  UCCL_EP_CUDA_CHECK(cudaDeviceSynchronize());
  log_message(LogLevel::kInfo, str_cat("rank ", rank, ": allocated ", bytes,
                                       " bytes of NVLink buffer on cuda:", device_index));
}

IntranodeBuffer::~IntranodeBuffer() {
  try {
    destroy();
  } catch (const std::exception& e) {
    log_message(LogLevel::kError, str_cat("destroying the Buffer failed: ", e.what()));
  }
}

const BufferInfo& IntranodeBuffer::info() const {
  return impl_->info;
}

std::vector<uint8_t> IntranodeBuffer::ipc_handle() const {
  UCCL_EP_CHECK_RUNTIME(!impl_->destroyed, "ipc_handle: the Buffer was destroyed");
  runtime::DeviceGuard guard(impl_->info.device_index);
  cudaIpcMemHandle_t handle;
  UCCL_EP_CUDA_CHECK(cudaIpcGetMemHandle(&handle, impl_->local));
  const auto* p = reinterpret_cast<const uint8_t*>(&handle);
  return std::vector<uint8_t>(p, p + sizeof(handle));
}

void IntranodeBuffer::connect(const std::vector<std::vector<uint8_t>>& handles) {
  Impl& s = *impl_;
  UCCL_EP_CHECK_RUNTIME(!s.destroyed && !s.available, "connect: the Buffer is ",
                        s.destroyed ? "destroyed" : "already connected");
  UCCL_EP_CHECK_VALUE(static_cast<int>(handles.size()) == s.info.num_ranks, "connect: got ",
                      handles.size(), " IPC handles for ", s.info.num_ranks, " ranks");
  runtime::DeviceGuard guard(s.info.device_index);
  const int64_t ctrl = protocol::control_offset(s.info.num_nvl_bytes);
  for (int r = 0; r < s.info.num_ranks; ++r) {
    uint8_t* base = s.local;
    if (r != s.info.rank) {
      UCCL_EP_CHECK_VALUE(handles[r].size() == sizeof(cudaIpcMemHandle_t),
                          "connect: IPC handle of rank ", r, " has ", handles[r].size(),
                          " bytes, expected ", sizeof(cudaIpcMemHandle_t));
      cudaIpcMemHandle_t h;
      std::memcpy(&h, handles[r].data(), sizeof(h));
      void* p = nullptr;
      const cudaError_t err = cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess);
      UCCL_EP_CHECK_RUNTIME(
          err == cudaSuccess, "rank ", s.info.rank, ": cannot map the NVLink buffer of rank ", r,
          " (", cudaGetErrorString(err), "); all ranks must be GPUs of one host with peer access");
      base = static_cast<uint8_t*>(p);
      s.opened.push_back(base);
    }
    s.peers.rings[r] = base;
    s.peers.ctrl[r] = reinterpret_cast<protocol::ControlBlock*>(base + ctrl);
  }
  s.available = true;
}

bool IntranodeBuffer::is_available() const {
  return impl_->available && !impl_->destroyed;
}

void IntranodeBuffer::get_dispatch_layout(const LayoutTensors& t, cudaStream_t stream) {
  impl_->require_ready("get_dispatch_layout");
  runtime::validate_layout(impl_->info, t);
  runtime::DeviceGuard guard(impl_->info.device_index);
  kernels::layout::LayoutArgs a{};
  fill_layout(a, t, impl_->info.num_ranks);
  kernels::layout::launch_dispatch_layout(a, stream);
}

NotifyResult IntranodeBuffer::notify_dispatch(const NotifyTensors& t, cudaStream_t stream) {
  Impl& s = *impl_;
  s.require_ready("dispatch");
  runtime::validate_notify(s.info, t);
  runtime::DeviceGuard guard(s.info.device_index);
  const int num_experts = static_cast<int>(t.num_tokens_per_expert.size(0));
  const DispatchTensors& d = t.dispatch;
  kernels::intranode::NotifyArgs a{};
  a.peers = s.peers;
  a.rank = s.info.rank;
  a.num_ranks = s.info.num_ranks;
  a.num_tokens_per_rank = t.num_tokens_per_rank.ptr<const int32_t>();
  a.num_tokens_per_expert = t.num_tokens_per_expert.ptr<const int32_t>();
  a.is_token_in_rank = d.is_token_in_rank.ptr<const bool>();
  a.num_tokens = static_cast<int>(d.is_token_in_rank.size(0));
  a.num_experts = num_experts;
  a.num_channels = d.config.num_channels();
  a.expert_alignment = t.expert_alignment;
  a.rank_prefix_matrix = d.rank_prefix_matrix.ptr<int32_t>();
  a.channel_prefix_matrix = d.channel_prefix_matrix.ptr<int32_t>();
  a.host_result = t.wait_for_counts ? s.notify.device() : nullptr;
  a.seq = ++s.notify_seq;
  a.diag = s.diag();
  kernels::intranode::launch_notify(a, stream);
  if (!t.wait_for_counts) return {};
  return s.wait_for_counts(a.seq, num_experts / s.info.num_ranks);
}

void IntranodeBuffer::dispatch(const DispatchTensors& t, cudaStream_t stream) {
  Impl& s = *impl_;
  s.require_ready("dispatch");
  runtime::validate_dispatch(s.info, t);
  runtime::DeviceGuard guard(s.info.device_index);
  const int r = s.info.num_ranks;
  kernels::intranode::DispatchArgs a{};
  a.peers = s.peers;
  a.rank = s.info.rank;
  a.num_ranks = r;
  a.x = t.x.ptr<const uint8_t>();
  a.hidden_bytes = t.x.size(1) * dtype_size(t.x.dtype);
  a.num_tokens = static_cast<int>(t.x.size(0));
  a.x_scales = ptr_or_null<const int32_t>(t.x_scales);
  a.num_scales = t.x_scales.defined() ? static_cast<int>(t.x_scales.size(1)) : 0;
  a.scale_token_stride = t.x_scales.defined() ? t.x_scales.stride(0) : 0;
  a.scale_hidden_stride = t.x_scales.defined() ? t.x_scales.stride(1) : 0;
  a.topk_idx = ptr_or_null<const int64_t>(t.topk_idx);
  a.topk_weights = ptr_or_null<const float>(t.topk_weights);
  a.num_topk = t.topk_idx.defined() ? static_cast<int>(t.topk_idx.size(1)) : 0;
  a.num_local_experts = t.cached ? 0 : t.num_experts / r;
  a.is_token_in_rank = t.is_token_in_rank.ptr<const bool>();
  a.channel_prefix_matrix = t.channel_prefix_matrix.ptr<const int32_t>();
  a.rank_prefix_matrix = t.rank_prefix_matrix.ptr<const int32_t>();
  a.recv_x = t.recv_x.ptr<uint8_t>();
  a.num_recv_rows = t.recv_x.size(0);
  a.recv_x_scales = ptr_or_null<int32_t>(t.recv_x_scales);
  a.recv_src_idx = ptr_or_null<int32_t>(t.recv_src_idx);
  a.recv_topk_idx = ptr_or_null<int64_t>(t.recv_topk_idx);
  a.recv_topk_weights = ptr_or_null<float>(t.recv_topk_weights);
  a.recv_channel_prefix_matrix = ptr_or_null<int32_t>(t.recv_channel_prefix_matrix);
  a.send_head = ptr_or_null<int32_t>(t.send_head);
  a.num_channels = t.config.num_channels();
  a.max_send_tokens = t.config.num_max_nvl_chunked_send_tokens();
  a.slot = protocol::DispatchSlot::make(a.hidden_bytes, a.num_scales, a.num_topk);
  a.rings = {a.num_channels, r, t.config.num_max_nvl_chunked_recv_tokens(), a.slot.x_bytes,
             a.slot.meta_bytes};
  a.diag = s.diag();
  if (t.cached) kernels::intranode::launch_barrier({s.peers, a.rank, r, true, a.diag}, stream);
  if (t.num_worst_tokens > 0 && t.recv_topk_idx.numel() > 0)
    UCCL_EP_CUDA_CHECK(cudaMemsetAsync(a.recv_topk_idx, 0xff, t.recv_topk_idx.nbytes(), stream));
  kernels::intranode::launch_dispatch(a, stream);
}

void IntranodeBuffer::combine(const CombineTensors& t, cudaStream_t stream) {
  Impl& s = *impl_;
  s.require_ready("combine");
  runtime::validate_combine(s.info, t);
  runtime::DeviceGuard guard(s.info.device_index);
  const int r = s.info.num_ranks;
  kernels::intranode::CombineArgs a{};
  a.peers = s.peers;
  a.rank = s.info.rank;
  a.num_ranks = r;
  a.x = t.x.ptr<const uint8_t>();
  a.hidden_bytes = t.x.size(1) * 2;
  a.topk_weights = ptr_or_null<const float>(t.topk_weights);
  a.num_topk = t.topk_weights.defined() ? static_cast<int>(t.topk_weights.size(1)) : 0;
  a.bias0 = ptr_or_null<const uint8_t>(t.bias0);
  a.bias1 = ptr_or_null<const uint8_t>(t.bias1);
  a.rank_prefix_matrix = t.rank_prefix_matrix.ptr<const int32_t>();
  a.recv_channel_prefix_matrix = t.recv_channel_prefix_matrix.ptr<const int32_t>();
  a.send_head = t.send_head.ptr<const int32_t>();
  a.num_tokens = static_cast<int>(t.is_token_in_rank.size(0));
  a.combined_x = t.combined_x.ptr<uint8_t>();
  a.combined_topk_weights = ptr_or_null<float>(t.combined_topk_weights);
  a.num_channels = t.config.num_channels();
  a.max_send_tokens = t.config.num_max_nvl_chunked_send_tokens();
  a.tail_share = s.env.combine_tail_share;
  a.slot = protocol::CombineSlot::make(a.hidden_bytes, a.num_topk);
  a.rings = {a.num_channels, r, t.config.num_max_nvl_chunked_recv_tokens(), a.slot.x_bytes,
             a.slot.meta_bytes};
  a.diag = s.diag();
  kernels::intranode::launch_barrier({s.peers, a.rank, r, true, a.diag}, stream);
  kernels::intranode::launch_combine(a, stream);
}

void IntranodeBuffer::stream_wait(cudaStream_t waiter, cudaStream_t waitee) {
  UCCL_EP_CHECK_RUNTIME(!impl_->destroyed, "stream_wait: the Buffer was destroyed");
  if (waiter == waitee) return;
  runtime::DeviceGuard guard(impl_->info.device_index);
  UCCL_EP_CUDA_CHECK(cudaEventRecord(impl_->order_event, waitee));
  UCCL_EP_CUDA_CHECK(cudaStreamWaitEvent(waiter, impl_->order_event, 0));
}

void IntranodeBuffer::stream_wait_event(cudaStream_t waiter, cudaEvent_t event) {
  UCCL_EP_CHECK_RUNTIME(!impl_->destroyed, "stream_wait_event: the Buffer was destroyed");
  if (event == nullptr) return;
  runtime::DeviceGuard guard(impl_->info.device_index);
  UCCL_EP_CUDA_CHECK(cudaStreamWaitEvent(waiter, event, 0));
}

void IntranodeBuffer::check_healthy() const {
  impl_->require_ready("check");
}

void IntranodeBuffer::destroy() {
  Impl& s = *impl_;
  if (s.destroyed) return;
  s.destroyed = true;
  s.available = false;
  runtime::DeviceGuard guard(s.info.device_index);
  const cudaError_t sync = cudaDeviceSynchronize();
  if (sync != cudaSuccess)
    log_message(LogLevel::kError, str_cat("rank ", s.info.rank, ": device synchronize in destroy: ",
                                          cudaGetErrorString(sync)));
  for (uint8_t* p : s.opened) cudaIpcCloseMemHandle(p);
  s.opened.clear();
  if (s.local != nullptr) cudaFree(s.local);
  s.local = nullptr;
  if (s.order_event != nullptr) cudaEventDestroy(s.order_event);
  s.order_event = nullptr;
  s.error.release();
  s.notify.release();
}

void* IntranodeBuffer::local_buffer() const {
  UCCL_EP_CHECK_RUNTIME(!impl_->destroyed, "the Buffer was destroyed");
  return impl_->local;
}

int64_t IntranodeBuffer::num_nvl_bytes() const {
  return impl_->info.num_nvl_bytes;
}

}  // namespace uccl::ep
