// The RDMA domain's barrier kernel: a BARRIER command through the CPU proxies.
#include "common/cuda_check.h"
#include "device/health.cuh"
#include "kernels/rdma/launch.h"
#include "protocol/command.h"
#include "queue/producer.cuh"

namespace uccl::ep::kernels::rdma {

__global__ void __launch_bounds__(32, 1) rdma_barrier_kernel(const BarrierArgs a) {
  if (threadIdx.x != 0 || device::aborted(a.diag)) return;
  const auto command = protocol::encode_barrier(a.group, static_cast<uint32_t>(a.sequence));
  if (queue::push(a.queue, command, a.diag)) queue::wait_barrier(a.queue, a.sequence, a.diag);
}

void preload_barrier() {
  cudaFuncAttributes attr;
  UCCL_EP_CUDA_CHECK(cudaFuncGetAttributes(&attr, rdma_barrier_kernel));
}

void launch_barrier(const BarrierArgs& args, cudaStream_t stream) {
  rdma_barrier_kernel<<<1, 32, 0, stream>>>(args);
  UCCL_EP_CHECK_LAUNCH("rdma_barrier_kernel");
}

}  // namespace uccl::ep::kernels::rdma
