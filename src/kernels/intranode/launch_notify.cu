// Launchers of the barrier and notify kernels, and the supported-rank check.
#include "common/cuda_check.h"
#include "kernels/intranode/launch.h"
#include "kernels/intranode/notify_kernel.cuh"

namespace uccl::ep::kernels::intranode {

void check_supported_ranks(int num_ranks) {
  for (int r : kSupportedRanks)
    if (r == num_ranks) return;
  throw_error(ErrorKind::kValue, str_cat("num_ranks=", num_ranks,
                                         " is not supported by the intranode kernels: supported "
                                         "are 2, 4, 8 ranks of one NVLink domain"));
}

void launch_barrier(const BarrierArgs& args, cudaStream_t stream) {
  intranode_barrier_kernel<<<1, 32, 0, stream>>>(args);
  UCCL_EP_CHECK_LAUNCH("intranode_barrier_kernel");
}

void launch_notify(const NotifyArgs& args, cudaStream_t stream) {
  intranode_notify_kernel<<<1 + args.num_ranks, kNotifyThreads, 0, stream>>>(args);
  UCCL_EP_CHECK_LAUNCH("intranode_notify_kernel");
}

}  // namespace uccl::ep::kernels::intranode
