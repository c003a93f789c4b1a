// Launcher of the NVLink domain's barrier kernel.
#include "common/cuda_check.h"
#include "kernels/nvl/barrier.cuh"
#include "kernels/nvl/launch.h"

namespace uccl::ep::kernels::nvl {

__global__ void __launch_bounds__(32, 1) nvl_barrier_kernel(const BarrierArgs a) {
  block_barrier(a.peers, a.local_rank, a.num_local_ranks, a.diag);
}

void launch_barrier(const BarrierArgs& args, cudaStream_t stream) {
  nvl_barrier_kernel<<<1, 32, 0, stream>>>(args);
  UCCL_EP_CHECK_LAUNCH("nvl_barrier_kernel");
}

}  // namespace uccl::ep::kernels::nvl
