// Turns a rank's error record into the message a caller sees.
#include "runtime/error_report.h"

#include <cstdio>

#include "common/error.h"

namespace uccl::ep::runtime {

using protocol::WaitSite;

const char* wait_site_name(WaitSite site) {
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
    case WaitSite::kDispatchPublish:
      return "dispatch sender: its copy warps' progress for the peer's ring (slots released as "
             "the tail)";
    case WaitSite::kLowLatencyDispatchRecv:
      return "low-latency dispatch receiver: the peer's signal for the expert's tokens (channel = "
             "local expert)";
    case WaitSite::kLowLatencyCombineRecv:
      return "low-latency combine receiver: the signal of the peer owning the expert (channel = "
             "global expert)";
    case WaitSite::kInternodeNotify:
      return "internode notify: the peer's count record";
    case WaitSite::kInternodeChunk:
      return "internode receiver: a chunk of the peer's network stream (its signal slot)";
    case WaitSite::kInternodeCredit:
      return "internode sender: ring credits from the peer receiving the stream";
    case WaitSite::kQueueFull:
      return "a full GPU->CPU command queue: the tail of slots its CPU proxy released";
    case WaitSite::kQueueFence:
      return "a FENCE of a GPU->CPU command queue: the proxy's fence_done";
    case WaitSite::kQueueBarrier:
      return "a BARRIER of a GPU->CPU command queue: the proxy's barrier_done";
    case WaitSite::kRecvOverflow:
      return "dispatch receiver: output rows";
    case WaitSite::kProxyError:
      return "a GPU->CPU command queue whose CPU proxy failed";
    case WaitSite::kRankCountMismatch:
      return "dispatch inputs: num_tokens_per_rank against is_token_in_rank";
    case WaitSite::kExpertCountMismatch:
      return "dispatch inputs: num_tokens_per_expert against topk_idx";
    case WaitSite::kBadExpertId:
      return "topk_idx: an expert id";
    case WaitSite::kPeerError:
      return "the count exchange: a peer's report of its own inputs";
    case WaitSite::kLowLatencyBadBlock:
      return "low-latency dispatch receiver: the message count of a peer's block";
    case WaitSite::kLowLatencyBadHandle:
      return "low-latency combine sender: the handle's layout range";
    case WaitSite::kNodeCountMismatch:
      return "dispatch inputs: num_tokens_per_rdma_rank against is_token_in_rank";
    case WaitSite::kNone:
      break;
  }
  return "an unknown site";
}

namespace {

constexpr const char* kRefuses =
    ". The Buffer refuses further work; destroy it and create a new one";

std::string describe_check(const protocol::HostErrorRecord& r) {
  switch (static_cast<WaitSite>(r.site)) {
    case WaitSite::kRecvOverflow:
      return str_cat("uccl-ep: rank ", r.rank,
                     " received more tokens than the outputs have rows: ", r.expected,
                     " rows (num_worst_tokens) but at least ", r.observed,
                     " tokens arrived (from peer ", r.peer, ", channel ", r.channel,
                     "); raise num_worst_tokens", kRefuses);
    case WaitSite::kProxyError:
      return str_cat("uccl-ep: rank ", r.rank, ": the CPU proxy of command queue ", r.queue,
                     " failed (error code ", r.observed, "); its message is in the proxy's error",
                     kRefuses);
    case WaitSite::kRankCountMismatch:
      return str_cat("uccl-ep: rank ", r.rank, ": dispatch inputs disagree: num_tokens_per_rank[",
                     r.peer, "]=", r.expected, " but is_token_in_rank routes ", r.observed,
                     " tokens to rank ", r.peer,
                     " (pass the counts get_dispatch_layout returns for these inputs)", kRefuses);
    case WaitSite::kExpertCountMismatch:
      return str_cat("uccl-ep: rank ", r.rank, ": dispatch inputs disagree: num_tokens_per_expert[",
                     r.row, "]=", r.expected, " but topk_idx names expert ", r.row, " ", r.observed,
                     " times (pass the counts get_dispatch_layout returns for these inputs)",
                     kRefuses);
    case WaitSite::kBadExpertId:
      return str_cat("uccl-ep: rank ", r.rank, ": topk_idx[", r.row, ", ", r.col, "]=", r.observed,
                     " is not an expert id: entries must be in [-1, num_experts=", r.expected,
                     ") (-1: no expert)", kRefuses);
    case WaitSite::kLowLatencyBadBlock:
      return str_cat("uccl-ep: rank ", r.rank, ": the low-latency dispatch block from peer ",
                     r.peer, " for local expert ", r.channel, " claims ", r.observed,
                     " messages, outside [0, num_max_dispatch_tokens_per_rank=", r.expected,
                     "]: the ranks disagree on num_max_dispatch_tokens_per_rank or the RDMA buffer "
                     "was overwritten",
                     kRefuses);
    case WaitSite::kLowLatencyBadHandle:
      return str_cat(
          "uccl-ep: rank ", r.rank,
          ": the low-latency combine handle's layout range "
          "for source rank ",
          r.peer, " and local expert ", r.channel, " is rows [", r.row, ", ", r.row, " + ",
          r.observed, "), outside [0, num_ranks * num_max_dispatch_tokens_per_rank=", r.expected,
          "]: pass the handle this Buffer's low_latency_dispatch returned, unmodified", kRefuses);
    case WaitSite::kNodeCountMismatch:
      return str_cat(
          "uccl-ep: rank ", r.rank, ": dispatch inputs disagree: num_tokens_per_rdma_rank[", r.peer,
          "]=", r.expected, " but is_token_in_rank routes ", r.observed, " tokens to node ", r.peer,
          " (pass the counts get_dispatch_layout returns for these inputs)", kRefuses);
    case WaitSite::kPeerError:
      return str_cat("uccl-ep: rank ", r.rank, ": peer rank ", r.peer,
                     " found its dispatch inputs inconsistent during the count exchange (its own "
                     "error says which)",
                     kRefuses);
    default:
      return str_cat("uccl-ep: rank ", r.rank, ": error at ",
                     wait_site_name(static_cast<WaitSite>(r.site)), " (peer ", r.peer,
                     ", expected ", r.expected, ", observed ", r.observed, ")", kRefuses);
  }
}

}  // namespace

std::string describe_error(const protocol::HostErrorRecord& r, double timeout_secs) {
  const auto site = static_cast<WaitSite>(r.site);
  if (!protocol::is_wait_site(site)) return describe_check(r);
  char waited[32];
  std::snprintf(waited, sizeof(waited), "%.1f", static_cast<double>(r.waited_ns) * 1e-9);
  std::string where;
  if (r.channel >= 0) where = str_cat(" (channel ", r.channel, ")");
  if (r.queue >= 0) where = str_cat(" (command queue ", r.queue, ")");
  const std::string peer = r.peer >= 0 ? str_cat(" for peer ", r.peer) : std::string();
  return str_cat("uccl-ep: rank ", r.rank, " timed out after ", waited, " s waiting", peer, where,
                 " at ", wait_site_name(site), ": expected ", r.expected, ", observed ", r.observed,
                 kRefuses, " (UCCL_EP_TIMEOUT_SECS=", timeout_secs, ")");
}

}  // namespace uccl::ep::runtime
