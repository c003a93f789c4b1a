// Launcher of the dispatch kernel, instantiated for each supported rank count.
#include "kernels/intranode/dispatch_kernel.cuh"
#include "kernels/intranode/launch.h"

namespace uccl::ep::kernels::intranode {

void launch_dispatch(const DispatchArgs& args, cudaStream_t stream) {
  const int blocks = 2 * args.num_channels;
  launch_for_supported_ranks(args.num_ranks, "intranode_dispatch_kernel", [&](auto ranks) {
    intranode_dispatch_kernel<ranks()><<<blocks, kNumThreads, 0, stream>>>(args);
  });
}

std::vector<uint64_t> read_dispatch_wait_profile(bool reset) {
  return device::read_wait_profile(reset);  // this file's counters
}

}  // namespace uccl::ep::kernels::intranode
