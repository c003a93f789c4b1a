// Internode dispatch: two blocks per channel c.
//   Block 2c:   network senders (warps [0, kSenderWarps)): per destination node n, the
//               channel's tokens that reach n, in token order, chunk by chunk into the send
//               ring (c, n) (the receive ring for the own node), one WRITE_SIGNAL per chunk;
//               NVLink receivers (warps kSenderWarps + l'): rows forwarded by local rank l',
//               written at recv_gbl_channel_prefix_matrix[s][c] + their rank in (s, c).
//   Block 2c+1: forwarders (warp d): each arrived chunk's rows that reach local rank d, into
//               the NVLink ring (c, this rank -> d); the last warp returns ring credits.
// Streams and counters: protocol/internode_layout.h.
#include "common/cuda_check.h"
#include "kernels/internode/common.cuh"

namespace uccl::ep::kernels::internode {

namespace {

constexpr int kSenderWarps = 12;
constexpr int kReceiverBase = kSenderWarps;  // + source local rank (L <= 8 warps)
constexpr int kCoordinatorWarp = kWarps - 1;

__device__ __forceinline__ uint8_t* rdma_at(const InternodePeers& p, int64_t offset) {
  return p.rdma_local + offset;
}

/// The warp writes token t into a dispatch slot: row, scales, top-k, source record.
__device__ void write_slot(const DispatchArgs& a, int t, int node, uint8_t* slot, int lane) {
  const auto& s = a.slot;
  warp_copy(slot, a.x + static_cast<int64_t>(t) * a.hidden_bytes, a.hidden_bytes, lane,
            [](const int4* q) { return device::ld_nc_v4(q); });
  auto* scales = reinterpret_cast<int32_t*>(slot + s.scales_offset);
  for (int j = lane; j < a.num_scales; j += 32)
    scales[j] = a.x_scales[t * a.scale_token_stride + j * a.scale_hidden_stride];
  if (a.topk_idx != nullptr) {
    auto* ids = reinterpret_cast<int32_t*>(slot + s.topk_idx_offset);
    auto* weights = reinterpret_cast<float*>(slot + s.topk_weights_offset);
    for (int k = lane; k < a.num_topk; k += 32) {
      const int64_t e = a.topk_idx[static_cast<int64_t>(t) * a.num_topk + k];
      ids[k] = e >= 0 && e < a.num_experts ? static_cast<int32_t>(e) : -1;
      weights[k] = a.topk_weights[static_cast<int64_t>(t) * a.num_topk + k];
    }
  }
  if (lane == 0) {
    const InternodePeers& p = a.p;
    const bool* row =
        a.is_token_in_rank + static_cast<int64_t>(t) * p.num_ranks + node * p.num_local_ranks;
    int bits = 0;
    for (int l = 0; l < p.num_local_ranks; ++l) bits |= row[l] ? 1 << l : 0;
    auto* meta = reinterpret_cast<int32_t*>(slot + s.meta_offset);
    meta[0] = p.node;
    meta[1] = bits;
  }
}

/// Network senders of channel c: warp group `group` of `group_warps` warps sends the streams to
/// nodes group, group + num_groups, ...
__device__ void run_senders(const DispatchArgs& a, int c, int warp, int lane) {
  const InternodePeers& p = a.p;
  const int N = p.num_nodes, K = p.rdma.chunk;
  const int group_warps = N >= kSenderWarps ? 1 : kSenderWarps / N;
  const int num_groups = kSenderWarps / group_warps;
  const int group = warp / group_warps, member = warp % group_warps;
  if (group >= num_groups) return;
  const auto range = protocol::channel_token_range(a.num_tokens, a.num_channels, c);
  const int barrier_id = 1 + group, barrier_threads = 32 * group_warps;
  __shared__ volatile int s_ok[kSenderWarps];
  for (int n = group; n < N; n += num_groups) {
    const int total = prefix_count(a.rdma_channel_prefix_matrix, a.num_channels, n, c);
    const int num_chunks = (total + K - 1) / K;
    const int64_t g0 = p.state->sent[kDispatchKind][c][n];
    const bool own = n == p.node;
    int cursor = range.begin;
    for (int i = 0; i < num_chunks; ++i) {
      const int64_t g = g0 + i;
      const int first = i * K, end = min(total, first + K);
      if (member == 0 && lane == 0) s_ok[group] = wait_credit(p, kDispatchKind, c, n, g);
      group_barrier(barrier_id, barrier_threads);
      if (!s_ok[group]) return;  // the whole group leaves together
      // Tokens with stream positions [first, end): this warp copies every group_warps-th.
      bool more = true;
      while (more && cursor < range.end) {
        const int t = cursor + lane;
        const int pos = t < range.end ? a.send_rdma_head[static_cast<int64_t>(t) * N + n] : -1;
        const uint32_t past = __ballot_sync(kFullMask, pos >= end);
        const int limit = past != 0 ? __ffs(past) - 1 : 32;  // lanes before the next chunk
        uint32_t mine = __ballot_sync(
            kFullMask, lane < limit && pos >= first && (pos - first) % group_warps == member);
        while (mine != 0) {
          const int src_lane = __ffs(mine) - 1;
          mine &= mine - 1;
          const int token = cursor + src_lane;
          const int position = __shfl_sync(kFullMask, pos, src_lane);
          const int64_t slot_index = g * K + (position - first);
          const int64_t offset =
              own ? p.rdma.recv_slot(c, n, slot_index) : p.rdma.send_slot(c, n, slot_index);
          write_slot(a, token, n, rdma_at(p, offset), lane);
        }
        if (past != 0) {
          cursor += limit;
          more = false;
        } else {
          cursor += 32;
        }
      }
      __threadfence_system();  // every writer's rows, before the leader announces them
      group_barrier(barrier_id, barrier_threads);
      if (member == 0 && lane == 0) send_chunk(p, kDispatchKind, c, n, g, end - first, 2 * c);
    }
    if (member == 0 && lane == 0) p.state->sent[kDispatchKind][c][n] = g0 + num_chunks;
  }
}

/// NVLink receiver of channel c for forwarder (local rank) `src_local`.
__device__ void run_receiver(const DispatchArgs& a, int c, int src_local, int lane) {
  const InternodePeers& p = a.p;
  const int L = p.num_local_ranks, N = p.num_nodes, me = p.local_rank;
  const int experts_per_rank = a.topk_idx != nullptr ? a.num_experts / p.num_ranks : 0;
  int total = 0;
  for (int m = 0; m < N; ++m)
    total += recv_count(a.recv_gbl_channel_prefix_matrix, a.recv_gbl_rank_prefix_sum,
                        a.num_channels, m * L + src_local, c);
  __shared__ int s_count[protocol::kMaxNvlPeers][protocol::kMaxNodes];
  for (int m = lane; m < N; m += 32) s_count[src_local][m] = 0;
  __syncwarp();
  int64_t* head = &p.ctrl[src_local]->dispatch_head[c][me];
  const int64_t* tail = &p.ctrl[me]->dispatch_tail[c][src_local];
  const int64_t start = device::ld_acquire_sys(head);  // this warp is the head's only writer
  const int64_t target = start + total;
  const int peer = p.node * L + src_local;
  const auto& s = a.slot;
  int64_t consumed = start;
  while (consumed < target) {
    int64_t available = 0;
    int ok = 1;
    if (lane == 0)
      ok = device::timed_wait(p.diag, protocol::WaitSite::kDispatchTail, peer, c, consumed + 1,
                              [&](int64_t& observed) {
                                observed = device::ld_acquire_sys(tail);
                                available = observed;
                                return observed > consumed;
                              });
    if (!__shfl_sync(kFullMask, ok, 0)) return;
    available = __shfl_sync(kFullMask, available, 0);
    if (available > target) available = target;
    for (int64_t q = consumed; q < available; ++q) {
      const uint8_t* slot = p.nvl_data[me] + p.nvl.slot(c, src_local, q);
      const auto* meta = reinterpret_cast<const int32_t*>(slot + s.meta_offset);
      const int src_node = device::ld_cg(meta);
      int row = 0;
      if (lane == 0) {
        const int src = src_node * L + src_local;
        row = a.recv_gbl_channel_prefix_matrix[src * a.num_channels + c] +
              s_count[src_local][src_node]++;
      }
      row = __shfl_sync(kFullMask, row, 0);
      if (row < 0 || row >= a.num_recv_rows) {
        if (lane == 0)
          device::report_error(p.diag, protocol::WaitSite::kRecvOverflow, peer, c, -1, row, -1,
                               a.num_recv_rows, row + 1, 0);
        return;
      }
      warp_copy(a.recv_x + row * a.hidden_bytes, slot, a.hidden_bytes, lane,
                [](const int4* v) { return device::ld_v4(v); });
      const auto* scales = reinterpret_cast<const int32_t*>(slot + s.scales_offset);
      for (int j = lane; j < a.num_scales; j += 32)
        a.recv_x_scales[row * a.num_scales + j] = device::ld_cg(scales + j);
      if (a.recv_topk_idx != nullptr) {
        const auto* ids = reinterpret_cast<const int32_t*>(slot + s.topk_idx_offset);
        const auto* weights = reinterpret_cast<const float*>(slot + s.topk_weights_offset);
        for (int k = lane; k < a.num_topk; k += 32) {
          const int e = device::ld_cg(ids + k);
          const int local = e - p.rank * experts_per_rank;
          const bool here = e >= 0 && local >= 0 && local < experts_per_rank;
          a.recv_topk_idx[row * a.num_topk + k] = here ? local : -1;
          a.recv_topk_weights[row * a.num_topk + k] = here ? device::ld_cg(weights + k) : 0.0f;
        }
      }
      if (lane < 2)
        reinterpret_cast<int32_t*>(a.recv_src_meta + row * 8)[lane] = device::ld_cg(meta + lane);
    }
    consumed = available;
    __syncwarp();
    if (lane == 0) device::st_release_sys(head, consumed);
  }
}

/// Forwarder warp for local rank d of channel c; publishes its progress per source node in
/// `s_done[d][m]` (chunks) for the coordinator.
__device__ void run_forwarder(const DispatchArgs& a, int c, int d, int lane,
                              volatile int (*s_done)[protocol::kMaxNodes]) {
  const InternodePeers& p = a.p;
  const int N = p.num_nodes, K = p.rdma.chunk, L = p.num_local_ranks, me = p.local_rank;
  const int cap = p.nvl.capacity;
  int64_t* tail = &p.ctrl[d]->dispatch_tail[c][me];
  const int64_t* head = &p.ctrl[me]->dispatch_head[c][d];
  const int64_t q0 = device::ld_acquire_sys(tail);  // this warp is the tail's only writer
  int64_t q = q0, cached_head = q0 - cap;
  int remaining = 0;
  for (int m = 0; m < N; ++m)
    remaining +=
        (prefix_count(a.recv_rdma_channel_prefix_matrix, a.num_channels, m, c) + K - 1) / K;
  uint64_t last_progress = device::global_timer_ns();
  int m = 0;
  while (remaining > 0) {
    if (device::warp_aborted(p.diag)) return;
    const int total = prefix_count(a.recv_rdma_channel_prefix_matrix, a.num_channels, m, c);
    const int i = s_done[d][m];
    const int num_chunks = (total + K - 1) / K;
    int arrived = 0;
    int64_t observed = 0;
    const int64_t g = p.state->received[kDispatchKind][c][m] + i;
    if (i < num_chunks && lane == 0) arrived = chunk_arrived(p, kDispatchKind, c, m, g, observed);
    arrived = __shfl_sync(kFullMask, arrived, 0);
    if (!arrived) {
      if (lane == 0 && device::global_timer_ns() - last_progress > p.diag.timeout_ns &&
          i < num_chunks) {
        device::report_timeout(p.diag, protocol::WaitSite::kInternodeChunk, m * L + me, c,
                               m == p.node ? g + 1 : p.rdma.chunk_signal_value(g), observed,
                               device::global_timer_ns() - last_progress);
      }
      m = (m + 1) % N;
      continue;
    }
    last_progress = device::global_timer_ns();
    const int first = i * K, end = min(total, first + K);
    const int64_t row_base = (m > 0 ? a.recv_rdma_rank_prefix_sum[m - 1] : 0) +
                             prefix_before(a.recv_rdma_channel_prefix_matrix, a.num_channels, m, c);
    if (row_base + end > a.num_nvl_head_rows) {  // num_worst_tokens below the forwarded rows
      if (lane == 0)
        device::report_error(p.diag, protocol::WaitSite::kRecvOverflow, m * L + me, c, -1,
                             static_cast<int>(row_base + end - 1), -1, a.num_nvl_head_rows,
                             row_base + end, 0);
      return;
    }
    for (int k = first; k < end; ++k) {
      const uint8_t* slot = p.rdma_local + p.rdma.recv_slot(c, m, g * K + (k - first));
      const int bits =
          load_rdma(p, reinterpret_cast<const int32_t*>(slot + a.slot.meta_offset) + 1);
      int32_t* nvl_head = a.send_nvl_head + (row_base + k) * L + d;
      if ((bits >> d & 1) == 0) {
        if (lane == 0) *nvl_head = -1;
        continue;
      }
      bool ok = true;
      warp_wait_head(p.diag, protocol::WaitSite::kDispatchHead, p.node * L + d, c, head,
                     q - cap + 1, lane, cached_head, ok);
      if (!ok) return;
      warp_copy(p.nvl_data[d] + p.nvl.slot(c, me, q), slot, a.slot.bytes, lane,
                [&](const int4* v) { return load_rdma(p, v); });
      if (lane == 0) *nvl_head = static_cast<int32_t>(q - q0);
      ++q;
    }
    __threadfence_system();
    __syncwarp();
    if (lane == 0) {
      device::st_release_sys(tail, q);
      s_done[d][m] = i + 1;
    }
    __syncwarp();
    --remaining;
  }
}

/// Returns the network rings' chunks once every forwarder warp passed them.
__device__ void run_coordinator(const DispatchArgs& a, int c, int lane,
                                volatile int (*s_done)[protocol::kMaxNodes]) {
  const InternodePeers& p = a.p;
  const int N = p.num_nodes, K = p.rdma.chunk, L = p.num_local_ranks;
  for (int m0 = 0; m0 < N; m0 += 32) {
    const int m = m0 + lane;
    const bool valid = m < N;
    const int num_chunks =
        valid ? (prefix_count(a.recv_rdma_channel_prefix_matrix, a.num_channels, m, c) + K - 1) / K
              : 0;
    const int64_t base = valid ? p.state->received[kDispatchKind][c][m] : 0;
    int credited = 0;
    while (__any_sync(kFullMask, credited < num_chunks)) {
      if (device::warp_aborted(p.diag)) return;
      if (credited < num_chunks) {
        int done = num_chunks;
        for (int d = 0; d < L; ++d) done = min(done, s_done[d][m]);
        if (done > credited) {
          send_credit(p, kDispatchKind, c, m, done - credited, base + done, 2 * c + 1);
          credited = done;
        }
      }
    }
    if (valid) p.state->received[kDispatchKind][c][m] = base + num_chunks;
  }
}

__global__ void __launch_bounds__(kThreads, 1) dispatch_kernel(const DispatchArgs a) {
  const InternodePeers& p = a.p;
  const int c = blockIdx.x / 2, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __shared__ int s_done[protocol::kMaxNvlPeers][protocol::kMaxNodes];
  for (int i = threadIdx.x; i < protocol::kMaxNvlPeers * protocol::kMaxNodes; i += blockDim.x)
    s_done[i / protocol::kMaxNodes][i % protocol::kMaxNodes] = 0;
  __syncthreads();
  if (blockIdx.x == 0 && a.recv_topk_idx != nullptr) {  // num_worst_tokens: the unused tail
    const int64_t used = a.recv_gbl_rank_prefix_sum[p.num_ranks - 1];
    for (int64_t i = used * a.num_topk + threadIdx.x; i < a.num_recv_rows * a.num_topk;
         i += blockDim.x) {
      a.recv_topk_idx[i] = -1;
      a.recv_topk_weights[i] = 0.0f;
    }
  }
  if (!device::block_aborted(p.diag)) {
    if (blockIdx.x % 2 == 0) {
      if (warp < kSenderWarps)
        run_senders(a, c, warp, lane);
      else if (warp - kReceiverBase < p.num_local_ranks)
        run_receiver(a, c, warp - kReceiverBase, lane);
    } else if (warp == kCoordinatorWarp) {
      run_coordinator(a, c, lane, s_done);
    } else if (warp < p.num_local_ranks) {
      run_forwarder(a, c, warp, lane, s_done);
    }
  }
  device::poison_if_aborted(a.outputs, p.diag);
}

}  // namespace

void launch_dispatch(const DispatchArgs& a, cudaStream_t stream) {
  dispatch_kernel<<<2 * a.num_channels, kThreads, 0, stream>>>(a);
  UCCL_EP_CHECK_LAUNCH("internode dispatch_kernel");
}

void preload_dispatch() {
  cudaFuncAttributes attr;
  UCCL_EP_CUDA_CHECK(cudaFuncGetAttributes(&attr, dispatch_kernel));
}

}  // namespace uccl::ep::kernels::internode
