// Internode notify: per-channel counts and stream positions from is_token_in_rank (one block
// per channel), then the count exchange with every rank (one block): a record per destination
// rank through the proxies (WRITE_SIGNAL into its notify area), and what this rank receives.
#include "common/cuda_check.h"
#include "kernels/internode/common.cuh"

namespace uccl::ep::kernels::internode {

using protocol::kMaxChannels;
using protocol::kNotifyFlagWord;

__global__ void __launch_bounds__(kNotifyThreads, 1) notify_count_kernel(const NotifyCountArgs a) {
  const InternodePeers& p = a.p;
  const int c = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int num_warps = blockDim.x / 32, R = p.num_ranks, L = p.num_local_ranks;
  const auto range = protocol::channel_token_range(a.num_tokens, a.num_channels, c);
  if (!device::block_aborted(p.diag)) {
    for (int target = warp; target < R + p.num_nodes; target += num_warps) {
      const bool is_node = target >= R;
      const int n = target - R;
      int count = 0;
      for (int t0 = range.begin; t0 < range.end; t0 += 32) {
        const int t = t0 + lane;
        bool in = false;
        if (t < range.end) {
          const bool* row = a.is_token_in_rank + static_cast<int64_t>(t) * R;
          if (is_node) {
            for (int l = 0; l < L; ++l) in |= row[n * L + l];
          } else {
            in = row[target];
          }
        }
        const uint32_t mask = __ballot_sync(kFullMask, in);
        if (is_node && t < range.end)
          a.send_rdma_head[static_cast<int64_t>(t) * p.num_nodes + n] =
              in ? count + __popc(mask & device::lanemask_lt()) : -1;
        count += __popc(mask);
      }
      if (lane == 0) {
        if (is_node)
          a.rdma_channel_prefix_matrix[n * a.num_channels + c] = count;
        else
          a.gbl_channel_prefix_matrix[target * a.num_channels + c] = count;
      }
    }
  }
  device::poison_if_aborted(a.outputs, p.diag);
}

namespace {

/// Inclusive prefix over the channels of row `row` of `m`, in place; returns the total.
__device__ int prefix_row(int32_t* m, int num_channels, int row) {
  int acc = 0;
  for (int c = 0; c < num_channels; ++c) {
    acc += m[row * num_channels + c];
    m[row * num_channels + c] = acc;
  }
  return acc;
}

__device__ int32_t* record_at(const InternodePeers& p, int64_t offset) {
  return reinterpret_cast<int32_t*>(p.rdma_local + offset);
}

}  // namespace

__global__ void __launch_bounds__(kNotifyThreads, 1)
    notify_exchange_kernel(const NotifyExchangeArgs a) {
  const InternodePeers& p = a.p;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, num_warps = blockDim.x / 32;
  const int R = p.num_ranks, N = p.num_nodes, L = p.num_local_ranks, C = a.num_channels;
  const int experts_per_rank = a.num_experts / R;
  const int parity = static_cast<int>(a.seq % 2);
  __shared__ int s_bad;
  __shared__ int s_total[protocol::kMaxInternodeRanks];
  __shared__ int s_node_total[protocol::kMaxNodes];
  if (tid == 0) s_bad = 0;
  __syncthreads();
  if (device::block_aborted(p.diag)) goto done;

  // 1. Prefixes over channels, checked against the caller's counts.
  for (int r = tid; r < R; r += blockDim.x) {
    const int total = prefix_row(a.gbl_channel_prefix_matrix, C, r);
    if (total != a.num_tokens_per_rank[r]) {
      device::report_error(p.diag, protocol::WaitSite::kRankCountMismatch, r, -1, -1, -1, -1,
                           a.num_tokens_per_rank[r], total, 0);
      s_bad = 1;
    }
  }
  for (int n = tid; n < N; n += blockDim.x) {
    const int total = prefix_row(a.rdma_channel_prefix_matrix, C, n);
    if (total != a.num_tokens_per_rdma_rank[n]) {
      device::report_error(p.diag, protocol::WaitSite::kNodeCountMismatch, n, -1, -1, -1, -1,
                           a.num_tokens_per_rdma_rank[n], total, 0);
      s_bad = 1;
    }
  }
  __syncthreads();

  // 2. A record to every rank: counts per channel to it, to its node (its forwarder only), per
  // expert of it, and the flag; its own record goes straight into the receive area.
  for (int d = warp; d < R; d += num_warps) {
    int32_t* rec = record_at(
        p, d == p.rank ? p.rdma.notify_recv(p.rank, parity) : p.rdma.notify_send(d, parity));
    for (int c = lane; c < C; c += 32) {
      const int32_t* g = a.gbl_channel_prefix_matrix + d * C;
      rec[c] = g[c] - (c > 0 ? g[c - 1] : 0);
      int node_count = 0;
      if (d % L == p.local_rank) {
        const int32_t* r = a.rdma_channel_prefix_matrix + (d / L) * C;
        node_count = r[c] - (c > 0 ? r[c - 1] : 0);
      }
      rec[kMaxChannels + c] = node_count;
    }
    for (int j = lane; j < experts_per_rank; j += 32)
      rec[2 * kMaxChannels + j] = a.num_tokens_per_expert[d * experts_per_rank + j];
    if (lane == 0) rec[kNotifyFlagWord] = s_bad ? protocol::kBadInputs : protocol::kNotifyGood;
    __threadfence_system();  // every lane's words, before lane 0 hands the record to the proxy
    __syncwarp();
    if (lane == 0 && d != p.rank)
      push_command(
          p, warp,
          protocol::encode_write_signal(static_cast<uint32_t>(d),
                                        static_cast<uint64_t>(p.rdma.notify_send(d, parity)),
                                        static_cast<uint64_t>(p.rdma.notify_recv(p.rank, parity)),
                                        static_cast<uint64_t>(protocol::kNotifyRecordBytes),
                                        p.rdma.notify_signal(p.rank), 1));
  }
  __threadfence_system();
  __syncthreads();

  // 3. Every peer's record.
  for (int s = tid; s < R; s += blockDim.x) {
    if (s == p.rank) continue;
    const int64_t* slot = p.signals + p.rdma.notify_signal(s);
    device::timed_wait(p.diag, protocol::WaitSite::kInternodeNotify, s, -1, a.seq,
                       [&](int64_t& observed) {
                         observed = device::ld_acquire_sys(slot);
                         return observed >= a.seq;
                       });
  }
  __syncthreads();
  if (device::block_aborted(p.diag)) goto done;

  // 4. What this rank receives: rows per (source, channel), network-stage rows per source node.
  for (int s = tid; s < R; s += blockDim.x) {
    const int32_t* rec = record_at(p, p.rdma.notify_recv(s, parity));
    if (load_rdma(p, rec + kNotifyFlagWord) != protocol::kNotifyGood)
      device::report_error(p.diag, protocol::WaitSite::kPeerError, s, -1, -1, -1, -1,
                           protocol::kNotifyGood, load_rdma(p, rec + kNotifyFlagWord), 0);
    int total = 0;
    for (int c = 0; c < C; ++c) total += load_rdma(p, rec + c);
    s_total[s] = total;
  }
  for (int m = tid; m < N; m += blockDim.x) {
    const int32_t* rec = record_at(p, p.rdma.notify_recv(m * L + p.local_rank, parity));
    int acc = 0;
    for (int c = 0; c < C; ++c) {
      acc += load_rdma(p, rec + kMaxChannels + c);
      a.recv_rdma_channel_prefix_matrix[m * C + c] = acc;
    }
    s_node_total[m] = acc;
  }
  __syncthreads();
  if (tid == 0) {
    int acc = 0;
    for (int m = 0; m < N; ++m) {
      acc += s_node_total[m];
      a.recv_rdma_rank_prefix_sum[m] = acc;
    }
    s_node_total[0] = acc;  // network-stage rows in all
    acc = 0;
    for (int s = 0; s < R; ++s) {
      const int before = acc;
      acc += s_total[s];
      s_total[s] = before;  // exclusive prefix over sources
      a.recv_gbl_rank_prefix_sum[s] = acc;
    }
    if (a.host_result != nullptr) {
      a.host_result->num_recv_tokens = acc;
      a.host_result->num_rdma_recv_tokens = s_node_total[0];
    }
  }
  __syncthreads();
  for (int s = tid; s < R; s += blockDim.x) {
    const int32_t* rec = record_at(p, p.rdma.notify_recv(s, parity));
    int start = s_total[s];
    for (int c = 0; c < C; ++c) {
      a.recv_gbl_channel_prefix_matrix[s * C + c] = start;
      start += load_rdma(p, rec + c);
    }
  }
  if (a.host_result != nullptr) {
    for (int j = tid; j < experts_per_rank; j += blockDim.x) {
      int sum = 0;
      for (int s = 0; s < R; ++s)
        sum += load_rdma(p, record_at(p, p.rdma.notify_recv(s, parity)) + 2 * kMaxChannels + j);
      const int align = a.expert_alignment;
      a.host_result->num_recv_tokens_per_expert[j] = (sum + align - 1) / align * align;
    }
  }

done:
  __syncthreads();
  if (tid == 0 && a.host_result != nullptr && !device::aborted(p.diag)) {
    __threadfence_system();
    *reinterpret_cast<volatile int32_t*>(&a.host_result->seq) = static_cast<int32_t>(a.seq);
    __threadfence_system();
  }
  device::poison_if_aborted(a.outputs, p.diag);
}

void launch_notify(const NotifyCountArgs& count, const NotifyExchangeArgs& exchange,
                   cudaStream_t stream) {
  notify_count_kernel<<<count.num_channels, kNotifyThreads, 0, stream>>>(count);
  UCCL_EP_CHECK_LAUNCH("internode notify_count_kernel");
  notify_exchange_kernel<<<1, kNotifyThreads, 0, stream>>>(exchange);
  UCCL_EP_CHECK_LAUNCH("internode notify_exchange_kernel");
}

void preload_notify() {
  cudaFuncAttributes attr;
  UCCL_EP_CUDA_CHECK(cudaFuncGetAttributes(&attr, notify_count_kernel));
  UCCL_EP_CUDA_CHECK(cudaFuncGetAttributes(&attr, notify_exchange_kernel));
}

}  // namespace uccl::ep::kernels::internode
