// Launcher of the dispatch kernel, instantiated for each supported rank count.
#include <algorithm>

#include "common/cuda_check.h"
#include "kernels/intranode/dispatch_kernel.cuh"
#if UCCL_EP_DISPATCH_ROLES
#include "kernels/intranode/dispatch_roles_kernel.cuh"
#endif
#include "kernels/intranode/launch.h"

namespace uccl::ep::kernels::intranode {

void launch_dispatch(const DispatchArgs& args, cudaStream_t stream) {
#if UCCL_EP_DISPATCH_ROLES
  // Experiment: SM-pure roles (dispatch_roles_kernel.cuh): S self blocks, W push + W drain.
  {
    const int num_sms = 2 * args.num_channels;
    const int min_self = std::max(1, num_sms / (2 * args.num_ranks - 1));
    const int num_work = (num_sms - min_self) / 2, num_self = num_sms - 2 * num_work;
    if (num_work >= 1) {
      const int blocks = 2 * num_work + num_self;
      switch (args.num_ranks) {
        case 2:
          intranode_dispatch_roles_kernel<2>
              <<<blocks, kNumThreads, 0, stream>>>(args, num_work, num_self);
          break;
        case 4:
          intranode_dispatch_roles_kernel<4>
              <<<blocks, kNumThreads, 0, stream>>>(args, num_work, num_self);
          break;
        case 8:
          intranode_dispatch_roles_kernel<8>
              <<<blocks, kNumThreads, 0, stream>>>(args, num_work, num_self);
          break;
        default:
          check_supported_ranks(args.num_ranks);
      }
      UCCL_EP_CHECK_LAUNCH("intranode_dispatch_roles_kernel");
      return;
    }
  }
#endif
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
