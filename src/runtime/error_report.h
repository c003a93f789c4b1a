// Turns the device-side error record into the message a caller sees.
#pragma once

#include <string>

#include "protocol/intranode_layout.h"

namespace uccl::ep::runtime {

/// Human name of a wait site ("dispatch receiver: ring tail", ...).
const char* wait_site_name(protocol::WaitSite site);

/// "uccl-ep: rank 0 timed out after 5.0 s waiting for peer 1 (channel 3) at ...: expected ...,
/// observed ...". Names rank, peer, channel and the counter values.
std::string describe_timeout(const protocol::HostErrorRecord& record, double timeout_secs);

}  // namespace uccl::ep::runtime
