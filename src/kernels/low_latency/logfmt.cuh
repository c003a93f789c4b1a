// LogFMT-10, the optional wire format of a low-latency combine row (use_logfmt=True).
//
// A row of H bf16 values is sent as H/128 groups of 128 channels. Group g keeps its 256-byte
// BF16 place at byte g * 256 of the row; the row's meta follows the data at byte 2H: per group
// the bf16 bits of (amax, amin) of |x| (zeros included). A group is encoded when
// log2(amax) < 0 and lmin < log2(amax), with lmin = max(log2(amin), log2(amax) - 32): every value
// becomes 10 bits, a sign and a 9-bit code on a log grid of 511 levels, level c (c >= 1) being
// 2^(lmin + (c - 1) * step), step = (log2(amax) - lmin) / 510, and code 0 standing for the level
// 2^(lmin - step) but read back as zero. A value takes the level nearest to it in linear terms. The
// 128 codes fill the first 160 bytes of the group's place: 16 lanes x 8 codes, lane i's codes as
// five uint16 words at byte 10 i. Other groups stay BF16. Both sides derive (cast, lmin, step) from
// the meta alone, with the same device functions, so the receiver decodes exactly the grid the
// sender used.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace uccl::ep::kernels::low_latency::logfmt {

constexpr int kGroupBytes = 256;       // a group's place in the row
constexpr int kEncodedBytes = 160;     // 128 values x 10 bits
constexpr int kLaneEncodedBytes = 10;  // 8 values x 10 bits
constexpr float kMinClip = 32.0f;
constexpr int kLevels = 511;  // codes 1..511; 0 is zero

struct Grid {
  bool cast;
  float log_min, step;
};

__device__ __forceinline__ Grid grid_of(float amax, float amin) {
  Grid g;
  const float log_max = log2f(amax);
  g.log_min = fmaxf(log2f(amin), log_max - kMinClip);
  g.cast = log_max < 0.0f && g.log_min < log_max;
  g.step = (log_max - g.log_min) / static_cast<float>(kLevels - 1);
  return g;
}

/// The high half of a float's bits (exact for values that came from bf16).
__device__ __forceinline__ uint32_t bf16_bits(float v) {
  return __float_as_uint(v) >> 16;
}
__device__ __forceinline__ float from_bf16_bits(uint32_t bits) {
  return __uint_as_float((bits & 0xffffu) << 16);
}

/// Code (sign << 9 | level) of `v` on grid `g`; `offset` = 2 - log2((1 + 2^step) / 2) / step
/// puts each threshold at the linear midpoint of two levels.
__device__ __forceinline__ uint32_t encode(float v, const Grid& g, float offset) {
  const float a = fabsf(v);
  uint32_t level = 0;
  if (a > 0.0f) {
    const float c = floorf((log2f(a) - g.log_min) / g.step + offset);
    level =
        c <= 0.0f ? 0u : (c >= kLevels ? static_cast<uint32_t>(kLevels) : static_cast<uint32_t>(c));
  }
  return (v < 0.0f ? 0x200u : 0u) | level;
}

__device__ __forceinline__ float decode(uint32_t code, const Grid& g) {
  const uint32_t level = code & 0x1ffu;
  const float a = level == 0 ? 0.0f : exp2f(static_cast<float>(level - 1) * g.step + g.log_min);
  return (code & 0x200u) != 0 ? -a : a;
}

__device__ __forceinline__ float rounding_offset(const Grid& g) {
  return 2.0f - log2f(0.5f * (1.0f + exp2f(g.step))) / g.step;
}

/// Half-warp `sub` lanes (0..15) of one group: lane `sub` holds channels 8 sub .. 8 sub + 7 in
/// `f`. Writes the group's place at `group` (256 bytes) and its meta word at `meta`; the 16 lanes
/// must be converged (shuffles over xor 8..1).
__device__ __forceinline__ void encode_group(const float (&f)[8], const int4& raw, int sub,
                                             uint8_t* group, uint32_t* meta) {
  float amax = 0.0f, amin = INFINITY;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    amax = fmaxf(amax, fabsf(f[j]));
    amin = fminf(amin, fabsf(f[j]));
  }
#pragma unroll
  for (int o = 8; o >= 1; o /= 2) {
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    amin = fminf(amin, __shfl_xor_sync(0xffffffffu, amin, o));
  }
  if (sub == 0) *meta = bf16_bits(amax) | (bf16_bits(amin) << 16);
  const Grid g = grid_of(amax, amin);
  if (!g.cast) {
    reinterpret_cast<int4*>(group)[sub] = raw;
    return;
  }
  const float offset = rounding_offset(g);
  auto* out = reinterpret_cast<uint16_t*>(group + sub * kLaneEncodedBytes);
  uint64_t bits = 0;  // 8 codes x 10 bits = 80 bits: the low 64 here, the rest in `high`
  uint32_t high = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const uint64_t c = encode(f[j], g, offset);
    const int shift = 10 * j;
    if (shift < 64) bits |= c << shift;
    if (shift >= 64)
      high |= static_cast<uint32_t>(c << (shift - 64));
    else if (shift + 10 > 64)
      high |= static_cast<uint32_t>(c >> (64 - shift));
  }
#pragma unroll
  for (int w = 0; w < 4; ++w) out[w] = static_cast<uint16_t>(bits >> (16 * w));
  out[4] = static_cast<uint16_t>(high);
}

/// The eight codes of lane `sub` of an encoded group, as floats.
__device__ __forceinline__ void decode_lane(const uint16_t (&w)[5], const Grid& g, float (&f)[8]) {
  uint64_t bits = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) bits |= static_cast<uint64_t>(w[i]) << (16 * i);
  const uint32_t high = w[4];
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int shift = 10 * j;
    uint32_t c = shift < 64 ? static_cast<uint32_t>(bits >> shift) : high >> (shift - 64);
    if (shift < 64 && shift + 10 > 64) c |= high << (64 - shift);
    f[j] = decode(c & 0x3ffu, g);
  }
}

}  // namespace uccl::ep::kernels::low_latency::logfmt
