// One launch helper for kernels instantiated per rank count: picks the instantiation, launches
// it and checks the launch; an unsupported count is an error listing the supported ones.
#pragma once

#include <string>
#include <type_traits>

#include "common/cuda_check.h"
#include "common/error.h"

namespace uccl::ep::kernels {

/// "2, 4, 8" for messages.
template <int... kCounts>
std::string rank_count_list() {
  std::string out;
  ((out += (out.empty() ? "" : ", ") + std::to_string(kCounts)), ...);
  return out;
}

/// Calls `launch(std::integral_constant<int, R>{})` for the R of kCounts equal to `num_ranks`,
/// then checks the launch (`kernel` names it). Throws Error(kValue) naming `num_ranks` and the
/// supported counts when none matches.
template <int... kCounts, typename Launch>
void launch_for_ranks(int num_ranks, const char* kernel, Launch&& launch) {
  const bool found =
      ((num_ranks == kCounts ? (launch(std::integral_constant<int, kCounts>{}), true) : false) ||
       ...);
  UCCL_EP_CHECK_VALUE(found, kernel, ": num_ranks=", num_ranks,
                      " is not supported; supported: ", rank_count_list<kCounts...>());
  UCCL_EP_CHECK_LAUNCH(kernel);
}

}  // namespace uccl::ep::kernels
