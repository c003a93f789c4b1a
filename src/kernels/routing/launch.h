// Host launcher of the dispatch-layout kernel.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/routing/layout_args.h"

namespace uccl::ep::kernels::routing {

/// Zeroes the outputs and launches dispatch_layout_kernel on `stream`.
void launch_dispatch_layout(const LayoutArgs& args, cudaStream_t stream);

}  // namespace uccl::ep::kernels::routing
