// The rank mask of enable_shrink (int32 [num_ranks], 1 = masked): small kernels on the caller's
// stream, so that mask updates order with the calls around them and can be captured in graphs.
#include "common/cuda_check.h"
#include "kernels/low_latency/args.h"

namespace uccl::ep::kernels::low_latency {
namespace {

__global__ void set_mask_kernel(int32_t* mask, int rank, int32_t value) {
  mask[rank] = value;
  __threadfence_system();
}

__global__ void copy_mask_kernel(const int32_t* mask, int num_ranks, int32_t* out) {
  for (int i = threadIdx.x; i < num_ranks; i += blockDim.x)
    out[i] = *static_cast<const volatile int32_t*>(mask + i);
}

__global__ void clear_mask_kernel(int32_t* mask, int num_ranks) {
  for (int i = threadIdx.x; i < num_ranks; i += blockDim.x) mask[i] = 0;
  __threadfence_system();
}

}  // namespace

void launch_set_mask(int32_t* mask, int rank, bool masked, cudaStream_t stream) {
  set_mask_kernel<<<1, 1, 0, stream>>>(mask, rank, masked ? 1 : 0);
  UCCL_EP_CHECK_LAUNCH("low_latency_set_mask_kernel");
}

void launch_copy_mask(const int32_t* mask, int num_ranks, int32_t* out, cudaStream_t stream) {
  copy_mask_kernel<<<1, 128, 0, stream>>>(mask, num_ranks, out);
  UCCL_EP_CHECK_LAUNCH("low_latency_copy_mask_kernel");
}

void launch_clear_mask(int32_t* mask, int num_ranks, cudaStream_t stream) {
  clear_mask_kernel<<<1, 128, 0, stream>>>(mask, num_ranks);
  UCCL_EP_CHECK_LAUNCH("low_latency_clear_mask_kernel");
}

void preload_mask() {
  cudaFuncAttributes attr;
  UCCL_EP_CUDA_CHECK(cudaFuncGetAttributes(&attr, set_mask_kernel));
  UCCL_EP_CUDA_CHECK(cudaFuncGetAttributes(&attr, copy_mask_kernel));
  UCCL_EP_CUDA_CHECK(cudaFuncGetAttributes(&attr, clear_mask_kernel));
}

}  // namespace uccl::ep::kernels::low_latency
