// Collective steps of set-up: each rank runs a local step, then every rank learns every other
// rank's outcome through one all-gather, so that a failure on one rank becomes an exception on
// every rank instead of a peer blocked in the next collective.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "uccl_ep/buffer.h"

namespace uccl::ep::runtime {

/// Runs `local` (which returns this rank's payload), all-gathers (outcome, payload) and returns
/// every rank's payload (index = rank). If `local` threw uccl::ep::Error, this rank rethrows it
/// after the all-gather; if another rank failed, throws Error(kRuntime) "<what>: rank r failed:
/// <its message>" for every failed rank. `what` names the step in messages.
std::vector<Bytes> collective_step(const AllGather& all_gather, int rank, int num_ranks,
                                   const std::string& what, const std::function<Bytes()>& local);

/// The message collective_step sends for a rank that failed with `message` (without running
/// a local step, e.g. a Python-side argument error before the Buffer was built).
Bytes encode_step_failure(int rank, const std::string& message);

}  // namespace uccl::ep::runtime
