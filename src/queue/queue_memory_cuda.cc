// CUDA allocator for command queues: pinned, device-mapped host memory for slots and control
// words, device memory for producer state (library uccl_ep_queue_cuda).
#include <cuda_runtime_api.h>

#include <cstring>
#include <string>

#include "common/cuda_check.h"
#include "queue/queue_memory.h"

namespace uccl::ep::queue {
namespace {

// Makes `device` current for the scope (the queue layer sits below runtime/DeviceGuard).
class CurrentDevice {
 public:
  explicit CurrentDevice(int device) {
    UCCL_EP_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) {
      UCCL_EP_CUDA_CHECK(cudaSetDevice(device));
      changed_ = true;
    }
  }
  ~CurrentDevice() {
    if (changed_) cudaSetDevice(previous_);
  }
  CurrentDevice(const CurrentDevice&) = delete;
  CurrentDevice& operator=(const CurrentDevice&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

class CudaQueueAllocator final : public QueueAllocator {
 public:
  explicit CudaQueueAllocator(int device) : device_(device), name_(str_cat("cuda:", device)) {}

  SharedBlock allocate_shared(size_t bytes) override {
    CurrentDevice guard(device_);
    void* host = nullptr;
    // Portable: valid in every context; Mapped: the GPU writes slots over PCIe directly.
    UCCL_EP_CUDA_CHECK(cudaHostAlloc(&host, bytes, cudaHostAllocMapped | cudaHostAllocPortable));
    std::memset(host, 0, bytes);
    void* device = nullptr;
    const cudaError_t err = cudaHostGetDevicePointer(&device, host, 0);
    if (err != cudaSuccess) {
      cudaFreeHost(host);
      UCCL_EP_CUDA_CHECK(err);
    }
    return {host, device};
  }
  void free_shared(const SharedBlock& block) noexcept override { cudaFreeHost(block.host); }

  void* allocate_producer(size_t bytes) override {
    CurrentDevice guard(device_);
    void* p = nullptr;
    UCCL_EP_CUDA_CHECK(cudaMalloc(&p, bytes));
    // The memset runs on the default stream; finish it before any kernel can push.
    cudaError_t err = cudaMemset(p, 0, bytes);
    if (err == cudaSuccess) err = cudaStreamSynchronize(nullptr);
    if (err != cudaSuccess) {
      cudaFree(p);
      UCCL_EP_CUDA_CHECK(err);
    }
    return p;
  }
  void free_producer(void* p) noexcept override {
    // cudaFree acts on the allocation's own device; no guard needed (and none may throw here).
    cudaFree(p);
  }
  bool producer_memory_on_host() const override { return false; }
  const char* name() const override { return name_.c_str(); }

 private:
  int device_;
  std::string name_;
};

}  // namespace

std::unique_ptr<QueueAllocator> make_cuda_queue_allocator(int device) {
  int count = 0;
  UCCL_EP_CUDA_CHECK(cudaGetDeviceCount(&count));
  UCCL_EP_CHECK_VALUE(device >= 0 && device < count, "queue allocator: CUDA device ", device,
                      " out of range [0, ", count, ")");
  return std::make_unique<CudaQueueAllocator>(device);
}

}  // namespace uccl::ep::queue
