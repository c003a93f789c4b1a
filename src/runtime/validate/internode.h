// Parts of the internode validation the runtime calls on their own (the public checks are in
// include/uccl_ep/internode.h).
#pragma once

#include "uccl_ep/internode.h"

namespace uccl::ep::runtime {

/// The output checks of validate_internode_dispatch (recv_x and its scales, the received top-k
/// tensors, and the handle fields a dispatch writes: recv_src_meta and send_nvl_head), for a
/// dispatch whose inputs the notify before it validated.
void validate_internode_dispatch_outputs(const BufferInfo& info, const InternodeDispatchTensors& t);

}  // namespace uccl::ep::runtime
