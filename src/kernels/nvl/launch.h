// Host launchers of the NVLink domain's kernels.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/nvl/peers.h"

namespace uccl::ep::kernels::nvl {

/// One-block barrier of the ranks of an NVLink domain (deadline: the diag's timeout).
void launch_barrier(const BarrierArgs& args, cudaStream_t stream);

}  // namespace uccl::ep::kernels::nvl
