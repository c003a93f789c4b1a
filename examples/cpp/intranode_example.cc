// uccl-ep's C++ API in one program: get_dispatch_layout, dispatch and combine of the intranode
// mode on local GPUs, checked against a reference computed on the host.
//
//   intranode_example [num_ranks]   # 2, 4 or 8 (default 2); prints PASS or FAIL
//
// The program forks one process per rank; rank r uses GPU r % (number of GPUs). Ranks that share
// a GPU need the CUDA MPS daemon (tools/run_cpp_example.sh starts it). The Buffers of the ranks
// exchange their set-up through an all-gather that the caller provides: here, slots in memory
// shared by the forked processes (an MPI or TCP all-gather serves the same purpose).
#include <cuda_runtime_api.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "uccl_ep/buffer.h"
#include "uccl_ep/config.h"
#include "uccl_ep/intranode.h"
#include "uccl_ep/routing.h"
#include "uccl_ep/tensor.h"

namespace {

using namespace uccl::ep;

constexpr int kNumTokens = 256;        // tokens per rank (T)
constexpr int kHidden = 2048;          // bfloat16 elements per token (H)
constexpr int kNumTopk = 4;            // experts per token (K)
constexpr int kNumExpertsPerRank = 4;  // E = kNumExpertsPerRank * num_ranks
constexpr int kNumSms = 20;            // SMs of the tuned configs: C = kNumSms / 2 channels

void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// ---- The all-gather: one slot per rank, double-buffered by round, in shared memory.

constexpr size_t kMaxMessageBytes = 256 << 10;

struct Slot {
  std::atomic<uint64_t> round{0};  // the last round whose message this slot holds
  uint64_t size[2] = {};
  uint8_t data[2][kMaxMessageBytes];
};

/// Mapped before fork(), so every rank sees the same slots. Round k uses data[k % 2]: a rank
/// writes round k + 2 only after every rank published round k + 1, i.e. finished reading round k.
class SharedAllGather {
 public:
  explicit SharedAllGather(int num_ranks) : num_ranks_(num_ranks) {
    void* p = mmap(nullptr, sizeof(Slot) * num_ranks, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap of the all-gather slots failed");
    slots_ = static_cast<Slot*>(p);
    for (int r = 0; r < num_ranks; ++r) new (&slots_[r]) Slot();
  }

  /// The AllGather of rank `rank` (one per process after fork()).
  AllGather for_rank(int rank) {
    return [this, rank, round = uint64_t{0}](const Bytes& mine) mutable {
      ++round;
      if (mine.size() > kMaxMessageBytes) throw std::runtime_error("all-gather message too large");
      Slot& own = slots_[rank];
      own.size[round % 2] = mine.size();
      std::memcpy(own.data[round % 2], mine.data(), mine.size());
      own.round.store(round, std::memory_order_release);
      std::vector<Bytes> all(num_ranks_);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      for (int r = 0; r < num_ranks_; ++r) {
        while (slots_[r].round.load(std::memory_order_acquire) < round) {
          if (std::chrono::steady_clock::now() > deadline)
            throw std::runtime_error("all-gather round " + std::to_string(round) + ": rank " +
                                     std::to_string(r) + " did not arrive within 60 s");
          std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
        const uint8_t* d = slots_[r].data[round % 2];
        all[r].assign(d, d + slots_[r].size[round % 2]);
      }
      return all;
    };
  }

 private:
  int num_ranks_;
  Slot* slots_ = nullptr;
};

// ---- Inputs, the same on every rank's host: rank s's tokens and their experts.

/// Experts of token t of rank s: K distinct experts, E / K apart.
int64_t expert_of(int s, int t, int k, int num_experts) {
  return (s * 131 + t * 7 + k * (num_experts / kNumTopk)) % num_experts;
}
/// Small integers, exact in bfloat16 and in sums of up to 8 of them.
float value_of(int s, int t, int h) {
  return static_cast<float>((s * 31 + t * 7 + h) % 15 - 7);
}
uint16_t to_bf16(float f) {  // exact for the values above (their low 16 bits are zero)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>(u >> 16);
}
float from_bf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ---- Device memory, wrapped in TensorViews.

/// The device allocations of one rank, freed together.
class DeviceMemory {
 public:
  explicit DeviceMemory(int device) : device_(device) {}
  ~DeviceMemory() {
    for (void* p : allocations_) cudaFree(p);
  }

  /// A contiguous tensor of `shape` on this rank's device.
  TensorView alloc(DType dtype, std::vector<int64_t> shape) {
    TensorView v{.dtype = dtype,
                 .ndim = static_cast<int>(shape.size()),
                 .device = DeviceKind::kCUDA,
                 .device_index = device_};
    int64_t stride = 1;
    for (int i = v.ndim - 1; i >= 0; --i) {
      v.shape[i] = shape[i];
      v.strides[i] = stride;
      stride *= shape[i];
    }
    cuda_check(cudaMalloc(&v.data, std::max<int64_t>(v.nbytes(), 1)), "cudaMalloc");
    allocations_.push_back(v.data);
    return v;
  }

  template <typename T>
  TensorView upload(DType dtype, std::vector<int64_t> shape, const std::vector<T>& host) {
    TensorView v = alloc(dtype, std::move(shape));
    cuda_check(cudaMemcpy(v.data, host.data(), v.nbytes(), cudaMemcpyHostToDevice), "upload");
    return v;
  }

 private:
  int device_;
  std::vector<void*> allocations_;
};

template <typename T>
std::vector<T> download(const TensorView& v) {
  std::vector<T> host(v.numel());
  cuda_check(cudaMemcpy(host.data(), v.data, v.nbytes(), cudaMemcpyDeviceToHost), "download");
  return host;
}

// ---- One rank.

/// Returns the number of mismatches found on this rank.
int run_rank(int rank, int num_ranks, const AllGather& all_gather) {
  int num_devices = 0;
  const cudaError_t err = cudaGetDeviceCount(&num_devices);
  if (err != cudaSuccess || num_devices == 0) {
    // Tell the peers, which are entering the Buffer's first all-gather, instead of leaving them
    // to wait for this rank until their deadline.
    all_gather(buffer_setup_failure(rank, "no CUDA device"));
    throw std::runtime_error(std::string("no CUDA device: ") + cudaGetErrorString(err));
  }
  const int device = rank % num_devices;
  cuda_check(cudaSetDevice(device), "cudaSetDevice");
  const int num_experts = kNumExpertsPerRank * num_ranks;
  const Config dispatch_config = get_dispatch_config(num_ranks, kNumSms);
  const Config combine_config = get_combine_config(num_ranks, kNumSms);
  const int64_t hidden_bytes = kHidden * 2;
  const int64_t num_nvl_bytes =
      std::max(dispatch_config.get_nvl_buffer_size_hint(hidden_bytes, num_ranks),
               combine_config.get_nvl_buffer_size_hint(hidden_bytes, num_ranks));

  // Collective: every rank builds its Buffer at the same time.
  const BufferOptions options{
      .rank = rank, .num_ranks = num_ranks, .device = device, .num_nvl_bytes = num_nvl_bytes};
  Buffer buffer(options, all_gather);
  IntranodeOps ops(buffer);
  cudaStream_t stream;
  cuda_check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  DeviceMemory mem(device);

  // This rank's tokens [T, H] bfloat16, their experts [T, K] int64 and weights [T, K] float32.
  std::vector<uint16_t> x(kNumTokens * kHidden);
  std::vector<int64_t> topk_idx(kNumTokens * kNumTopk);
  std::vector<float> topk_weights(kNumTokens * kNumTopk, 1.0f / kNumTopk);
  for (int t = 0; t < kNumTokens; ++t) {
    for (int h = 0; h < kHidden; ++h) x[t * kHidden + h] = to_bf16(value_of(rank, t, h));
    for (int k = 0; k < kNumTopk; ++k)
      topk_idx[t * kNumTopk + k] = expert_of(rank, t, k, num_experts);
  }
  const TensorView x_d = mem.upload(DType::kBFloat16, {kNumTokens, kHidden}, x);
  const TensorView topk_idx_d = mem.upload(DType::kInt64, {kNumTokens, kNumTopk}, topk_idx);
  const TensorView topk_weights_d =
      mem.upload(DType::kFloat32, {kNumTokens, kNumTopk}, topk_weights);

  // 1. Layout: tokens per rank and per expert, and which ranks each token goes to.
  const TensorView per_rank = mem.alloc(DType::kInt32, {num_ranks});
  const TensorView per_expert = mem.alloc(DType::kInt32, {num_experts});
  const TensorView in_rank = mem.alloc(DType::kBool, {kNumTokens, num_ranks});
  get_dispatch_layout(buffer,
                      LayoutTensors{.topk_idx = topk_idx_d,
                                    .num_experts = num_experts,
                                    .num_tokens_per_rank = per_rank,
                                    .num_tokens_per_expert = per_expert,
                                    .is_token_in_rank = in_rank},
                      stream);

  // 2. Dispatch: the count exchange (notify) tells how many rows this rank receives; then the
  // received rows are allocated and the dispatch kernel fills them.
  const int num_channels = dispatch_config.num_channels();
  DispatchTensors dispatch{
      .x = x_d,
      .topk_idx = topk_idx_d,
      .topk_weights = topk_weights_d,
      .is_token_in_rank = in_rank,
      .rank_prefix_matrix = mem.alloc(DType::kInt32, {num_ranks, num_ranks}),
      .channel_prefix_matrix = mem.alloc(DType::kInt32, {num_ranks, num_channels}),
      .num_experts = num_experts,
      .config = dispatch_config,
  };
  const NotifyResult counts =
      ops.notify_dispatch(NotifyTensors{.dispatch = dispatch,
                                        .num_tokens_per_rank = per_rank,
                                        .num_tokens_per_expert = per_expert},
                          stream);
  const int n = counts.num_recv_tokens;
  dispatch.recv_x = mem.alloc(DType::kBFloat16, {n, kHidden});
  dispatch.recv_topk_idx = mem.alloc(DType::kInt64, {n, kNumTopk});
  dispatch.recv_topk_weights = mem.alloc(DType::kFloat32, {n, kNumTopk});
  dispatch.recv_src_idx = mem.alloc(DType::kInt32, {n});
  dispatch.recv_channel_prefix_matrix = mem.alloc(DType::kInt32, {num_ranks, num_channels});
  dispatch.send_head = mem.alloc(DType::kInt32, {kNumTokens, num_ranks});
  ops.dispatch(dispatch, stream);

  // 3. The experts would run on recv_x here; this example sends the rows back unchanged.
  // Combine: each token comes back as the sum of its rows from the ranks it went to.
  const TensorView combined_x = mem.alloc(DType::kBFloat16, {kNumTokens, kHidden});
  ops.combine(CombineTensors{.x = dispatch.recv_x,
                             .rank_prefix_matrix = dispatch.rank_prefix_matrix,
                             .recv_channel_prefix_matrix = dispatch.recv_channel_prefix_matrix,
                             .recv_src_idx = dispatch.recv_src_idx,
                             .is_token_in_rank = in_rank,
                             .send_head = dispatch.send_head,
                             .config = combine_config,
                             .combined_x = combined_x},
              stream);
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  buffer.check("combine");

  // The host reference: rows received from every rank s, and x times the number of ranks
  // each token went to.
  auto goes_to = [&](int s, int t, int r) {
    for (int k = 0; k < kNumTopk; ++k)
      if (expert_of(s, t, k, num_experts) / kNumExpertsPerRank == r) return true;
    return false;
  };
  int expected_n = 0;
  for (int s = 0; s < num_ranks; ++s)
    for (int t = 0; t < kNumTokens; ++t) expected_n += goes_to(s, t, rank);
  int mismatches = 0;
  if (n != expected_n) {
    std::printf("rank %d: received %d tokens, expected %d\n", rank, n, expected_n);
    ++mismatches;
  }
  const std::vector<uint16_t> combined = download<uint16_t>(combined_x);
  for (int t = 0; t < kNumTokens; ++t) {
    int num_targets = 0;
    for (int r = 0; r < num_ranks; ++r) num_targets += goes_to(rank, t, r);
    for (int h = 0; h < kHidden; ++h) {
      const float got = from_bf16(combined[t * kHidden + h]);
      const float want = value_of(rank, t, h) * static_cast<float>(num_targets);
      if (got != want && mismatches++ < 5)
        std::printf("rank %d: combined_x[%d][%d] = %g, expected %g\n", rank, t, h, got, want);
    }
  }
  std::printf("rank %d (GPU %d): %d tokens received, %s\n", rank, device, n,
              mismatches == 0 ? "combine matches the host reference" : "MISMATCH");
  cuda_check(cudaStreamDestroy(stream), "cudaStreamDestroy");
  buffer.destroy();  // collective, like the constructor
  return mismatches;
}

}  // namespace

int main(int argc, char** argv) {
  const int num_ranks = argc > 1 ? std::atoi(argv[1]) : 2;
  if (num_ranks != 2 && num_ranks != 4 && num_ranks != 8) {
    std::fprintf(stderr, "usage: %s [num_ranks: 2, 4 or 8]\n", argv[0]);
    return 2;
  }
  // No CUDA call before fork(): a child cannot use a CUDA context its parent created.
  SharedAllGather gather(num_ranks);
  std::vector<pid_t> children;
  for (int rank = 0; rank < num_ranks; ++rank) {
    const pid_t pid = fork();
    if (pid < 0) {
      std::perror("fork");
      return 1;
    }
    if (pid == 0) {
      int code = 1;
      try {
        code = run_rank(rank, num_ranks, gather.for_rank(rank)) == 0 ? 0 : 1;
      } catch (const std::exception& e) {  // uccl::ep::Error names rank, peer and call
        std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
      }
      std::fflush(nullptr);
      _exit(code);
    }
    children.push_back(pid);
  }
  bool ok = true;
  for (pid_t pid : children) {
    int status = 0;
    ok = waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0 && ok;
  }
  std::printf("%s: intranode dispatch + combine on %d ranks\n", ok ? "PASS" : "FAIL", num_ranks);
  return ok ? 0 : 1;
}
