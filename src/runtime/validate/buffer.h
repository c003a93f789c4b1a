// Argument validation of the Buffer constructor (host only, no CUDA runtime).
#pragma once

#include "uccl_ep/buffer.h"

namespace uccl::ep::runtime {

/// Checks what one rank can check alone: rank, sizes, mode. Throws Error(kValue) naming the
/// option, its value and the rule.
void validate_buffer_options(const BufferOptions& options);
/// Checks the options against the topology found at set-up (e.g. an RDMA buffer needs several
/// NVLink domains or the low-latency mode).
void validate_buffer_topology(const BufferOptions& options, const Topology& topology);

}  // namespace uccl::ep::runtime
