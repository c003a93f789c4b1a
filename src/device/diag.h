// Where device-side waits report: shared by kernels (device) and launchers (host).
#pragma once

#include <cstdint>

#include "protocol/intranode_layout.h"

namespace uccl::ep::device {

/// Passed by value inside every kernel's args struct.
struct DeviceDiag {
  protocol::HostErrorRecord* host_error;  // pinned, mapped host memory (device alias)
  uint32_t* abort_flag;                   // this rank's ControlBlock::abort_flag
  uint64_t timeout_ns;
  int rank;
};

}  // namespace uccl::ep::device
