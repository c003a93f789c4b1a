// Low-latency combine (protocol/low_latency_layout.h has the memory layout and the signal
// rules) and the clean kernel.
//
// Send phase, one warp per (local expert, source rank): rows [begin, begin + count) of the
// expert (the dispatch's layout_range) go back to the source rank, row begin + s into slot s of
// the expert there: stored directly into a direct peer's receive slots, else copied into this
// rank's send rows (already there with zero_copy) and pushed as one WRITE_SIGNAL (an
// ATOMIC_ADD of the signal when count is 0). Every pair is signalled.
// Receive phase: one warp per global expert waits for its owner's signal (so every rank hears
// from every rank); one warp per token waits for the signals of its experts, finds the slot of
// each (the token's rank among this rank's tokens that chose the expert, as the dispatch sent
// them) and reduces the weighted rows in float32, in top-k order.
#include "common/cuda_check.h"
#include "kernels/low_latency/common.cuh"
#include "kernels/low_latency/logfmt.cuh"

namespace uccl::ep::kernels::low_latency {
namespace {

/// All lanes: row `from` (H bf16) as LogFMT-10 at `to` (logfmt.cuh); half-warps take groups.
__device__ __forceinline__ void encode_row(const int4* from, uint8_t* to, int hidden, int lane) {
  const int num_groups = hidden / 128, sub = lane % 16;  // the group count is even
  auto* meta = reinterpret_cast<uint32_t*>(to + 2 * hidden);
  for (int g = lane / 16; g < num_groups; g += 2) {
    const int4 raw = device::ld_nc_v4(from + g * 16 + sub);
    float f[8];
    unpack_bf16x8(raw, f);
    logfmt::encode_group(f, raw, sub, to + g * logfmt::kGroupBytes, meta + g);
  }
}

/// Vector `v` (8 channels) of a received row, decoded when the row is LogFMT-10.
__device__ __forceinline__ void load_row_vector(const Peers& p, const uint8_t* row, int v,
                                                bool use_logfmt, float (&f)[8]) {
  if (!use_logfmt) {
    unpack_bf16x8(load_received(p, reinterpret_cast<const int4*>(row) + v), f);
    return;
  }
  const int g = v / 16, sub = v % 16;
  const auto* meta = reinterpret_cast<const int32_t*>(row + 2 * p.layout.hidden) + g;
  const auto m = static_cast<uint32_t>(load_received(p, meta));
  const logfmt::Grid grid =
      logfmt::grid_of(logfmt::from_bf16_bits(m), logfmt::from_bf16_bits(m >> 16));
  const uint8_t* group = row + g * logfmt::kGroupBytes;
  if (!grid.cast) {
    unpack_bf16x8(load_received(p, reinterpret_cast<const int4*>(group) + sub), f);
    return;
  }
  // The lane's 10 bytes at 10 sub (2-byte aligned) lie in the three words from `first`.
  const int start = sub * logfmt::kLaneEncodedBytes, first = start & ~3;
  uint32_t words[3];
#pragma unroll
  for (int i = 0; i < 3; ++i)
    words[i] = static_cast<uint32_t>(
        load_received(p, reinterpret_cast<const int32_t*>(group + first) + i));
  const auto* halves = reinterpret_cast<const uint16_t*>(words) + (start - first) / 2;
  uint16_t w[5];
#pragma unroll
  for (int i = 0; i < 5; ++i) w[i] = halves[i];
  logfmt::decode_lane(w, grid, f);
}

__global__ void __launch_bounds__(kThreads, 1) combine_send_kernel(const CombineArgs a) {
  const Peers& p = a.p;
  const auto& layout = p.layout;
  const int lane = threadIdx.x % 32;
  const int num_local = static_cast<int>(layout.local_experts());
  const int vectors = static_cast<int>(layout.hidden / 8);  // int4 per BF16 row
  const int64_t rows = layout.num_ranks * layout.T;
  const CallSequence cs = call_sequence(p, a.half, kCombineKind);
  const int num_warps = gridDim.x * kWarps;
  for (int pair = blockIdx.x * kWarps + threadIdx.x / 32; pair < num_local * p.num_ranks;
       pair += num_warps) {
    const int e_local = pair / p.num_ranks, src = pair % p.num_ranks;
    if (p.masked(src)) continue;
    const int e = p.rank * num_local + e_local;
    const int64_t range = a.layout_range[pair];
    int count = static_cast<int>(range & 0xffffffff);
    const int begin = static_cast<int>(range >> 32);
    if (count < 0 || begin < 0 || begin + count > rows) {  // a modified or foreign handle
      if (lane == 0)
        device::report_error(p.diag, protocol::WaitSite::kLowLatencyBadHandle, src, e_local, -1,
                             begin, -1, rows, count, 0);
      count = 0;  // still signal, so the peer's wait ends; the Buffer is failed
    }
    uint8_t* direct = p.direct_buffer(src);
    for (int s = 0; s < count; ++s) {
      const int64_t row = begin + s;
      const int4* from =
          a.zero_copy ? reinterpret_cast<const int4*>(p.local +
                                                      layout.combine_send_row(a.half, e_local, row))
                      : reinterpret_cast<const int4*>(a.x + (e_local * rows + row) * layout.hidden);
      uint8_t* to = direct != nullptr ? direct + layout.combine_recv_slot(a.half, e, s)
                                      : p.local + layout.combine_send_row(a.half, e_local, row);
      if (direct == nullptr && a.zero_copy) continue;
      if (a.use_logfmt) {
        encode_row(from, to, static_cast<int>(layout.hidden), lane);
        continue;
      }
      auto* out = reinterpret_cast<int4*>(to);
      for (int v = lane; v < vectors; v += 32) out[v] = device::ld_nc_v4(from + v);
    }
    if (direct != nullptr) {
      signal_direct(p, direct, a.half, e, cs.seq, lane);
    } else {
      const auto slot = static_cast<uint32_t>(layout.signal_slot(a.half, kCombineKind, e));
      const auto peer = static_cast<uint32_t>(src);
      const protocol::Command command =
          count == 0
              ? protocol::encode_atomic_add(peer, slot, 1)
              : protocol::encode_write_signal(
                    peer, static_cast<uint64_t>(layout.combine_send_row(a.half, e_local, begin)),
                    static_cast<uint64_t>(layout.combine_recv_slot(a.half, e, 0)),
                    static_cast<uint64_t>(count * layout.combine_message), slot, 1);
      push_command(p, pair, command, lane);
    }
  }
  device::poison_if_aborted(a.outputs, p.diag);
}

__global__ void __launch_bounds__(kThreads, 1) combine_recv_kernel(const CombineArgs a) {
  extern __shared__ int32_t s_topk[];
  const Peers& p = a.p;
  const auto& layout = p.layout;
  const int lane = threadIdx.x % 32;
  const int num_experts = static_cast<int>(layout.num_experts);
  const int num_local = static_cast<int>(layout.local_experts());
  const int vectors = static_cast<int>(layout.hidden / 8);
  const int num_topk = a.num_topk;
  load_topk(a.topk_idx, a.num_tokens * num_topk, s_topk);
  const CallSequence cs = call_sequence(p, a.half, kCombineKind);
  const int num_warps = gridDim.x * kWarps;
  const int warp = blockIdx.x * kWarps + threadIdx.x / 32;
  bool ok = true;
  // Every expert's signal (the rank hears from every rank).
  for (int e = warp; ok && e < num_experts; e += num_warps) {
    if (lane == 0) {
      const int owner = e / num_local;
      uint64_t waited = 0;
      ok = wait_signal(p, a.half, kCombineKind, e, p.direct_buffer(owner) != nullptr, cs,
                       protocol::WaitSite::kLowLatencyCombineRecv, owner, e,
                       &waited) != Wait::kFailed;
      if (a.wait_stats != nullptr)
        atomicAdd(reinterpret_cast<unsigned long long*>(a.wait_stats + owner),
                  static_cast<unsigned long long>(waited));
    }
    ok = __shfl_sync(kFullMask, ok, 0);
  }
  for (int t = warp; ok && t < a.num_tokens; t += num_warps) {
    int expert[kMaxTopk], slot[kMaxTopk];
    float weight[kMaxTopk];
#pragma unroll
    for (int k = 0; k < kMaxTopk; ++k) {
      const int id = k < num_topk ? s_topk[t * num_topk + k] : -1;
      expert[k] = id >= 0 && id < num_experts ? id : -1;
      weight[k] = k < num_topk ? a.topk_weights[static_cast<int64_t>(t) * num_topk + k] : 0.0f;
      slot[k] = 0;
    }
    // Slot of each expert: earlier tokens that chose it.
    for (int u = lane; u < t; u += 32) {
#pragma unroll
      for (int k = 0; k < kMaxTopk; ++k)
        if (expert[k] >= 0) slot[k] += row_has(s_topk, u, num_topk, expert[k]) ? 1 : 0;
    }
#pragma unroll
    for (int k = 0; k < kMaxTopk; ++k) {
#pragma unroll
      for (int o = 16; o >= 1; o /= 2) slot[k] += __shfl_xor_sync(kFullMask, slot[k], o);
    }
    uint32_t skip = 0;  // top-k entries whose owner is masked: summed as if -1
    if (lane == 0) {
#pragma unroll
      for (int k = 0; k < kMaxTopk; ++k) {
        if (expert[k] < 0) continue;
        uint64_t waited = 0;
        const int owner = expert[k] / num_local;
        const Wait w =
            wait_signal(p, a.half, kCombineKind, expert[k], p.direct_buffer(owner) != nullptr, cs,
                        protocol::WaitSite::kLowLatencyCombineRecv, owner, expert[k], &waited);
        if (w == Wait::kFailed) ok = false;
        if (w == Wait::kMasked) skip |= 1u << k;
      }
    }
    ok = __shfl_sync(kFullMask, ok, 0);
    if (!ok) break;
    skip = __shfl_sync(kFullMask, skip, 0);
#pragma unroll
    for (int k = 0; k < kMaxTopk; ++k)
      if ((skip >> k) & 1u) expert[k] = -1;
    uint16_t* out_row = a.combined_x + static_cast<int64_t>(t) * layout.hidden;
    for (int v = lane; v < vectors; v += 32) {
      float acc[8] = {};
#pragma unroll
      for (int k = 0; k < kMaxTopk; ++k) {
        // An expert named twice in a row was sent once: both entries read that row.
        if (expert[k] < 0) continue;
        const uint8_t* row = p.local + layout.combine_recv_slot(a.half, expert[k], slot[k]);
        float f[8];
        load_row_vector(p, row, v, a.use_logfmt, f);
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[j] += weight[k] * f[j];
      }
      reinterpret_cast<int4*>(out_row)[v] = pack_bf16x8(acc);
    }
  }
  finish_receive(p, a.half, kCombineKind, cs);
  device::poison_if_aborted(a.outputs, p.diag);
}

__global__ void clean_kernel(const CleanArgs a) {
  const auto& layout = a.p.layout;
  auto* words = reinterpret_cast<int32_t*>(a.p.local);
  for (int64_t i = threadIdx.x; i < 2 * layout.signal_bytes / 4; i += blockDim.x) words[i] = 0;
  if (a.p.signals != nullptr)
    for (int64_t i = threadIdx.x; i < layout.num_signal_slots(); i += blockDim.x)
      a.p.signals[i] = 0;
  if (threadIdx.x < 2) {
    a.p.state->seq[threadIdx.x] = 0;
    a.p.state->calls[threadIdx.x][0] = 0;
    a.p.state->calls[threadIdx.x][1] = 0;
    a.p.state->done[threadIdx.x] = 0;
  }
  __threadfence_system();
}

int grid_for(int items, int num_sms) {
  const int blocks = (items + kWarps - 1) / kWarps;
  return blocks < 1 ? 1 : (blocks < num_sms ? blocks : num_sms);
}

}  // namespace

void preload_combine() {
  UCCL_EP_CUDA_CHECK(cudaFuncSetAttribute(
      combine_recv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kMaxTopkSharedBytes));
  cudaFuncAttributes attr;
  UCCL_EP_CUDA_CHECK(cudaFuncGetAttributes(&attr, combine_send_kernel));
  UCCL_EP_CUDA_CHECK(cudaFuncGetAttributes(&attr, combine_recv_kernel));
  UCCL_EP_CUDA_CHECK(cudaFuncGetAttributes(&attr, clean_kernel));
}

void launch_combine_send(const CombineArgs& a, int num_sms, cudaStream_t stream) {
  combine_send_kernel<<<grid_for(static_cast<int>(a.p.layout.num_experts), num_sms), kThreads, 0,
                        stream>>>(a);
  UCCL_EP_CHECK_LAUNCH("low_latency_combine_send_kernel");
}

void launch_combine_recv(const CombineArgs& a, int num_sms, cudaStream_t stream) {
  const int items = static_cast<int>(a.p.layout.num_experts) > a.num_tokens
                        ? static_cast<int>(a.p.layout.num_experts)
                        : a.num_tokens;
  combine_recv_kernel<<<grid_for(items, num_sms), kThreads,
                        topk_shared_bytes(a.num_tokens, a.num_topk), stream>>>(a);
  UCCL_EP_CHECK_LAUNCH("low_latency_combine_recv_kernel");
}

void launch_clean(const CleanArgs& a, cudaStream_t stream) {
  clean_kernel<<<1, 256, 0, stream>>>(a);
  UCCL_EP_CHECK_LAUNCH("low_latency_clean_kernel");
}

}  // namespace uccl::ep::kernels::low_latency
