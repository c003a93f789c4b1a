// Per-SM copy throughput of the strategies the intranode kernels can use, on one process with
// two GPUs (peer access): warp-wide 16-byte copies with various unrolls and fence cadences,
// and bulk asynchronous copies (TMA, cp.async.bulk) staged through shared memory.
//
//   copy_microbench [--sms 24] [--mib 256] [--src 0] [--dst 1] [--json PATH] [--sweep 1]
//                   [--pitch BYTES] [--publisher 1]
//
// --publisher 1 instead measures 23 copy warps per SM next to a 24th warp that idles, polls
// shared memory, or releases a counter with system or GPU scope (back to back or paced), as the
// dispatch's publisher warp does next to the send warps: does such a warp slow the SM's copies?
// --sweep 1 instead measures warp copies over SM counts and warps per SM: mode 1 src pushes to
// dst, mode 2 both push to each other at once, mode 3 dst pulls from src (remote loads); this
// tells a per-SM limit from a link limit.
//
// Each variant copies the same bytes in 14336-byte rows (a BF16 token of hidden 7168) from
// GPU src to GPU dst (and to local memory when dst == src), timed with CUDA events (median of
// 5 after a warm-up), and checks the destination against the source.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "copy_common.cuh"
#include "device/warp_copy.cuh"

namespace {

using namespace uccl::ep::bench;

// ---- bulk asynchronous copies (sm_90) ----
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)),
               "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t phase) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra WAIT_%=;\n"
      "}\n" ::"r"(smem_addr(bar)),
      "r"(phase)
      : "memory");
}
__device__ __forceinline__ void tma_load(void* smem, const void* gmem, uint32_t bytes,
                                         uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::
          "r"(smem_addr(smem)),
      "l"(gmem), "r"(bytes), "r"(smem_addr(bar))
      : "memory");
}
__device__ __forceinline__ void tma_store(void* gmem, const void* smem, uint32_t bytes) {
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(gmem),
               "r"(smem_addr(smem)), "r"(bytes)
               : "memory");
  asm volatile("cp.async.bulk.commit_group;" ::: "memory");
}
template <int N>
__device__ __forceinline__ void tma_store_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(N) : "memory");
}
__device__ __forceinline__ void tma_store_wait_all() {
  asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
}

/// Each warp's lane 0 streams its rows in `chunk`-byte pieces through `stages` shared-memory
/// buffers: up to `stages` loads in flight, each followed by a bulk store.
__global__ void __launch_bounds__(256, 1)
    tma_copy_kernel(const uint8_t* src, uint8_t* dst, int num_rows, int chunk, int stages,
                    int fence_rows) {
  extern __shared__ __align__(128) uint8_t smem[];
  const int lane = threadIdx.x % 32, warp_in_block = threadIdx.x / 32;
  const int warps_per_block = blockDim.x / 32;
  const int warp = blockIdx.x * warps_per_block + warp_in_block;
  const int num_warps = gridDim.x * warps_per_block;
  auto* bars = reinterpret_cast<uint64_t*>(smem) + warp_in_block * stages;
  uint8_t* buf = smem + 128 * 8 + static_cast<int64_t>(warp_in_block) * stages * chunk;
  if (lane == 0)
    for (int s = 0; s < stages; ++s) mbar_init(&bars[s], 1);
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  __syncwarp();
  if (lane != 0) return;
  const int chunks_per_row = (kRowBytes + chunk - 1) / chunk;
  // The pieces of this warp, in order: (row, piece).
  const int my_rows = warp < num_rows ? (num_rows - warp + num_warps - 1) / num_warps : 0;
  const int64_t total = static_cast<int64_t>(my_rows) * chunks_per_row;
  auto piece_ptrs = [&](int64_t k, const uint8_t*& s, uint8_t*& d, uint32_t& bytes) {
    const int row = warp + static_cast<int>(k / chunks_per_row) * num_warps;
    const int off = static_cast<int>(k % chunks_per_row) * chunk;
    bytes = static_cast<uint32_t>(min(chunk, kRowBytes - off));
    s = src + static_cast<int64_t>(row) * kRowBytes + off;
    d = dst + static_cast<int64_t>(row) * kRowBytes + off;
  };
  uint32_t phase_bits = 0;
  for (int64_t k = 0; k < total && k < stages; ++k) {
    const uint8_t* s;
    uint8_t* d;
    uint32_t bytes;
    piece_ptrs(k, s, d, bytes);
    mbar_expect_tx(&bars[k], bytes);
    tma_load(buf + k * chunk, s, bytes, &bars[k]);
  }
  for (int64_t k = 0; k < total; ++k) {
    const int st = static_cast<int>(k % stages);
    const uint8_t* s;
    uint8_t* d;
    uint32_t bytes;
    piece_ptrs(k, s, d, bytes);
    mbar_wait(&bars[st], (phase_bits >> st) & 1u);
    phase_bits ^= 1u << st;
    tma_store(d, buf + st * chunk, bytes);
    if (fence_rows > 0 && (k + 1) % (static_cast<int64_t>(fence_rows) * chunks_per_row) == 0) {
      tma_store_wait_all();
      __threadfence_system();
    }
    const int64_t next = k + stages;
    if (next < total) {
      tma_store_wait_read<0>();  // stage `st` has been read by its store
      const uint8_t* s2;
      uint8_t* d2;
      uint32_t b2;
      piece_ptrs(next, s2, d2, b2);
      mbar_expect_tx(&bars[st], b2);
      tma_load(buf + st * chunk, s2, b2, &bars[st]);
    }
  }
  tma_store_wait_all();
}

