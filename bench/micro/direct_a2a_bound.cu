// The SM direct-write all-to-all bound: every GPU writes each routed token row straight into
// its final row on the destination GPU (peers over NVLink, itself locally), all GPUs at once,
// with `--sms` blocks per GPU and nothing else: no rings, no receive copy, no synchronisation
// beyond a start barrier: what SM stores of rows into their final places deliver on the
// machine, so it says how far a target is from that kind of design.
//
//   direct_a2a_bound [--gpus N] [--sms 24] [--tokens 4096] [--hidden 7168] [--experts 256]
//                    [--topk 8] [--repeat 10] [--window W] [--ce-share P] [--json PATH]
//
// --window W (experiment): rows do not go to their final places but, as into a ring, to slot
// k % W of a W-row region per (source GPU, block) on the destination (k: the block's k-th row
// to it), so the stores keep hitting a small region. Compared with the default, it says
// whether stores into a reused region complete faster. Each slot is checked to hold one of
// the rows that map to it.
//
// --ce-share P (experiment): the copy engines move the rows of each source's first P % of
// tokens to every peer (one copy of those whole rows per peer, into a staging area there,
// started when the kernel's start barrier releases), the SMs write the other rows as above and,
// last, copy the staged rows that are routed to their GPU into their final places (after the
// copy's completion flag, written by the copy engine's stream). It says what copy engines
// sharing the NVLink traffic could add to SM stores.
//
// --remote-sms K (experiment): blocks [0, K) write only the rows that go to peers, the others
// only the GPU's own rows (and, with --ce-share, the staged ones): does keeping NVLink stores
// and local copies on separate SMs move more than mixing them in every block?
//
// Routing: each token picks `topk` distinct experts uniformly (as bench_intranode.py), so it
// goes to the ranks holding them. Rows from source s land in the destination's block s in
// token order (DeepEP's layout). Reported per row size (BF16: hidden * 2 bytes; FP8: hidden +
// hidden / 128 * 4 bytes of scales, DeepEP's FP8 accounting): the DeepEP-counted GB/s of the
// slowest GPU (rows it receives, its own included, times the row size, over the all-to-all's
// time: from the barrier's release to the last block's end, per GPU clock, the slowest GPU's),
// median of `--repeat` runs. Every received row's first 16 bytes are checked afterwards.
#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "cuda_exit_check.h"

#define CHECK_CU(expr)                                                               \
  do {                                                                               \
    const CUresult r_ = (expr);                                                      \
    if (r_ != CUDA_SUCCESS) {                                                        \
      const char* s_ = "unknown";                                                    \
      cuGetErrorString(r_, &s_);                                                     \
      std::fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, s_); \
      std::exit(1);                                                                  \
    }                                                                                \
  } while (0)
#include "device/ptx.cuh"

