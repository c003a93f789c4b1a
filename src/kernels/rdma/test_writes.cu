// Test support: a kernel that moves bytes between RDMA buffers through the command path
// (WRITE commands, then a FENCE), so tests can check a Buffer's RDMA domain end to end.
#include "common/cuda_check.h"
#include "device/health.cuh"
#include "kernels/rdma/launch.h"
#include "protocol/command.h"
#include "queue/producer.cuh"

namespace uccl::ep::kernels::rdma {

__global__ void __launch_bounds__(32, 1) rdma_test_write_kernel(const TestWriteArgs a) {
  if (threadIdx.x != 0 || device::aborted(a.diag)) return;
  const auto write = protocol::encode_write(static_cast<uint32_t>(a.peer), a.local_offset,
                                            a.remote_offset, a.bytes);
  if (!queue::push(a.queue, write, a.diag)) return;
  if (queue::push(a.queue, protocol::encode_fence(static_cast<uint32_t>(a.fence_sequence)), a.diag))
    queue::wait_fence(a.queue, a.fence_sequence, a.diag);
}

void launch_test_write(const TestWriteArgs& args, cudaStream_t stream) {
  rdma_test_write_kernel<<<1, 32, 0, stream>>>(args);
  UCCL_EP_CHECK_LAUNCH("rdma_test_write_kernel");
}

}  // namespace uccl::ep::kernels::rdma
