// Parts of the intranode validation the runtime calls on their own (the public checks are in
// include/uccl_ep/intranode.h).
#pragma once

#include "uccl_ep/intranode.h"

namespace uccl::ep::runtime {

/// The output checks of validate_dispatch, for a dispatch whose inputs the notify before it
/// validated.
void validate_dispatch_outputs(const BufferInfo& info, const DispatchTensors& t);

}  // namespace uccl::ep::runtime
