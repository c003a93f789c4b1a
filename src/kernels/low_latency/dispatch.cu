// Low-latency dispatch (protocol/low_latency_layout.h has the memory layout and the signal
// rules).
//
// Send phase, one warp per global expert e: scans the top-k ids for the tokens that chose e, in
// token order, and writes each as a message (16-byte header with the token index, then BF16, or
// FP8 quantised per 128 channels with float scales) into slot s (its rank among them) of the
// block e's owner receives from this rank: directly when the owner is this rank or a direct
// peer, else into this rank's send block for e, pushed to the owner as one WRITE_SIGNAL. The
// block's header gets the count; the signal follows the data.
// Receive phase, one warp per (local expert, source rank): waits for the signal, claims rows
// [begin, begin + count) of the expert with an atomic add on recv_count, and copies the
// messages into recv_x / scales / src_info.
#include <cuda_fp8.h>

#include "common/cuda_check.h"
#include "kernels/low_latency/common.cuh"

namespace uccl::ep::kernels::low_latency {
namespace {

/// The scale of a 128-channel group with absolute maximum `amax` (>= 1e-4): x * mult is the
/// FP8 value, scale_inv (stored) dequantises it. With round_scale, scale_inv is the next power
/// of two of amax / 448 (computed on the bits: exact).
__device__ __forceinline__ void fp8_scale(float amax, bool round_scale, float& mult,
                                          float& scale_inv) {
  constexpr float kMax = 448.0f;
  if (!round_scale) {
    mult = kMax / amax;
    scale_inv = amax / kMax;
    return;
  }
  const uint32_t bits = __float_as_uint(amax / kMax);
  int exponent = static_cast<int>((bits >> 23) & 0xffu) - 127;
  if ((bits & 0x7fffffu) != 0) ++exponent;
  scale_inv = __uint_as_float(static_cast<uint32_t>(exponent + 127) << 23);
  mult = __uint_as_float(static_cast<uint32_t>(127 - exponent) << 23);
}

/// All lanes: writes token `t` as a message at `msg`.
__device__ __forceinline__ void write_message(const DispatchArgs& a, uint8_t* msg, int t,
                                              int lane) {
  const int hidden = static_cast<int>(a.p.layout.hidden);
  if (lane == 0) *reinterpret_cast<int4*>(msg) = make_int4(t, 0, 0, 0);
  const auto* src = reinterpret_cast<const int4*>(a.x + static_cast<int64_t>(t) * hidden);
  if (!a.use_fp8) {
    auto* dst = reinterpret_cast<int4*>(msg + protocol::kLowLatencyHeaderBytes);
    for (int i = lane; i < hidden / 8; i += 32) dst[i] = device::ld_nc_v4(src + i);
    return;
  }
  // FP8: half-warps take 128-channel groups (16 lanes x 8 values); the group count is even.
  uint8_t* data = msg + protocol::kLowLatencyHeaderBytes;
  auto* scales = reinterpret_cast<float*>(data + hidden);
  const int num_groups = hidden / 128, sub = lane % 16;
  for (int g = lane / 16; g < num_groups; g += 2) {
    float f[8];
    unpack_bf16x8(device::ld_nc_v4(src + g * 16 + sub), f);
    float amax = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; ++j) amax = fmaxf(amax, fabsf(f[j]));
#pragma unroll
    for (int o = 8; o >= 1; o /= 2) amax = fmaxf(amax, __shfl_xor_sync(kFullMask, amax, o));
    float mult, scale_inv;
    fp8_scale(fmaxf(amax, 1e-4f), a.round_scale, mult, scale_inv);
    uint32_t packed[2];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const __nv_fp8x2_storage_t lo = __nv_cvt_float2_to_fp8x2(
          make_float2(f[4 * j] * mult, f[4 * j + 1] * mult), __NV_SATFINITE, __NV_E4M3);
      const __nv_fp8x2_storage_t hi = __nv_cvt_float2_to_fp8x2(
          make_float2(f[4 * j + 2] * mult, f[4 * j + 3] * mult), __NV_SATFINITE, __NV_E4M3);
      packed[j] = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
    }
    *reinterpret_cast<uint2*>(data + g * 128 + sub * 8) = make_uint2(packed[0], packed[1]);
    if (sub == 0) scales[g] = scale_inv;
  }
}

