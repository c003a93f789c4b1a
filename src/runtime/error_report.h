// Turns a rank's error record (protocol/diag.h) into the message a caller sees.
#pragma once

#include <string>

#include "protocol/diag.h"

namespace uccl::ep::runtime {

/// Human name of a site ("dispatch receiver: ring tail (tokens the peer has sent)", ...).
const char* wait_site_name(protocol::WaitSite site);

/// The message of a record. A wait names rank, peer, channel or queue, the site and the
/// counters ("uccl-ep: rank 0 timed out after 5.0 s waiting for peer 1 (channel 3) at ...:
/// expected ..., observed ..."); a check names the argument, the entry, the value and the rule.
/// Every message ends by saying that the Buffer refuses further work.
std::string describe_error(const protocol::HostErrorRecord& record, double timeout_secs);

}  // namespace uccl::ep::runtime
