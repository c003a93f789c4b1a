// Launchers of the barrier and notify kernels, and the supported-rank check.
#include "common/cuda_check.h"
#include "kernels/intranode/launch.h"
#include "kernels/intranode/notify_kernel.cuh"

namespace uccl::ep::kernels::intranode {

void check_supported_ranks(int num_ranks) {
  UCCL_EP_CHECK_VALUE(num_ranks == 2 || num_ranks == 4 || num_ranks == 8, "num_ranks=", num_ranks,
                      " is not supported by the intranode kernels: supported are ",
                      rank_count_list<2, 4, 8>(), " ranks of one NVLink domain");
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
