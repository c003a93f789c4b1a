// The NVLink domain as kernels see it: every local rank's buffer mapped in this process.
#pragma once

#include <cstdint>

#include "device/diag.h"
#include "protocol/nvl_layout.h"

namespace uccl::ep::kernels::nvl {

/// Base addresses of the local ranks' NVLink buffers and control blocks (index = local rank).
struct NvlPeers {
  uint8_t* buffers[protocol::kMaxNvlPeers];
  protocol::NvlControl* ctrl[protocol::kMaxNvlPeers];
};

/// Barrier of the ranks of one NVLink domain.
struct BarrierArgs {
  NvlPeers peers;
  int local_rank, num_local_ranks;
  device::DeviceDiag diag;
};

}  // namespace uccl::ep::kernels::nvl
