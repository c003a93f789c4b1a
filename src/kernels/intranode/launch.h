// Host launchers of the intranode kernels. Each derives its grid from the args struct.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/intranode/args.h"
#include "kernels/launch.h"

namespace uccl::ep::kernels::intranode {

/// Launches `launch(std::integral_constant<int, R>)` for R = num_ranks among the rank counts the
/// intranode kernels are instantiated for (2, 4, 8); see kernels::launch_for_ranks.
template <typename Launch>
void launch_for_supported_ranks(int num_ranks, const char* kernel, Launch&& launch) {
  launch_for_ranks<2, 4, 8>(num_ranks, kernel, std::forward<Launch>(launch));
}

/// Throws Error(kValue) listing the supported counts when `num_ranks` is not one of them.
void check_supported_ranks(int num_ranks);

/// One-block barrier of all ranks; with clear_rings, zeroes this rank's ring counters between
/// two barriers (needed before a combine or a cached dispatch).
void launch_barrier(const BarrierArgs& args, cudaStream_t stream);
/// Count exchange before a non-cached dispatch (1 + num_ranks blocks).
void launch_notify(const NotifyArgs& args, cudaStream_t stream);
/// Dispatch main kernel (2 * num_channels blocks).
void launch_dispatch(const DispatchArgs& args, cudaStream_t stream);
/// Combine main kernel (2 * num_channels blocks).
void launch_combine(const CombineArgs& args, cudaStream_t stream);

/// Diagnostic builds (-DUCCL_EP_WAIT_PROFILE=ON): the dispatch / combine kernels' summed wait
/// nanoseconds per WaitSite, then summed warp run time per WarpRole, then the block timeline
/// (device/wait_profile.cuh), over every launch since the last reset; cleared when `reset`.
/// Synchronize the device first. Empty in normal builds.
std::vector<uint64_t> read_dispatch_wait_profile(bool reset);
std::vector<uint64_t> read_combine_wait_profile(bool reset);

}  // namespace uccl::ep::kernels::intranode