__global__ void __launch_bounds__(kThreads, 1) dispatch_send_kernel(const DispatchArgs a) {
  extern __shared__ int32_t s_topk[];
  const Peers& p = a.p;
  const auto& layout = p.layout;
  const int lane = threadIdx.x % 32;
  const int num_experts = static_cast<int>(layout.num_experts);
  const int num_local = static_cast<int>(layout.local_experts());
  load_topk(a.topk_idx, a.num_tokens * a.num_topk, s_topk);
  const CallSequence cs = call_sequence(p, a.half, kDispatchKind);
  if (blockIdx.x == 0) {
    for (int e = threadIdx.x; e < num_local; e += blockDim.x) a.recv_count[e] = 0;
    for (int i = threadIdx.x; i < a.num_tokens * a.num_topk; i += blockDim.x) {
      const int64_t id = a.topk_idx[i];
      if (id < -1 || id >= num_experts)
        device::report_error(p.diag, protocol::WaitSite::kBadExpertId, -1, -1, -1, i / a.num_topk,
                             i % a.num_topk, num_experts, id, 0);
    }
  }
  const int num_warps = gridDim.x * kWarps;
  for (int e = blockIdx.x * kWarps + threadIdx.x / 32; e < num_experts; e += num_warps) {
    const int dst = e / num_local, e_local = e % num_local;
    if (p.masked(dst)) continue;  // neither sent to nor waited for
    uint8_t* direct = p.direct_buffer(dst);
    uint8_t* block = direct != nullptr
                         ? direct + layout.dispatch_recv_block(a.half, e_local, p.rank)
                         : p.local + layout.dispatch_send_block(a.half, e);
    int count = 0;
    for (int base = 0; base < a.num_tokens; base += 32) {
      const int t = base + lane;
      uint32_t hits =
          __ballot_sync(kFullMask, t < a.num_tokens && row_has(s_topk, t, a.num_topk, e));
      while (hits != 0) {
        const int l = __ffs(hits) - 1;
        hits &= hits - 1;
        write_message(a, block + protocol::kLowLatencyHeaderBytes + count * layout.dispatch_message,
                      base + l, lane);
        ++count;
      }
    }
    if (lane == 0) *reinterpret_cast<int4*>(block) = make_int4(count, 0, 0, 0);
    const int64_t index = static_cast<int64_t>(e_local) * p.num_ranks + p.rank;
    if (direct != nullptr) {
      signal_direct(p, direct, a.half, index, cs.seq, lane);
    } else {
      const uint64_t bytes = protocol::kLowLatencyHeaderBytes + count * layout.dispatch_message;
      push_command(
          p, e,
          protocol::encode_write_signal(
              static_cast<uint32_t>(dst), static_cast<uint64_t>(block - p.local),
              static_cast<uint64_t>(layout.dispatch_recv_block(a.half, e_local, p.rank)), bytes,
              static_cast<uint32_t>(layout.signal_slot(a.half, kDispatchKind, index)), 1),
          lane);
    }
  }
  device::poison_if_aborted(a.outputs, p.diag);
}

