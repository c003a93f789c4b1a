// Host launcher of the dispatch-layout kernel.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/layout/layout_args.h"

namespace uccl::ep::kernels::layout {

/// Zeroes the outputs and launches dispatch_layout_kernel on `stream`.
void launch_dispatch_layout(const LayoutArgs& args, cudaStream_t stream);

}  // namespace uccl::ep::kernels::layout
