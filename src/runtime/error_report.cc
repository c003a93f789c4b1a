// Turns the device-side error record into the message a caller sees.
#include "runtime/error_report.h"

#include <cstdio>

#include "common/error.h"

namespace uccl::ep::runtime {

const char* wait_site_name(protocol::WaitSite site) {
  using protocol::WaitSite;
  switch (site) {
    case WaitSite::kBarrier:
      return "the barrier of all ranks (the peer's arrival epoch)";
    case WaitSite::kDispatchRange:
      return "dispatch receiver: the peer's token range of the channel";
    case WaitSite::kDispatchTail:
      return "dispatch receiver: ring tail (tokens the peer has sent)";
    case WaitSite::kDispatchHead:
      return "dispatch sender: ring head (tokens the peer has consumed)";
    case WaitSite::kCombineTail:
      return "combine receiver: ring tail (tokens the peer has sent back)";
    case WaitSite::kCombineHead:
      return "combine sender: ring head (tokens the peer has consumed)";
    case WaitSite::kRecvOverflow:
      return "dispatch receiver: output rows";
    case WaitSite::kDispatchPublish:
      return "dispatch sender: its copy warps' progress for the peer's ring (slots released as "
             "the tail)";
    case WaitSite::kQueueFull:
      return "a full GPU->CPU command queue (the channel is the queue index): the tail of slots "
             "its CPU proxy released";
    case WaitSite::kQueueFence:
      return "a FENCE of a GPU->CPU command queue (the channel is the queue index): the proxy's "
             "fence_done";
    case WaitSite::kQueueBarrier:
      return "a BARRIER of a GPU->CPU command queue (the channel is the queue index): the "
             "proxy's barrier_done";
    case WaitSite::kNone:
      break;
  }
  return "an unknown wait";
}

std::string describe_timeout(const protocol::HostErrorRecord& r, double timeout_secs) {
  if (static_cast<protocol::WaitSite>(r.site) == protocol::WaitSite::kRecvOverflow)
    return str_cat(
        "uccl-ep: rank ", r.rank, " received more tokens than the outputs have rows: ", r.expected,
        " rows (num_worst_tokens) but at least ", r.observed, " tokens arrived (from peer ", r.peer,
        ", channel ", r.channel, "). The Buffer refuses further work; raise num_worst_tokens");
  char waited[32];
  std::snprintf(waited, sizeof(waited), "%.1f", static_cast<double>(r.waited_ns) * 1e-9);
  const std::string channel = r.channel >= 0 ? str_cat(" (channel ", r.channel, ")") : "";
  return str_cat("uccl-ep: rank ", r.rank, " timed out after ", waited, " s waiting for peer ",
                 r.peer, channel, " at ", wait_site_name(static_cast<protocol::WaitSite>(r.site)),
                 ": expected ", r.expected, ", observed ", r.observed,
                 ". The Buffer refuses further work; destroy it and create a new one "
                 "(UCCL_EP_TIMEOUT_SECS=",
                 timeout_secs, ")");
}

}  // namespace uccl::ep::runtime