__global__ void __launch_bounds__(kThreads, 1) dispatch_recv_kernel(const DispatchArgs a) {
  const Peers& p = a.p;
  const auto& layout = p.layout;
  const int lane = threadIdx.x % 32;
  const int num_local = static_cast<int>(layout.local_experts());
  const int hidden = static_cast<int>(layout.hidden);
  const int num_groups = hidden / 128;
  const int64_t rows = layout.num_ranks * layout.T;  // N
  const CallSequence cs = call_sequence(p, a.half, kDispatchKind);
  const int num_warps = gridDim.x * kWarps;
  for (int pair = blockIdx.x * kWarps + threadIdx.x / 32; pair < num_local * p.num_ranks;
       pair += num_warps) {
    const int e_local = pair / p.num_ranks, src = pair % p.num_ranks;
    const uint8_t* block = p.local + layout.dispatch_recv_block(a.half, e_local, src);
    bool ok = true;
    int count = 0, begin = 0;
    if (lane == 0) {
      uint64_t waited = 0;
      const Wait w =
          wait_signal(p, a.half, kDispatchKind, pair, p.direct_buffer(src) != nullptr, cs,
                      protocol::WaitSite::kLowLatencyDispatchRecv, src, e_local, &waited);
      ok = w != Wait::kFailed;
      if (a.wait_stats != nullptr)
        atomicAdd(reinterpret_cast<unsigned long long*>(a.wait_stats + src),
                  static_cast<unsigned long long>(waited));
      if (w == Wait::kArrived) {
        count = load_received(p, reinterpret_cast<const int32_t*>(block));
        if (count < 0 || count > layout.T) {  // a corrupt block: never lay out what it claims
          device::report_error(p.diag, protocol::WaitSite::kLowLatencyBadBlock, src, e_local, -1,
                               -1, -1, layout.T, count, 0);
          ok = false;
        }
      }
      if (ok) {
        begin = atomicAdd(a.recv_count + e_local, count);
        a.recv_layout_range[pair] = (static_cast<int64_t>(begin) << 32) | count;
        if (a.cumulative_stats != nullptr) atomicAdd(a.cumulative_stats + e_local, count);
      }
    }
    ok = __shfl_sync(kFullMask, ok, 0);
    if (!ok) break;
    count = __shfl_sync(kFullMask, count, 0);
    begin = __shfl_sync(kFullMask, begin, 0);
    for (int i = 0; i < count; ++i) {
      const uint8_t* msg = block + protocol::kLowLatencyHeaderBytes + i * layout.dispatch_message;
      const int64_t row = static_cast<int64_t>(e_local) * rows + begin + i;
      if (lane == 0) a.recv_src_info[row] = load_received(p, reinterpret_cast<const int32_t*>(msg));
      const auto* data = reinterpret_cast<const int4*>(msg + protocol::kLowLatencyHeaderBytes);
      const int row_bytes = a.use_fp8 ? hidden : 2 * hidden;
      auto* out = reinterpret_cast<int4*>(a.recv_x + row * row_bytes);
      for (int v = lane; v < row_bytes / 16; v += 32) out[v] = load_received(p, data + v);
      if (!a.use_fp8) continue;
      const auto* scales =
          reinterpret_cast<const float*>(msg + protocol::kLowLatencyHeaderBytes + hidden);
      const int64_t col = begin + i;
      if (!a.use_ue8m0) {
        auto* out_scales = static_cast<float*>(a.recv_scales) + e_local * num_groups * rows;
        for (int g = lane; g < num_groups; g += 32)
          out_scales[g * rows + col] = load_received(p, scales + g);
      } else {
        auto* out_scales = static_cast<int32_t*>(a.recv_scales) + e_local * (num_groups / 4) * rows;
        for (int q = lane; q < num_groups / 4; q += 32) {
          uint32_t packed = 0;
#pragma unroll
          for (int j = 0; j < 4; ++j)
            packed |= ((__float_as_uint(load_received(p, scales + 4 * q + j)) >> 23) & 0xffu)
                      << (8 * j);
          out_scales[q * rows + col] = static_cast<int32_t>(packed);
        }
      }
    }
  }
  finish_receive(p, a.half, kDispatchKind, cs);
  device::poison_if_aborted(a.outputs, p.diag);
}

int grid_for(int items, int num_sms) {
  const int blocks = (items + kWarps - 1) / kWarps;
  return blocks < 1 ? 1 : (blocks < num_sms ? blocks : num_sms);
}

}  // namespace

int64_t topk_shared_bytes(int num_tokens, int num_topk) {
  return static_cast<int64_t>(num_tokens) * num_topk * static_cast<int64_t>(sizeof(int32_t));
}

void preload_dispatch() {
  UCCL_EP_CUDA_CHECK(cudaFuncSetAttribute(
      dispatch_send_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kMaxTopkSharedBytes));
  cudaFuncAttributes attr;
  UCCL_EP_CUDA_CHECK(cudaFuncGetAttributes(&attr, dispatch_send_kernel));
  UCCL_EP_CUDA_CHECK(cudaFuncGetAttributes(&attr, dispatch_recv_kernel));
}

void launch_dispatch_send(const DispatchArgs& a, int num_sms, cudaStream_t stream) {
  const int64_t smem = topk_shared_bytes(a.num_tokens, a.num_topk);
  dispatch_send_kernel<<<grid_for(static_cast<int>(a.p.layout.num_experts), num_sms), kThreads,
                         smem, stream>>>(a);
  UCCL_EP_CHECK_LAUNCH("low_latency_dispatch_send_kernel");
}

void launch_dispatch_recv(const DispatchArgs& a, int num_sms, cudaStream_t stream) {
  dispatch_recv_kernel<<<grid_for(static_cast<int>(a.p.layout.num_experts), num_sms), kThreads, 0,
                         stream>>>(a);
  UCCL_EP_CHECK_LAUNCH("low_latency_dispatch_recv_kernel");
}

}  // namespace uccl::ep::kernels::low_latency
