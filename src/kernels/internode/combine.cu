// Internode combine: the dispatch's streams run back, two blocks per channel c.
//   Block 2c:   NVLink senders (warp l, l < L): the rows this rank received in channel c from
//               sources with local index l, source node ascending then row order, into the
//               ring (c, this rank -> l) of local rank l (the forwarder that delivered them);
//               final reducers (warps [kReducerBase, kWarps)): each token's node partials from
//               the receive rings (c, n), summed with the biases, node ascending, in fp32.
//   Block 2c+1: forwarders: per source node m ascending and per chunk of the network stream,
//               each row's returned copies from its local ranks summed in fp32 (ascending local
//               rank) and rounded to bf16, into the send ring (c, m); one WRITE_SIGNAL per chunk.
// Streams and counters: protocol/internode_layout.h.
#include "common/cuda_check.h"
#include "kernels/internode/common.cuh"

namespace uccl::ep::kernels::internode {

namespace {

constexpr int kReducerBase = 8;
constexpr int kReducerWarps = kWarps - kReducerBase;
constexpr int kMaxChunkRows = 64;  // rows of one network chunk a forwarder keeps in shared memory

/// NVLink sender of channel c to forwarder (local rank) `dst_local`.
__device__ void run_nvl_sender(const CombineArgs& a, int c, int dst_local, int lane) {
  const InternodePeers& p = a.p;
  const int L = p.num_local_ranks, N = p.num_nodes, me = p.local_rank, cap = p.nvl.capacity;
  int64_t* tail = &p.ctrl[dst_local]->combine_tail[c][me];
  const int64_t* head = &p.ctrl[me]->combine_head[c][dst_local];
  const int64_t q0 = device::ld_acquire_sys(tail);  // this warp is the tail's only writer
  int64_t q = q0, cached_head = q0 - cap;
  const auto& s = a.slot;
  for (int m = 0; m < N; ++m) {
    const int src = m * L + dst_local;
    const int first = a.recv_gbl_channel_prefix_matrix[src * a.num_channels + c];
    const int count = recv_count(a.recv_gbl_channel_prefix_matrix, a.recv_gbl_rank_prefix_sum,
                                 a.num_channels, src, c);
    for (int r = first; r < first + count; ++r) {
      bool ok = true;
      warp_wait_head(p.diag, protocol::WaitSite::kCombineHead, p.node * L + dst_local, c, head,
                     q - cap + 1, lane, cached_head, ok);
      if (!ok) return;
      uint8_t* slot = p.nvl_data[dst_local] + p.nvl.slot(c, me, q);
      warp_copy(slot, a.x + static_cast<int64_t>(r) * a.hidden_bytes, a.hidden_bytes, lane,
                [](const int4* v) { return device::ld_nc_v4(v); });
      if (a.topk_weights != nullptr) {
        auto* w = reinterpret_cast<float*>(slot + s.topk_weights_offset);
        for (int k = lane; k < a.num_topk; k += 32)
          w[k] = a.topk_weights[static_cast<int64_t>(r) * a.num_topk + k];
      }
      ++q;
      if ((q - q0) % 8 == 0) {
        __threadfence_system();
        __syncwarp();
        if (lane == 0) device::st_release_sys(tail, q);
      }
    }
  }
  __threadfence_system();
  __syncwarp();
  if (lane == 0) device::st_release_sys(tail, q);
}

/// Forwarders of channel c (all warps but none of block 2c's roles): chunk by chunk.
__device__ void run_forwarders(const CombineArgs& a, int c, int warp, int lane) {
  const InternodePeers& p = a.p;
  const int L = p.num_local_ranks, N = p.num_nodes, K = p.rdma.chunk, me = p.local_rank;
  const int vectors = static_cast<int>(a.hidden_bytes / 16);
  __shared__ int s_bits[kMaxChunkRows];
  __shared__ int s_pos[kMaxChunkRows][protocol::kMaxNvlPeers];
  __shared__ int64_t s_base[protocol::kMaxNvlPeers];  // rows consumed per local rank
  __shared__ int s_ok;
  if (threadIdx.x < L)
    s_base[threadIdx.x] =
        device::ld_acquire_sys(&p.ctrl[threadIdx.x]->combine_head[c][me]);  // only writer: here
  if (threadIdx.x == 0) s_ok = 1;
  __syncthreads();
  for (int m = 0; m < N; ++m) {
    const int total = prefix_count(a.recv_rdma_channel_prefix_matrix, a.num_channels, m, c);
    const int num_chunks = (total + K - 1) / K;
    const int64_t g0 = p.state->sent[kCombineKind][c][m];
    const int64_t row_base = (m > 0 ? a.recv_rdma_rank_prefix_sum[m - 1] : 0) +
                             prefix_before(a.recv_rdma_channel_prefix_matrix, a.num_channels, m, c);
    const bool own = m == p.node;
    for (int i = 0; i < num_chunks; ++i) {
      const int64_t g = g0 + i;
      const int first = i * K, rows = min(total, first + K) - first;
      // Which local ranks hold each row, and the row's place in each one's NVLink stream.
      if (threadIdx.x == 0) {
        int running[protocol::kMaxNvlPeers];
        for (int d = 0; d < L; ++d) running[d] = 0;
        for (int k = 0; k < rows; ++k) {
          int bits = 0;
          for (int d = 0; d < L; ++d) {
            const bool in = a.send_nvl_head[(row_base + first + k) * L + d] >= 0;
            bits |= in ? 1 << d : 0;
            s_pos[k][d] = running[d];
            running[d] += in ? 1 : 0;
          }
          s_bits[k] = bits;
        }
        s_ok = s_ok && wait_credit(p, kCombineKind, c, m, g);
      }
      __syncthreads();
      if (!s_ok) return;
      for (int k = warp; k < rows; k += kWarps) {
        const int bits = s_bits[k];
        const int64_t slot_index = g * K + k;
        uint8_t* out = p.rdma_local + (own ? p.rdma.recv_slot(c, m, slot_index)
                                           : p.rdma.send_slot(c, m, slot_index));
        bool ok = true;
        for (int d = 0; d < L && ok; ++d) {
          if ((bits >> d & 1) == 0) continue;
          const int64_t pos = s_base[d] + s_pos[k][d];
          const int64_t* tail = &p.ctrl[me]->combine_tail[c][d];
          if (lane == 0)
            ok = device::timed_wait(p.diag, protocol::WaitSite::kCombineTail, p.node * L + d, c,
                                    pos + 1, [&](int64_t& observed) {
                                      observed = device::ld_acquire_sys(tail);
                                      return observed > pos;
                                    });
          ok = __shfl_sync(kFullMask, ok, 0);
        }
        if (!ok) continue;  // the rank is aborted; the block leaves at the next chunk
        for (int v = lane; v < vectors; v += 32) {
          float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          for (int d = 0; d < L; ++d) {
            if ((bits >> d & 1) == 0) continue;
            const uint8_t* slot = p.nvl_data[me] + p.nvl.slot(c, d, s_base[d] + s_pos[k][d]);
            float f[8];
            unpack_bf16x8(device::ld_v4(reinterpret_cast<const int4*>(slot) + v), f);
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[j] += f[j];
          }
          reinterpret_cast<int4*>(out)[v] = pack_bf16x8(acc);
        }
        if (a.topk_weights != nullptr) {
          for (int t = lane; t < a.num_topk; t += 32) {
            float w = 0.0f;
            for (int d = 0; d < L; ++d) {
              if ((bits >> d & 1) == 0) continue;
              const uint8_t* slot = p.nvl_data[me] + p.nvl.slot(c, d, s_base[d] + s_pos[k][d]);
              w += device::ld_cg(reinterpret_cast<const float*>(slot + a.slot.topk_weights_offset) +
                                 t);
            }
            reinterpret_cast<float*>(out + a.slot.topk_weights_offset)[t] = w;
          }
        }
      }
      __threadfence_system();  // every warp's rows, before thread 0 announces the chunk
      __syncthreads();
      if (threadIdx.x == 0) {
        if (device::aborted(p.diag))
          s_ok = 0;  // every thread leaves at the next chunk's barrier
        else
          send_chunk(p, kCombineKind, c, m, g, rows, 2 * c + 1);
      }
      // The chunk's NVLink rows are consumed: return their ring space.
      if (threadIdx.x < L) {
        const int d = threadIdx.x;
        int used = 0;
        for (int k = 0; k < rows; ++k) used += s_bits[k] >> d & 1;
        s_base[d] += used;
        device::st_release_sys(&p.ctrl[d]->combine_head[c][me], s_base[d]);
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) p.state->sent[kCombineKind][c][m] = g0 + num_chunks;
  }
}

/// Final reducers of channel c: token by token (one per warp), node partials in ascending
/// node order after the biases; returns each receive ring's chunks once every token in them
/// is done.
__device__ void run_reducers(const CombineArgs& a, int c, int warp, int lane) {
  const InternodePeers& p = a.p;
  const int N = p.num_nodes, K = p.rdma.chunk;
  const int vectors = static_cast<int>(a.hidden_bytes / 16);
  const auto range = protocol::channel_token_range(a.num_tokens, a.num_channels, c);
  const int id = warp - kReducerBase;
  __shared__ int s_consumed[protocol::kMaxNodes];  // rows of stream n done, before this batch
  __shared__ volatile int s_ok;
  __shared__ int s_rows[kReducerWarps][protocol::kMaxNodes];
  for (int n = threadIdx.x - kReducerBase * 32; n < N; n += kReducerWarps * 32) {
    if (n >= 0) s_consumed[n] = 0;
  }
  if (id == 0 && lane == 0) s_ok = 1;
  const int barrier_threads = kReducerWarps * 32;
  group_barrier(1, barrier_threads);
  for (int t0 = range.begin; t0 < range.end; t0 += kReducerWarps) {
    const int t = t0 + id;
    for (int n = lane; n < N; n += 32) s_rows[id][n] = 0;
    __syncwarp();
    // One decision per warp (s_ok may change while the lanes read it).
    if (__shfl_sync(kFullMask, t < range.end && s_ok ? 1 : 0, 0) != 0) {
      bool ok = true;
      for (int n = 0; n < N && ok; ++n) {
        const int pos = a.send_rdma_head[static_cast<int64_t>(t) * N + n];
        if (pos < 0) continue;
        if (lane == 0) {
          ok = wait_chunk(p, kCombineKind, c, n, p.state->received[kCombineKind][c][n] + pos / K);
          if (!ok) s_ok = 0;
          s_rows[id][n] = 1;
        }
        ok = __shfl_sync(kFullMask, ok, 0);
      }
      if (ok) {
        const uint8_t* b0 =
            a.bias0 != nullptr ? a.bias0 + static_cast<int64_t>(t) * a.hidden_bytes : nullptr;
        const uint8_t* b1 =
            a.bias1 != nullptr ? a.bias1 + static_cast<int64_t>(t) * a.hidden_bytes : nullptr;
        for (int v = lane; v < vectors; v += 32) {
          float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          float f[8];
          if (b0 != nullptr) {
            unpack_bf16x8(device::ld_nc_v4(reinterpret_cast<const int4*>(b0) + v), f);
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[j] += f[j];
          }
          if (b1 != nullptr) {
            unpack_bf16x8(device::ld_nc_v4(reinterpret_cast<const int4*>(b1) + v), f);
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[j] += f[j];
          }
          for (int n = 0; n < N; ++n) {
            const int pos = a.send_rdma_head[static_cast<int64_t>(t) * N + n];
            if (pos < 0) continue;
            const int64_t g = p.state->received[kCombineKind][c][n] + pos / K;
            const auto* slot = reinterpret_cast<const int4*>(
                p.rdma_local + p.rdma.recv_slot(c, n, g * K + pos % K));
            unpack_bf16x8(load_rdma(p, slot + v), f);
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[j] += f[j];
          }
          reinterpret_cast<int4*>(a.combined_x + static_cast<int64_t>(t) * a.hidden_bytes)[v] =
              pack_bf16x8(acc);
        }
        if (a.combined_topk_weights != nullptr) {
          for (int k = lane; k < a.num_topk; k += 32) {
            float w = 0.0f;
            for (int n = 0; n < N; ++n) {
              const int pos = a.send_rdma_head[static_cast<int64_t>(t) * N + n];
              if (pos < 0) continue;
              const int64_t g = p.state->received[kCombineKind][c][n] + pos / K;
              const uint8_t* slot = p.rdma_local + p.rdma.recv_slot(c, n, g * K + pos % K);
              w += __int_as_float(load_rdma(
                  p, reinterpret_cast<const int32_t*>(slot + a.slot.topk_weights_offset) + k));
            }
            a.combined_topk_weights[static_cast<int64_t>(t) * a.num_topk + k] = w;
          }
        }
      }
    }
    group_barrier(1, barrier_threads);
    if (!s_ok) return;  // every reducer warp reads the same value after the barrier
    // Rows of each stream done after this batch; credit the chunks now complete.
    for (int n = threadIdx.x - kReducerBase * 32; n < N; n += barrier_threads) {
      if (n < 0) continue;
      const int total = prefix_count(a.rdma_channel_prefix_matrix, a.num_channels, n, c);
      const int before = s_consumed[n];
      int after = before;
      for (int w = 0; w < kReducerWarps; ++w) after += s_rows[w][n];
      s_consumed[n] = after;
      const int freed_before = before == total ? (total + K - 1) / K : before / K;
      const int freed_after = after == total ? (total + K - 1) / K : after / K;
      const int64_t base = p.state->received[kCombineKind][c][n];
      send_credit(p, kCombineKind, c, n, freed_after - freed_before, base + freed_after, 2 * c);
    }
    group_barrier(1, barrier_threads);
  }
  // Streams with no rows in this channel's tokens still count zero chunks; then the new totals.
  for (int n = threadIdx.x - kReducerBase * 32; n < N; n += barrier_threads) {
    if (n < 0) continue;
    const int total = prefix_count(a.rdma_channel_prefix_matrix, a.num_channels, n, c);
    p.state->received[kCombineKind][c][n] += (total + K - 1) / K;
  }
}

__global__ void __launch_bounds__(kThreads, 1) combine_kernel(const CombineArgs a) {
  const InternodePeers& p = a.p;
  const int c = blockIdx.x / 2, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (!device::block_aborted(p.diag)) {
    if (blockIdx.x % 2 == 1) {
      run_forwarders(a, c, warp, lane);
    } else if (warp < kReducerBase) {
      if (warp < p.num_local_ranks) run_nvl_sender(a, c, warp, lane);
    } else {
      run_reducers(a, c, warp, lane);
    }
  }
  device::poison_if_aborted(a.outputs, p.diag);
}

}  // namespace

void launch_combine(const CombineArgs& a, cudaStream_t stream) {
  combine_kernel<<<2 * a.num_channels, kThreads, 0, stream>>>(a);
  UCCL_EP_CHECK_LAUNCH("internode combine_kernel");
}

void preload_combine() {
  cudaFuncAttributes attr;
  UCCL_EP_CUDA_CHECK(cudaFuncGetAttributes(&attr, combine_kernel));
}

}  // namespace uccl::ep::kernels::internode