namespace {

using uccl::ep::device::global_timer_ns;
using uccl::ep::device::ld_acquire_sys;
using uccl::ep::device::ld_nc_v4;
using uccl::ep::device::st_na_v4;

constexpr int kMaxGpus = 8;
constexpr int kThreads = 768;
constexpr uint64_t kBarrierTimeoutNs = 10'000'000'000ull;

struct Task {
  int token, dest, row;  // source row, destination GPU, row there
  int staged_from;       // --ce-share: -1, or the source GPU whose staged row `token` this is
};
struct Dests {
  uint8_t* base[kMaxGpus];
};

/// --ce-share: this GPU's staging area, the copy engines' completion flags (one per source GPU)
/// and the word that starts this GPU's copies; all compared with the run's epoch.
struct Staging {
  const uint8_t* rows;  // [gpus * tokens] rows: source s's token t at s * tokens + t
  const uint32_t* done;
  uint32_t* go;
  int tokens;
  uint32_t epoch;
};

/// Block b copies tasks [first[b], first[b + 1]) (a channel's tokens, in order; with
/// --ce-share its staged rows last), warp-interleaved, 4 words per lane in flight. `arrivals`
/// (on GPU 0) is the start barrier of all blocks of all GPUs; times[2b], times[2b+1] get the
/// block's start and end (this GPU's clock).
__global__ void __launch_bounds__(kThreads, 1)
    a2a_kernel(const uint8_t* src, Dests dests, const Task* tasks, const int* first, int row_bytes,
               Staging staging, unsigned* arrivals, unsigned expected, uint64_t* times,
               int* timed_out) {
  if (threadIdx.x == 0) {
    atomicAdd_system(arrivals, 1u);
    const uint64_t t0 = global_timer_ns();
    while (*reinterpret_cast<volatile unsigned*>(arrivals) < expected) {
      if (global_timer_ns() - t0 > kBarrierTimeoutNs) {
        *timed_out = 1;
        break;
      }
    }
    times[2 * blockIdx.x] = global_timer_ns();
    if (blockIdx.x == 0 && staging.go != nullptr)  // starts this GPU's copy-engine copies
      *reinterpret_cast<volatile uint32_t*>(staging.go) = staging.epoch;
  }
  __syncthreads();
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = kThreads / 32;
  const int words = row_bytes / 16;
  int ready = -1;  // the source whose staged rows this warp has seen complete
  for (int i = first[blockIdx.x] + warp; i < first[blockIdx.x + 1]; i += warps) {
    const Task t = tasks[i];
    const uint8_t* row = src + static_cast<int64_t>(t.token) * row_bytes;
    if (t.staged_from >= 0) {
      if (t.staged_from != ready) {
        const uint64_t t0 = global_timer_ns();
        while (ld_acquire_sys(staging.done + t.staged_from) < staging.epoch) {
          if (global_timer_ns() - t0 > kBarrierTimeoutNs) {
            *timed_out = 1;
            return;
          }
        }
        ready = t.staged_from;
      }
      row = staging.rows +
            (static_cast<int64_t>(t.staged_from) * staging.tokens + t.token) * row_bytes;
    }
    const auto* s = reinterpret_cast<const int4*>(row);
    auto* d = reinterpret_cast<int4*>(dests.base[t.dest] + static_cast<int64_t>(t.row) * row_bytes);
    for (int w = lane; w < words; w += 4 * 32) {
      int4 v[4];
#pragma unroll
      for (int u = 0; u < 4; ++u)
        if (w + 32 * u < words) v[u] = ld_nc_v4(s + w + 32 * u);
#pragma unroll
      for (int u = 0; u < 4; ++u)
        if (w + 32 * u < words) st_na_v4(d + w + 32 * u, v[u]);
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) times[2 * blockIdx.x + 1] = global_timer_ns();
}

struct Args {
  int gpus = 0, sms = 24, tokens = 4096, hidden = 7168, experts = 256, topk = 8, repeat = 10;
  int window = 0;      // > 0: ring-like destination regions of this many rows
  int ce_share = 0;    // > 0: percent of tokens whose rows the copy engines move
  int remote_sms = 0;  // > 0: blocks that write only the peers' rows (the others the local ones)
  std::string json;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    const bool has_value = i + 1 < argc;
    auto value = [&] { return std::atoi(argv[++i]); };
    if (k == "--gpus" && has_value)
      a.gpus = value();
    else if (k == "--sms" && has_value)
      a.sms = value();
    else if (k == "--tokens" && has_value)
      a.tokens = value();
    else if (k == "--hidden" && has_value)
      a.hidden = value();
    else if (k == "--experts" && has_value)
      a.experts = value();
    else if (k == "--topk" && has_value)
      a.topk = value();
    else if (k == "--repeat" && has_value)
      a.repeat = value();
    else if (k == "--window" && has_value)
      a.window = value();
    else if (k == "--remote-sms" && has_value)
      a.remote_sms = value();
    else if (k == "--ce-share" && has_value)
      a.ce_share = value();
    else if (k == "--json" && has_value)
      a.json = argv[++i];
    else {
      std::fprintf(stderr, "direct_a2a_bound: unknown or incomplete flag '%s'\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

/// Tasks of `list` spread evenly over blocks [first_block, first_block + num_blocks), each
/// block's share contiguous and in order.
struct Share {
  const std::vector<Task>* list;
  int first_block, num_blocks;
};

/// Appends every block's tasks (its part of each share, in the order given) to `out` and each
/// block's start to `first` (plus the end after the last block).
void split_over_blocks(std::initializer_list<Share> shares, int sms, std::vector<Task>& out,
                       std::vector<int>& first) {
  std::vector<std::vector<Task>> per_block(sms);
  for (const Share& sh : shares) {
    const size_t n = sh.list->size();
    for (int b = 0; b < sh.num_blocks; ++b)
      per_block[sh.first_block + b].insert(per_block[sh.first_block + b].end(),
                                           sh.list->begin() + n * b / sh.num_blocks,
                                           sh.list->begin() + n * (b + 1) / sh.num_blocks);
  }
  for (const auto& tasks : per_block) {
    first.push_back(static_cast<int>(out.size()));
    out.insert(out.end(), tasks.begin(), tasks.end());
  }
  first.push_back(static_cast<int>(out.size()));
}

/// --ce-share: the rows of tokens below `cut` that source s sends to GPU d, as tasks of d
/// copying them from its staging area into their final rows.
std::vector<Task> staged_tasks(const std::vector<std::vector<uint32_t>>& mask,
                               const std::vector<std::vector<int>>& count, int d, int cut) {
  std::vector<Task> list;
  int row = 0;  // first row of source s's block on d
  for (size_t s = 0; s < mask.size(); ++s) {
    int k = row;
    for (int t = 0; t < cut; ++t)
      if (mask[s][t] >> d & 1u) {
        if (static_cast<int>(s) != d) list.push_back({t, d, k, static_cast<int>(s)});
        ++k;
      }
    row += count[s][d];
  }
  return list;
}

/// --window: the k-th row block b of GPU g sends to d goes to slot k % window of region
/// (g, b) on d; records which (g, token) pairs each slot may hold.
void remap_to_windows(std::vector<Task>& list, int g, int n, int sms, int window,
                      std::vector<std::vector<std::vector<std::pair<int, int>>>>& slot_tokens) {
  const int64_t num = static_cast<int64_t>(list.size());
  for (int b = 0; b < sms; ++b) {
    std::vector<int> k(n, 0);
    for (int64_t i = num * b / sms; i < num * (b + 1) / sms; ++i) {
      Task& t = list[i];
      t.row = (g * sms + b) * window + k[t.dest]++ % window;
      slot_tokens[t.dest][t.row].push_back({g, t.token});
    }
  }
}

/// --window: slots of `dst` that were written must hold one of their rows. Returns mismatches.
int check_windows(const uint8_t* dst, int row_bytes,
                  const std::vector<std::vector<std::pair<int, int>>>& slot_tokens) {
  const size_t rows = slot_tokens.size();
  std::vector<int32_t> heads(rows * 4);
  CHECK_CUDA(cudaMemcpy2D(heads.data(), 16, dst, row_bytes, 16, rows, cudaMemcpyDeviceToHost));
  int bad = 0;
  for (size_t r = 0; r < rows; ++r) {
    if (slot_tokens[r].empty()) continue;
    const int32_t* h = &heads[4 * r];
    bool found = false;
    for (const auto& [s, t] : slot_tokens[r])
      found = found || (h[0] == s && h[1] == t && h[2] == s && h[3] == t);
    bad += found ? 0 : 1;
  }
  return bad;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  int available = 0;
  CHECK_CUDA(cudaGetDeviceCount(&available));
  const int n = a.gpus > 0 ? a.gpus : std::min(available, kMaxGpus);
  if (a.window < 0 || a.remote_sms < 0 || a.remote_sms >= a.sms ||
      (a.remote_sms > 0 && a.window > 0) || a.ce_share < 0 || a.ce_share > 90 ||
      (a.ce_share > 0 && a.window > 0) || n < 2 || n > available || n > kMaxGpus ||
      a.experts % n != 0 || a.hidden % 128 != 0 || a.topk > a.experts || a.sms < 1 ||
      a.repeat < 1) {
    std::fprintf(stderr,
                 "direct_a2a_bound: need 2..%d GPUs (have %d, asked %d), experts divisible by "
                 "them, hidden a multiple of 128, topk <= experts, sms and repeat >= 1, "
                 "window >= 0, ce-share in [0, 90], remote-sms in [0, sms), window with neither\n",
                 kMaxGpus, available, n);
    return 2;
  }
  for (int g = 0; g < n; ++g) {
    CHECK_CUDA(cudaSetDevice(g));
    for (int p = 0; p < n; ++p)
      if (p != g) CHECK_CUDA(cudaDeviceEnablePeerAccess(p, 0));
  }
  // Routing: mask[g][t] has bit d when token t of GPU g goes to GPU d.
  std::mt19937 rng(1234);
  std::vector<std::vector<uint32_t>> mask(n, std::vector<uint32_t>(a.tokens, 0));
  std::vector<int> experts(a.experts);
  for (auto& per_gpu : mask)
    for (auto& m : per_gpu) {
      for (int e = 0; e < a.experts; ++e) experts[e] = e;
      for (int k = 0; k < a.topk; ++k) {
        std::swap(experts[k], experts[k + rng() % (a.experts - k)]);
        m |= 1u << (experts[k] / (a.experts / n));
      }
    }
  std::vector<std::vector<int>> count(n, std::vector<int>(n, 0));  // count[src][dst]
  for (int s = 0; s < n; ++s)
    for (int t = 0; t < a.tokens; ++t)
      for (int d = 0; d < n; ++d) count[s][d] += mask[s][t] >> d & 1u;
  std::vector<int> received(n, 0);
  for (int d = 0; d < n; ++d)
    for (int s = 0; s < n; ++s) received[d] += count[s][d];
  // Rows of each destination buffer: every received row, or the W-row regions of --window.
  std::vector<int> dst_rows = received;
  if (a.window > 0) std::fill(dst_rows.begin(), dst_rows.end(), n * a.sms * a.window);

  unsigned* arrivals = nullptr;
  int* timed_out = nullptr;
  CHECK_CUDA(cudaSetDevice(0));
  CHECK_CUDA(cudaMalloc(&arrivals, sizeof(unsigned)));
  CHECK_CUDA(cudaMallocHost(&timed_out, sizeof(int)));
  *timed_out = 0;

  std::string json = "{\"gpus\": " + std::to_string(n) + ", \"sms\": " + std::to_string(a.sms) +
                     ", \"tokens\": " + std::to_string(a.tokens) +
                     ", \"window\": " + std::to_string(a.window) +
                     ", \"ce_share\": " + std::to_string(a.ce_share) +
                     ", \"remote_sms\": " + std::to_string(a.remote_sms) + ", \"results\": [";
  const int cut = a.tokens * a.ce_share / 100;  // --ce-share: tokens whose rows the CEs move
  const int bf16_row = a.hidden * 2, fp8_row = a.hidden + a.hidden / 128 * 4;
  bool all_ok = true;
  for (const int row_bytes : {bf16_row, fp8_row}) {
    std::vector<uint8_t*> src(n), dst(n);
    std::vector<Task*> tasks(n);
    // --window: slot_tokens[d][row] lists the (source GPU, token) pairs that map to that row.
    std::vector<std::vector<std::vector<std::pair<int, int>>>> slot_tokens(n);
    for (int d = 0; d < n; ++d) slot_tokens[d].resize(a.window > 0 ? dst_rows[d] : 0);
    std::vector<int*> firsts(n);
    std::vector<uint64_t*> times(n);
    std::vector<cudaStream_t> streams(n);
    // --ce-share: staging rows, flags (done[0..n-1], go at [n]) and one copy stream per peer.
    std::vector<uint8_t*> staging(n, nullptr);
    std::vector<uint32_t*> words(n, nullptr);
    std::vector<std::vector<cudaStream_t>> ce_streams(n, std::vector<cudaStream_t>(n));
    Dests dests{};
    for (int g = 0; g < n; ++g) {
      CHECK_CUDA(cudaSetDevice(g));
      CHECK_CUDA(cudaMalloc(&src[g], static_cast<size_t>(a.tokens) * row_bytes));
      CHECK_CUDA(cudaMalloc(&dst[g], static_cast<size_t>(dst_rows[g]) * row_bytes));
      CHECK_CUDA(cudaMalloc(&times[g], 2 * a.sms * sizeof(uint64_t)));
      CHECK_CUDA(cudaStreamCreateWithFlags(&streams[g], cudaStreamNonBlocking));
      // Row t of GPU g starts with the words (g, t, g, t): what the check expects.
      std::vector<int32_t> heads(static_cast<size_t>(a.tokens) * 4);
      for (int t = 0; t < a.tokens; ++t) {
        heads[4 * t] = heads[4 * t + 2] = g;
        heads[4 * t + 1] = heads[4 * t + 3] = t;
      }
      CHECK_CUDA(cudaMemset(src[g], 0x5a, static_cast<size_t>(a.tokens) * row_bytes));
      CHECK_CUDA(
          cudaMemcpy2D(src[g], row_bytes, heads.data(), 16, 16, a.tokens, cudaMemcpyHostToDevice));
      dests.base[g] = dst[g];
      if (cut > 0) {
        CHECK_CUDA(cudaMalloc(&staging[g], static_cast<size_t>(n) * a.tokens * row_bytes));
        CHECK_CUDA(cudaMalloc(&words[g], (n + 1) * sizeof(uint32_t)));
        CHECK_CUDA(cudaMemset(words[g], 0, (n + 1) * sizeof(uint32_t)));
        for (int p = 0; p < n; ++p)
          if (p != g)
            CHECK_CUDA(cudaStreamCreateWithFlags(&ce_streams[g][p], cudaStreamNonBlocking));
      }
    }
    for (int g = 0; g < n; ++g) {  // tasks in token order, destinations rotated per token
      std::vector<Task> list;
      std::vector<int> next(n);
      for (int d = 0; d < n; ++d) {
        next[d] = 0;
        for (int s = 0; s < g; ++s) next[d] += count[s][d];
      }
      for (int t = 0; t < a.tokens; ++t)
        for (int j = 0; j < n; ++j) {
          const int d = (g + t + j) % n;
          if (!(mask[g][t] >> d & 1u)) continue;
          const int row = next[d]++;
          if (d == g || t >= cut) list.push_back({t, d, row, -1});  // else: the CEs move it
        }
      if (a.window > 0) remap_to_windows(list, g, n, a.sms, a.window, slot_tokens);
      std::vector<Task> all;
      std::vector<int> first;
      const std::vector<Task> staged = staged_tasks(mask, count, g, cut);
      if (a.remote_sms == 0) {
        split_over_blocks({{&list, 0, a.sms}, {&staged, 0, a.sms}}, a.sms, all, first);
      } else {  // blocks [0, K) write the peers' rows, the others the local and staged ones
        std::vector<Task> remote, local;
        for (const Task& t : list) (t.dest == g ? local : remote).push_back(t);
        const int k = a.remote_sms;
        split_over_blocks({{&remote, 0, k}, {&local, k, a.sms - k}, {&staged, k, a.sms - k}}, a.sms,
                          all, first);
      }
      CHECK_CUDA(cudaSetDevice(g));
      CHECK_CUDA(cudaMalloc(&tasks[g], all.size() * sizeof(Task)));
      CHECK_CUDA(
          cudaMemcpy(tasks[g], all.data(), all.size() * sizeof(Task), cudaMemcpyHostToDevice));
      CHECK_CUDA(cudaMalloc(&firsts[g], first.size() * sizeof(int)));
      CHECK_CUDA(
          cudaMemcpy(firsts[g], first.data(), first.size() * sizeof(int), cudaMemcpyHostToDevice));
    }
    std::vector<double> slowest_gbps;
    for (int it = 0; it < a.repeat + 2; ++it) {  // two warm-ups
      for (int g = 0; g < n; ++g) {
        CHECK_CUDA(cudaSetDevice(g));
        CHECK_CUDA(cudaDeviceSynchronize());
        CHECK_CUDA(cudaMemset(dst[g], 0, static_cast<size_t>(dst_rows[g]) * row_bytes));
        CHECK_CUDA(cudaDeviceSynchronize());
      }
      CHECK_CUDA(cudaSetDevice(0));
      CHECK_CUDA(cudaMemset(arrivals, 0, sizeof(unsigned)));
      CHECK_CUDA(cudaDeviceSynchronize());
      const auto epoch = static_cast<uint32_t>(it + 1);
      for (int g = 0; g < n; ++g) {
        CHECK_CUDA(cudaSetDevice(g));
        const Staging st{staging[g], words[g], cut > 0 ? words[g] + n : nullptr, a.tokens, epoch};
        a2a_kernel<<<a.sms, kThreads, 0, streams[g]>>>(src[g], dests, tasks[g], firsts[g],
                                                       row_bytes, st, arrivals, n * a.sms, times[g],
                                                       timed_out);
        CHECK_CUDA(cudaGetLastError());
      }
      // The copies wait for g's kernel to start them. Issued after every kernel: a stream wait
      // queued before a kernel that shares its hardware queue could keep that kernel from
      // starting, and the kernel is what releases the wait.
      for (int g = 0; g < n && cut > 0; ++g) {
        CHECK_CUDA(cudaSetDevice(g));
        for (int p = 0; p < n; ++p) {
          if (p == g) continue;
          cudaStream_t st = ce_streams[g][p];
          CHECK_CU(cuStreamWaitValue32(st, reinterpret_cast<CUdeviceptr>(words[g] + n), epoch,
                                       CU_STREAM_WAIT_VALUE_GEQ));
          CHECK_CUDA(cudaMemcpyAsync(staging[p] + static_cast<size_t>(g) * a.tokens * row_bytes,
                                     src[g], static_cast<size_t>(cut) * row_bytes,
                                     cudaMemcpyDeviceToDevice, st));
          CHECK_CU(cuStreamWriteValue32(st, reinterpret_cast<CUdeviceptr>(words[p] + g), epoch,
                                        CU_STREAM_WRITE_VALUE_DEFAULT));
        }
      }
      double worst_us = 0;
      for (int g = 0; g < n; ++g) {
        CHECK_CUDA(cudaSetDevice(g));
        CHECK_CUDA(cudaStreamSynchronize(streams[g]));
        for (int p = 0; p < n && cut > 0; ++p)
          if (p != g) CHECK_CUDA(cudaStreamSynchronize(ce_streams[g][p]));
        std::vector<uint64_t> t(2 * a.sms);
        CHECK_CUDA(
            cudaMemcpy(t.data(), times[g], t.size() * sizeof(uint64_t), cudaMemcpyDeviceToHost));
        uint64_t start = UINT64_MAX, end = 0;
        for (int b = 0; b < a.sms; ++b) {
          start = std::min(start, t[2 * b]);
          end = std::max(end, t[2 * b + 1]);
        }
        worst_us = std::max(worst_us, (end - start) * 1e-3);
      }
      if (*timed_out) {
        std::fprintf(stderr,
                     "direct_a2a_bound: start barrier or copy-engine flag timed out (blocks not "
                     "co-resident, or a copy did not complete)\n");
        return 1;
      }
      if (it < 2) continue;
      double slowest = 1e30;
      for (int g = 0; g < n; ++g)
        slowest = std::min(slowest, static_cast<double>(received[g]) * row_bytes / worst_us / 1e3);
      slowest_gbps.push_back(slowest);
    }
    // Check: row i of source s's block on d starts with (s, t, s, t) for the i-th token of s to d
    // (--window: each written slot holds one of the rows that map to it).
    int bad = 0;
    for (int d = 0; d < n && a.window > 0; ++d) {
      CHECK_CUDA(cudaSetDevice(d));
      bad += check_windows(dst[d], row_bytes, slot_tokens[d]);
    }
    for (int d = 0; d < n && a.window == 0; ++d) {
      std::vector<int32_t> heads(static_cast<size_t>(received[d]) * 4);
      CHECK_CUDA(cudaSetDevice(d));
      CHECK_CUDA(cudaMemcpy2D(heads.data(), 16, dst[d], row_bytes, 16, received[d],
                              cudaMemcpyDeviceToHost));
      int row = 0;
      for (int s = 0; s < n; ++s)
        for (int t = 0; t < a.tokens; ++t)
          if (mask[s][t] >> d & 1u) {
            const int32_t* h = &heads[4 * static_cast<size_t>(row++)];
            bad += h[0] != s || h[1] != t || h[2] != s || h[3] != t;
          }
    }
    std::sort(slowest_gbps.begin(), slowest_gbps.end());
    const double median = slowest_gbps[slowest_gbps.size() / 2];
    const char* kind = row_bytes == bf16_row ? "bf16" : "fp8";
    std::string variant = a.window > 0 ? " into ring-like windows" : "";
    if (a.ce_share > 0)
      variant += ", copy engines moving the rows of the first " + std::to_string(a.ce_share) +
                 " % of tokens";
    if (a.remote_sms > 0)
      variant += ", " + std::to_string(a.remote_sms) + " SMs writing only to peers";
    std::printf(
        "direct-write all-to-all, %d GPUs, %d SMs each, %s rows of %d bytes%s: %.1f GB/s "
        "DeepEP-counted (slowest GPU, median of %d; best %.1f); rows checked: %s\n",
        n, a.sms, kind, row_bytes, variant.c_str(), median, a.repeat, slowest_gbps.back(),
        bad == 0 ? "all correct" : "MISMATCH");
    if (bad != 0) {
      std::fprintf(stderr, "direct_a2a_bound: %d received rows hold the wrong token\n", bad);
      all_ok = false;
    }
    char entry[256];
    std::snprintf(entry, sizeof(entry),
                  "%s{\"rows\": \"%s\", \"row_bytes\": %d, \"gbps_deepep_median\": %.2f, "
                  "\"gbps_deepep_best\": %.2f, \"rows_ok\": %s}",
                  row_bytes == bf16_row ? "" : ", ", kind, row_bytes, median, slowest_gbps.back(),
                  bad == 0 ? "true" : "false");
    json += entry;
    for (int g = 0; g < n; ++g) {
      CHECK_CUDA(cudaSetDevice(g));
      CHECK_CUDA(cudaFree(src[g]));
      CHECK_CUDA(cudaFree(dst[g]));
      CHECK_CUDA(cudaFree(tasks[g]));
      CHECK_CUDA(cudaFree(firsts[g]));
      CHECK_CUDA(cudaFree(times[g]));
      CHECK_CUDA(cudaStreamDestroy(streams[g]));
      if (cut == 0) continue;
      CHECK_CUDA(cudaFree(staging[g]));
      CHECK_CUDA(cudaFree(words[g]));
      for (int p = 0; p < n; ++p)
        if (p != g) CHECK_CUDA(cudaStreamDestroy(ce_streams[g][p]));
    }
  }
  json += "]}\n";
  if (!a.json.empty()) {
    FILE* f = std::fopen(a.json.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "direct_a2a_bound: cannot write %s\n", a.json.c_str());
      return 1;
    }
    std::fputs(json.c_str(), f);
    std::fclose(f);
  }
  return all_ok ? 0 : 1;
}