/// TMA loads, SM stores: lane 0 keeps `stages` bulk loads of `chunk` bytes in flight into
/// shared memory; the whole warp copies each landed piece to the destination with 16-byte
/// stores (generic proxy, as the kernels' ring protocols need), then frees the stage.
__global__ void __launch_bounds__(768, 1)
    tma_load_warp_store_kernel(const uint8_t* src, uint8_t* dst, int num_rows, int chunk,
                               int stages) {
  extern __shared__ __align__(128) uint8_t smem[];
  const int lane = threadIdx.x % 32, warp_in_block = threadIdx.x / 32;
  const int warps_per_block = blockDim.x / 32;
  const int warp = blockIdx.x * warps_per_block + warp_in_block;
  const int num_warps = gridDim.x * warps_per_block;
  auto* bars = reinterpret_cast<uint64_t*>(smem) + warp_in_block * stages;
  uint8_t* buf = smem + 256 * 8 + static_cast<int64_t>(warp_in_block) * stages * chunk;
  if (lane == 0)
    for (int s = 0; s < stages; ++s) mbar_init(&bars[s], 1);
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  __syncwarp();
  const int chunks_per_row = (kRowBytes + chunk - 1) / chunk;
  const int my_rows = warp < num_rows ? (num_rows - warp + num_warps - 1) / num_warps : 0;
  const int64_t total = static_cast<int64_t>(my_rows) * chunks_per_row;
  auto piece = [&](int64_t k, const uint8_t*& s, uint8_t*& d, uint32_t& bytes) {
    const int row = warp + static_cast<int>(k / chunks_per_row) * num_warps;
    const int off = static_cast<int>(k % chunks_per_row) * chunk;
    bytes = static_cast<uint32_t>(min(chunk, kRowBytes - off));
    s = src + static_cast<int64_t>(row) * kRowBytes + off;
    d = dst + static_cast<int64_t>(row) * kRowBytes + off;
  };
  if (lane == 0) {
    for (int64_t k = 0; k < total && k < stages; ++k) {
      const uint8_t* s;
      uint8_t* d;
      uint32_t bytes;
      piece(k, s, d, bytes);
      mbar_expect_tx(&bars[k], bytes);
      tma_load(buf + k * chunk, s, bytes, &bars[k]);
    }
  }
  uint32_t phase_bits = 0;
  for (int64_t k = 0; k < total; ++k) {
    const int st = static_cast<int>(k % stages);
    const uint8_t* s;
    uint8_t* d;
    uint32_t bytes;
    piece(k, s, d, bytes);
    mbar_wait(&bars[st], (phase_bits >> st) & 1u);
    phase_bits ^= 1u << st;
    const int4* from = reinterpret_cast<const int4*>(buf + st * chunk);
    int4* to = reinterpret_cast<int4*>(d);
    for (int i = lane; i < static_cast<int>(bytes / 16); i += 32) st_na_v4(to + i, from[i]);
    __syncwarp();
    // The stage's generic reads before the async proxy writes it again.
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    const int64_t next = k + stages;
    if (lane == 0 && next < total) {
      const uint8_t* s2;
      uint8_t* d2;
      uint32_t b2;
      piece(next, s2, d2, b2);
      mbar_expect_tx(&bars[st], b2);
      tma_load(buf + st * chunk, s2, b2, &bars[st]);
    }
  }
}

