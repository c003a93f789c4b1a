// Launcher of the dispatch kernel, instantiated for each supported rank count.
#include "common/cuda_check.h"
#include "kernels/intranode/dispatch_kernel.cuh"
#include "kernels/intranode/launch.h"

namespace uccl::ep::kernels::intranode {

void launch_dispatch(const DispatchArgs& args, cudaStream_t stream) {
  const int blocks = 2 * args.num_channels;
  switch (args.num_ranks) {
    case 2:
      intranode_dispatch_kernel<2><<<blocks, kNumThreads, 0, stream>>>(args);
      break;
    case 4:
      intranode_dispatch_kernel<4><<<blocks, kNumThreads, 0, stream>>>(args);
      break;
    case 8:
      intranode_dispatch_kernel<8><<<blocks, kNumThreads, 0, stream>>>(args);
      break;
    default:
      check_supported_ranks(args.num_ranks);
  }
  UCCL_EP_CHECK_LAUNCH("intranode_dispatch_kernel");
}

std::vector<uint64_t> read_dispatch_wait_profile(bool reset) {
  return device::read_wait_profile(reset);  // this file's counters
}

}  // namespace uccl::ep::kernels::intranode
