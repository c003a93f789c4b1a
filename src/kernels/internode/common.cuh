// Device helpers shared by the internode kernels: commands, stream signals, row copies.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "device/health.cuh"
#include "device/ptx.cuh"
#include "device/timed_wait.cuh"
#include "kernels/internode/args.h"
#include "protocol/command.h"
#include "queue/producer.cuh"

namespace uccl::ep::kernels::internode {

constexpr uint32_t kFullMask = 0xffffffffu;
constexpr int kDispatchKind = 0;
constexpr int kCombineKind = 1;

/// One thread pushes `command` into queue `q` (its earlier stores are made visible first).
__device__ __forceinline__ void push_command(const InternodePeers& p, int q,
                                             const protocol::Command& command) {
  __threadfence_system();
  queue::push(p.queues[q % p.num_queues], command, p.diag);
}

/// Named barrier `id` of `num_threads` threads. bar.sync needs a converged warp: a warp that
/// reaches it with lanes still diverged (after a lane-0 wait) is undefined behaviour (an
/// illegal instruction on sm_90), so the warp reconverges first.
__device__ __forceinline__ void group_barrier(int id, int num_threads) {
  __syncwarp();
  device::named_barrier(id, num_threads);
}

/// Loads what a peer or a transport wrote into this rank's RDMA buffer, after its signal was
/// read with acquire: at system scope from host memory, cached in L2 only from device memory.
__device__ __forceinline__ int4 load_rdma(const InternodePeers& p, const int4* src) {
  return p.rdma_in_host_memory ? device::ld_relaxed_sys_v4(src) : device::ld_v4(src);
}
__device__ __forceinline__ int32_t load_rdma(const InternodePeers& p, const int32_t* src) {
  return p.rdma_in_host_memory ? device::ld_relaxed_sys(src) : device::ld_cg(src);
}

/// Lane 0: waits until the chunk of ring chunk `g` of the network stream (kind, channel,
/// source node) is there: this rank's device word for its own node, else the signal slot.
__device__ __forceinline__ bool chunk_arrived(const InternodePeers& p, int kind, int channel,
                                              int node, int64_t g, int64_t& observed) {
  if (node == p.node) {
    observed = device::ld_acquire_sys(&p.state->local_chunks[kind][channel]);
    return observed >= g + 1;
  }
  observed = device::ld_acquire_sys(p.signals + p.rdma.chunk_signal(kind, channel, node, g));
  return observed >= p.rdma.chunk_signal_value(g);
}

__device__ __forceinline__ bool wait_chunk(const InternodePeers& p, int kind, int channel, int node,
                                           int64_t g) {
  const int64_t expected = node == p.node ? g + 1 : p.rdma.chunk_signal_value(g);
  return device::timed_wait(
      p.diag, protocol::WaitSite::kInternodeChunk, node * p.num_local_ranks + p.local_rank, channel,
      expected,
      [&](int64_t& observed) { return chunk_arrived(p, kind, channel, node, g, observed); });
}

/// Lane 0: waits until the sender may write chunk `g` of its stream (kind, channel, -> node):
/// the receiver freed chunk g - W.
__device__ __forceinline__ bool wait_credit(const InternodePeers& p, int kind, int channel,
                                            int node, int64_t g) {
  const int64_t needed = g - p.rdma.window + 1;
  if (needed <= 0) return true;
  const int64_t* word = node == p.node ? &p.state->local_credits[kind][channel]
                                       : p.signals + p.rdma.credit_signal(kind, channel, node);
  return device::timed_wait(p.diag, protocol::WaitSite::kInternodeCredit,
                            node * p.num_local_ranks + p.local_rank, channel, needed,
                            [&](int64_t& observed) {
                              observed = device::ld_acquire_sys(word);
                              return observed >= needed;
                            });
}

/// One thread: announces chunk `g` of the stream (kind, channel, -> node), whose rows
/// [slot g*K, + rows) the block wrote (into its own receive ring for its own node, else into
/// its send ring).
__device__ __forceinline__ void send_chunk(const InternodePeers& p, int kind, int channel, int node,
                                           int64_t g, int rows, int queue) {
  if (node == p.node) {
    __threadfence_system();
    device::st_release_sys(&p.state->local_chunks[kind][channel], g + 1);
    return;
  }
  const int64_t first = g * p.rdma.chunk;
  const auto peer = static_cast<uint32_t>(node * p.num_local_ranks + p.local_rank);
  push_command(p, queue,
               protocol::encode_write_signal(
                   peer, static_cast<uint64_t>(p.rdma.send_slot(channel, node, first)),
                   static_cast<uint64_t>(p.rdma.recv_slot(channel, p.node, first)),
                   static_cast<uint64_t>(rows) * p.rdma.slot_bytes,
                   p.rdma.chunk_signal(kind, channel, p.node, g), 1));
}

/// One thread: frees `delta` more chunks of the stream (kind, channel, node -> this rank);
/// `total` is the cumulative count freed, for the rank's own node.
__device__ __forceinline__ void send_credit(const InternodePeers& p, int kind, int channel,
                                            int node, int64_t delta, int64_t total, int queue) {
  if (delta <= 0) return;
  if (node == p.node) {
    device::st_release_sys(&p.state->local_credits[kind][channel], total);
    return;
  }
  const auto peer = static_cast<uint32_t>(node * p.num_local_ranks + p.local_rank);
  push_command(p, queue,
               protocol::encode_atomic_add(peer, p.rdma.credit_signal(kind, channel, p.node),
                                           static_cast<int32_t>(delta)));
}

/// A writing warp's wait for room in an NVLink ring whose head counts rows (int64): unless `ok`
/// is false or `cached_head` already reaches `needed`, lane 0 polls `*head` until it does;
/// every lane then holds the same `ok` and `cached_head`. Call from all 32 lanes.
__device__ __forceinline__ void warp_wait_head(const device::DeviceDiag& d, protocol::WaitSite site,
                                               int peer, int channel, const int64_t* head,
                                               int64_t needed, int lane, int64_t& cached_head,
                                               bool& ok) {
  if (!ok || cached_head >= needed) return;
  if (lane == 0) {
    ok = device::timed_wait(d, site, peer, channel, needed, [&](int64_t& observed) {
      cached_head = device::ld_acquire_sys(head);
      observed = cached_head;
      return cached_head >= needed;
    });
  }
  ok = __shfl_sync(kFullMask, ok, 0);
  cached_head = __shfl_sync(kFullMask, cached_head, 0);
}

/// The warp copies `bytes` (a multiple of 16) from `src` to `dst`, 16 bytes per lane per step.
template <typename Load>
__device__ __forceinline__ void warp_copy(uint8_t* dst, const uint8_t* src, int64_t bytes, int lane,
                                          Load&& load) {
  auto* d = reinterpret_cast<int4*>(dst);
  const auto* s = reinterpret_cast<const int4*>(src);
  const int64_t n = bytes / 16;
  for (int64_t i = lane; i < n; i += 32) d[i] = load(s + i);
}

/// Eight bf16 (one int4) as floats, and back.
__device__ __forceinline__ void unpack_bf16x8(const int4& v, float (&f)[8]) {
  const auto* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 x = __bfloat1622float2(h[j]);
    f[2 * j] = x.x;
    f[2 * j + 1] = x.y;
  }
}
__device__ __forceinline__ int4 pack_bf16x8(const float (&f)[8]) {
  int4 out;
  auto* h = reinterpret_cast<__nv_bfloat162*>(&out);
#pragma unroll
  for (int j = 0; j < 4; ++j) h[j] = __floats2bfloat162_rn(f[2 * j], f[2 * j + 1]);
  return out;
}

/// Rows of (source rank, channel) this rank receives, from the receiver-side handle fields.
__device__ __forceinline__ int recv_count(const int32_t* recv_gbl_channel_prefix_matrix,
                                          const int32_t* recv_gbl_rank_prefix_sum, int num_channels,
                                          int src, int channel) {
  const int32_t* row = recv_gbl_channel_prefix_matrix + static_cast<int64_t>(src) * num_channels;
  const int end = channel + 1 < num_channels ? row[channel + 1] : recv_gbl_rank_prefix_sum[src];
  return end - row[channel];
}

/// Entry (row, channel) of an inclusive prefix matrix as a count / as the rows before it.
__device__ __forceinline__ int prefix_count(const int32_t* m, int num_channels, int row,
                                            int channel) {
  const int32_t* r = m + static_cast<int64_t>(row) * num_channels;
  return r[channel] - (channel > 0 ? r[channel - 1] : 0);
}
__device__ __forceinline__ int prefix_before(const int32_t* m, int num_channels, int row,
                                             int channel) {
  return channel > 0 ? m[static_cast<int64_t>(row) * num_channels + channel - 1] : 0;
}

}  // namespace uccl::ep::kernels::internode