/// --publisher: warps [0, 23) of each block copy rows (copy_rows over the grid's copy warps)
/// while warp 23 does what the dispatch's publisher warp does until they finish: mode 0 leaves
/// at once; 1 polls a shared-memory word; 2 also raises a device counter with
/// red.release.sys after every poll, 3 with red.release.gpu, 4 with red.release.sys and a
/// `sleep_ns` __nanosleep after each.
__global__ void __launch_bounds__(768, 1)
    publisher_copy_kernel(const uint8_t* src, uint8_t* dst, int num_rows, int32_t* counters,
                          int mode, int sleep_ns) {
  constexpr int kCopyWarps = 23;
  __shared__ int s_done;
  if (threadIdx.x == 0) s_done = 0;
  __syncthreads();
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (warp == kCopyWarps) {
    int32_t* counter = counters + blockIdx.x * 32;  // a line per block
    for (int iter = 1; mode != 0 && *static_cast<volatile int*>(&s_done) < kCopyWarps; ++iter) {
      if (lane == 0 && mode == 3)
        asm volatile("red.release.gpu.global.max.s32 [%0], %1;" ::"l"(counter), "r"(iter)
                     : "memory");
      else if (lane == 0 && mode >= 2)
        uccl::ep::device::red_max_release_sys(counter, iter);
      if (mode == 4) __nanosleep(sleep_ns);
      __syncwarp();
    }
    return;
  }
  if (warp > kCopyWarps) return;
  copy_rows<4>(src, dst, num_rows, blockIdx.x * kCopyWarps + warp, gridDim.x * kCopyWarps, 0,
               kRowBytes, kRowBytes);
  __syncwarp();
  if (lane == 0) atomicAdd(&s_done, 1);
}

struct Args {
  int sms = 24, src = 0, dst = 1, sweep = 0, pitch = 0, publisher = 0;
  int64_t mib = 256;
  std::string json;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--sms")
      a.sms = std::atoi(argv[i + 1]);
    else if (k == "--mib")
      a.mib = std::atoll(argv[i + 1]);
    else if (k == "--src")
      a.src = std::atoi(argv[i + 1]);
    else if (k == "--dst")
      a.dst = std::atoi(argv[i + 1]);
    else if (k == "--sweep")
      a.sweep = std::atoi(argv[i + 1]);
    else if (k == "--pitch")
      a.pitch = std::atoi(argv[i + 1]);
    else if (k == "--publisher")
      a.publisher = std::atoi(argv[i + 1]);
    else if (k == "--json")
      a.json = argv[i + 1];
    else {
      std::fprintf(stderr, "unknown flag %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

/// A pattern-filled source on GPU args.src (the pattern also kept in `host`) and a destination
/// on GPU args.dst, with peer access from src to dst; the current device is left at args.src.
struct CopyBuffers {
  uint8_t* src = nullptr;
  uint8_t* dst = nullptr;
  size_t bytes = 0;
  std::vector<uint8_t> host;

  CopyBuffers(const Args& args, size_t size) : bytes(size), host(size) {
    CHECK_CUDA(cudaSetDevice(args.dst));
    CHECK_CUDA(cudaMalloc(&dst, bytes));
    CHECK_CUDA(cudaSetDevice(args.src));
    if (args.src != args.dst) CHECK_CUDA(cudaDeviceEnablePeerAccess(args.dst, 0));
    CHECK_CUDA(cudaMalloc(&src, bytes));
    for (size_t i = 0; i < bytes; ++i) host[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
    CHECK_CUDA(cudaMemcpy(src, host.data(), bytes, cudaMemcpyHostToDevice));
  }

  /// Whether the destination holds the source's first `num_rows` rows of kRowBytes, the rows
  /// `src_pitch` bytes apart in the source and `dst_pitch` apart in the destination.
  bool dst_matches(int num_rows, int64_t src_pitch, int64_t dst_pitch) const {
    std::vector<uint8_t> back(bytes);
    CHECK_CUDA(cudaMemcpy(back.data(), dst, bytes, cudaMemcpyDeviceToHost));
    for (int64_t row = 0; row < num_rows; ++row)
      if (std::memcmp(back.data() + row * dst_pitch, host.data() + row * src_pitch, kRowBytes))
        return false;
    return true;
  }
};

/// Warp copies over SM counts x warps per SM; one direction, and both directions at once.
int run_sweep(const Args& args) {
  const int num_rows = static_cast<int>(args.mib * (1 << 20) / kRowBytes);
  const size_t bytes = static_cast<size_t>(num_rows) * kRowBytes;
  uint8_t *a_src = nullptr, *a_dst = nullptr, *b_src = nullptr, *b_dst = nullptr;
  CHECK_CUDA(cudaSetDevice(args.dst));
  if (args.src != args.dst) CHECK_CUDA(cudaDeviceEnablePeerAccess(args.src, 0));
  CHECK_CUDA(cudaMalloc(&a_dst, bytes));
  CHECK_CUDA(cudaMalloc(&b_src, bytes));
  CHECK_CUDA(cudaSetDevice(args.src));
  if (args.src != args.dst) CHECK_CUDA(cudaDeviceEnablePeerAccess(args.dst, 0));
  CHECK_CUDA(cudaMalloc(&a_src, bytes));
  CHECK_CUDA(cudaMalloc(&b_dst, bytes));
  cudaStream_t sa, sb;
  CHECK_CUDA(cudaStreamCreate(&sa));
  CHECK_CUDA(cudaSetDevice(args.dst));
  CHECK_CUDA(cudaStreamCreate(&sb));
  CHECK_CUDA(cudaSetDevice(args.src));
  std::FILE* json = args.json.empty() ? nullptr : std::fopen(args.json.c_str(), "w");
  if (json) std::fprintf(json, "{\"sweep\": [\n");
  bool first = true;
  std::printf("%-6s %-5s %-6s %-6s %10s %10s\n", "mode", "sms", "warps", "unroll", "GB/s/dir",
              "GB/s/SM");
  // mode 0: src pushes to dst; 1: both push to each other; 2: dst pulls from src (remote loads).
  for (int bidir : {0, 1, 2}) {
    for (int sms : {4, 8, 12, 16, 24, 32}) {
      for (int warps : {8, 12, 16, 24}) {
        for (int unroll : {4, 8}) {
          auto launch = [&](cudaStream_t s, int dev, const uint8_t* from, uint8_t* to) {
            CHECK_CUDA(cudaSetDevice(dev));
            if (unroll == 4)
              warp_copy_kernel<4><<<sms, 32 * warps, 0, s>>>(from, to, num_rows, 0);
            else
              warp_copy_kernel<8><<<sms, 32 * warps, 0, s>>>(from, to, num_rows, 0);
          };
          auto run = [&] {
            if (bidir == 2) {
              launch(sb, args.dst, a_src, b_src);
              return;
            }
            launch(sa, args.src, a_src, a_dst);
            if (bidir) launch(sb, args.dst, b_src, b_dst);
          };
          run();
          CHECK_CUDA(cudaDeviceSynchronize());
          std::vector<float> ms;
          for (int it = 0; it < 5; ++it) {
            CHECK_CUDA(cudaSetDevice(args.dst));
            CHECK_CUDA(cudaDeviceSynchronize());
            CHECK_CUDA(cudaSetDevice(args.src));
            CHECK_CUDA(cudaDeviceSynchronize());
            const auto t0 = std::chrono::steady_clock::now();
            run();
            CHECK_CUDA(cudaStreamSynchronize(sa));
            CHECK_CUDA(cudaStreamSynchronize(sb));
            ms.push_back(
                std::chrono::duration<float, std::milli>(std::chrono::steady_clock::now() - t0)
                    .count());
          }
          CHECK_CUDA(cudaSetDevice(args.src));
          std::sort(ms.begin(), ms.end());
          const double gbps = bytes / (ms[2] * 1e-3) / 1e9;
          std::printf("%-6d %-5d %-6d %-6d %10.1f %10.2f\n", bidir + 1, sms, warps, unroll, gbps,
                      gbps / sms);
          if (json)
            std::fprintf(json,
                         "%s{\"mode\": %d, \"sms\": %d, \"warps\": %d, \"unroll\": %d, "
                         "\"gbps_per_dir\": %.2f}",
                         first ? "" : ",\n", bidir + 1, sms, warps, unroll, gbps);
          first = false;
        }
      }
    }
  }
  if (json) {
    std::fprintf(json, "\n]}\n");
    std::fclose(json);
  }
  return 0;
}

/// --pitch: rows of 14336 bytes between pitches (14336 or args.pitch) on src -> dst.
int run_pitch(const Args& args) {
  if (args.pitch < kRowBytes || args.pitch % 16 != 0) {
    std::fprintf(stderr, "--pitch %d must be a multiple of 16, at least %d\n", args.pitch,
                 kRowBytes);
    return 2;
  }
  const int num_rows = static_cast<int>(args.mib * (1 << 20) / args.pitch);
  const CopyBuffers buf(args, static_cast<size_t>(num_rows) * args.pitch);
  std::FILE* json = args.json.empty() ? nullptr : std::fopen(args.json.c_str(), "w");
  if (json) std::fprintf(json, "{\"sms\": %d, \"pitch\": [\n", args.sms);
  bool all_ok = true;
  const int64_t p = args.pitch, r = kRowBytes;
  const int64_t cases[4][2] = {{r, r}, {r, p}, {p, r}, {p, p}};
  for (int c = 0; c < 4; ++c) {
    const int64_t sp = cases[c][0], dp = cases[c][1];
    CHECK_CUDA(cudaMemset(buf.dst, 0, buf.bytes));
    const float ms = time_median(
        [&] { warp_copy_kernel<4><<<args.sms, 768>>>(buf.src, buf.dst, num_rows, 0, sp, dp); });
    const bool ok = buf.dst_matches(num_rows, sp, dp);
    all_ok &= ok;
    const double gbps = static_cast<double>(num_rows) * kRowBytes / (ms * 1e-3) / 1e9;
    std::printf("src pitch %6lld -> dst pitch %6lld  %8.1f us  %7.1f GB/s  %6.2f GB/s per SM  %s\n",
                static_cast<long long>(sp), static_cast<long long>(dp), ms * 1e3, gbps,
                gbps / args.sms, ok ? "ok" : "MISMATCH");
    if (json)
      std::fprintf(json, "%s{\"src_pitch\": %lld, \"dst_pitch\": %lld, \"gbps\": %.2f}",
                   c ? ",\n" : "", static_cast<long long>(sp), static_cast<long long>(dp), gbps);
  }
  if (json) {
    std::fprintf(json, "\n]}\n");
    std::fclose(json);
  }
  return all_ok ? 0 : 1;
}

/// --publisher: 23 copy warps per SM, with the 24th idle, polling shared memory, or releasing a
/// counter (system / GPU scope, back to back or every 256 / 1024 ns) at once.
int run_publisher(const Args& args) {
  const int num_rows = static_cast<int>(args.mib * (1 << 20) / kRowBytes);
  const CopyBuffers buf(args, static_cast<size_t>(num_rows) * kRowBytes);
  int32_t* counters = nullptr;
  CHECK_CUDA(cudaMalloc(&counters, static_cast<size_t>(args.sms) * 32 * sizeof(int32_t)));
  const struct {
    const char* name;
    int mode, sleep_ns;
  } variants[] = {
      {"23 copy warps, 24th idle", 0, 0},          {"+ warp polling shared memory", 1, 0},
      {"+ warp releasing (sys) per poll", 2, 0},   {"+ warp releasing (gpu) per poll", 3, 0},
      {"+ warp releasing (sys) / 256 ns", 4, 256}, {"+ warp releasing (sys) / 1024 ns", 4, 1024}};
  bool all_ok = true;
  for (const auto& v : variants) {
    CHECK_CUDA(cudaMemset(buf.dst, 0, buf.bytes));
    CHECK_CUDA(cudaMemset(counters, 0, static_cast<size_t>(args.sms) * 32 * sizeof(int32_t)));
    const float ms = time_median([&] {
      publisher_copy_kernel<<<args.sms, 768>>>(buf.src, buf.dst, num_rows, counters, v.mode,
                                               v.sleep_ns);
    });
    const bool ok = buf.dst_matches(num_rows, kRowBytes, kRowBytes);
    all_ok &= ok;
    const double gbps = buf.bytes / (ms * 1e-3) / 1e9;
    std::printf("%-34s %8.1f us  %7.1f GB/s  %6.2f GB/s per SM  %s\n", v.name, ms * 1e3, gbps,
                gbps / args.sms, ok ? "ok" : "MISMATCH");
  }
  return all_ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  int count = 0;
  CHECK_CUDA(cudaGetDeviceCount(&count));
  if (count <= std::max(args.src, args.dst)) {
    std::fprintf(stderr, "needs GPUs %d and %d, found %d\n", args.src, args.dst, count);
    return 1;
  }
  if (args.sweep) return run_sweep(args);
  if (args.pitch) return run_pitch(args);
  if (args.publisher) return run_publisher(args);
  const int num_rows = static_cast<int>(args.mib * (1 << 20) / kRowBytes);
  const CopyBuffers buf(args, static_cast<size_t>(num_rows) * kRowBytes);
  uint8_t* const src = buf.src;
  uint8_t* const dst = buf.dst;
  const size_t bytes = buf.bytes;

  std::FILE* json = args.json.empty() ? nullptr : std::fopen(args.json.c_str(), "w");
  if (json) std::fprintf(json, "{\"sms\": %d, \"bytes\": %zu, \"results\": [\n", args.sms, bytes);
  bool first = true, all_ok = true;
  auto report = [&](const std::string& name, float ms) {
    const bool ok = buf.dst_matches(num_rows, kRowBytes, kRowBytes);
    all_ok &= ok;
    const double gbps = bytes / (ms * 1e-3) / 1e9;
    std::printf("%-34s %8.1f us  %7.1f GB/s  %6.2f GB/s per SM  %s\n", name.c_str(), ms * 1e3, gbps,
                gbps / args.sms, ok ? "ok" : "MISMATCH");
    if (json)
      std::fprintf(json, "%s{\"variant\": \"%s\", \"us\": %.2f, \"gbps\": %.2f, \"ok\": %s}",
                   first ? "" : ",\n", name.c_str(), ms * 1e3, gbps, ok ? "true" : "false");
    first = false;
    CHECK_CUDA(cudaMemset(dst, 0, bytes));
  };
  CHECK_CUDA(cudaMemset(dst, 0, bytes));
  for (int fence : {0, 2, 1}) {
    const std::string f = fence ? ",fence/" + std::to_string(fence) : "";
    report("warp unroll4" + f,
           time_median([&] { warp_copy_kernel<4><<<args.sms, 768>>>(src, dst, num_rows, fence); }));
    report("warp unroll8" + f,
           time_median([&] { warp_copy_kernel<8><<<args.sms, 768>>>(src, dst, num_rows, fence); }));
    report("warp unroll16" + f, time_median([&] {
             warp_copy_kernel<16><<<args.sms, 768>>>(src, dst, num_rows, fence);
           }));
  }
  for (int chunk : {4096, 7168, 14336}) {
    for (int stages : {2, 4}) {
      for (int warps : {2, 4, 8}) {
        const size_t smem = 128 * 8 + static_cast<size_t>(warps) * stages * chunk;
        if (smem > 227 * 1024) continue;
        CHECK_CUDA(cudaFuncSetAttribute(
            tma_copy_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
        const std::string name = "tma chunk " + std::to_string(chunk) + " stages " +
                                 std::to_string(stages) + " warps " + std::to_string(warps);
        report(name, time_median([&] {
                 tma_copy_kernel<<<args.sms, 32 * warps, smem>>>(src, dst, num_rows, chunk, stages,
                                                                 0);
               }));
      }
    }
  }
  for (int chunk : {2048, 4096, 7168}) {
    for (int stages : {2, 3, 4}) {
      for (int warps : {4, 8, 12, 16, 24}) {
        const size_t smem = 256 * 8 + static_cast<size_t>(warps) * stages * chunk;
        if (smem > 227 * 1024) continue;
        CHECK_CUDA(cudaFuncSetAttribute(tma_load_warp_store_kernel,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)));
        const std::string name = "tma-load+st chunk " + std::to_string(chunk) + " stages " +
                                 std::to_string(stages) + " warps " + std::to_string(warps);
        report(name, time_median([&] {
                 tma_load_warp_store_kernel<<<args.sms, 32 * warps, smem>>>(src, dst, num_rows,
                                                                            chunk, stages);
               }));
      }
    }
  }
  if (json) {
    std::fprintf(json, "\n]}\n");
    std::fclose(json);
  }
  return all_ok ? 0 : 1;
}
