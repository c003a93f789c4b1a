// Per-token routing logic of get_dispatch_layout, shared by the kernel and the CPU tests.
#pragma once

#include <cstdint>

#include "common/hd.h"

namespace uccl::ep::kernels::routing {

/// Whether `id` may appear in topk_idx: an expert in [0, num_experts) or -1 (no expert).
UCCL_HD bool valid_topk_entry(int64_t id, int64_t num_experts) {
  return id >= -1 && id < num_experts;
}

/// True when entry `k` of a token's top-k row is the first valid entry naming the same unit
/// (rank or node) of `unit` consecutive experts. Rows are short (<= 32): a quadratic scan.
UCCL_HD bool first_in_unit(const int64_t* row, int k, int64_t unit, int64_t num_experts) {
  const int64_t mine = row[k] / unit;
  for (int j = 0; j < k; ++j)
    if (row[j] >= 0 && row[j] < num_experts && row[j] / unit == mine) return false;
  return true;
}

/// Walks one token's row: calls on_expert(e) for every valid entry, on_rank(r) once per
/// distinct rank and on_node(n) once per distinct node (only when experts_per_node > 0).
/// Entries < 0 or >= num_experts are ignored.
template <typename OnExpert, typename OnRank, typename OnNode>
UCCL_HD void route_token(const int64_t* row, int num_topk, int64_t num_experts,
                         int64_t experts_per_rank, int64_t experts_per_node, OnExpert&& on_expert,
                         OnRank&& on_rank, OnNode&& on_node) {
  for (int k = 0; k < num_topk; ++k) {
    const int64_t e = row[k];
    if (e < 0 || e >= num_experts) continue;
    on_expert(e);
    if (first_in_unit(row, k, experts_per_rank, num_experts))
      on_rank(static_cast<int>(e / experts_per_rank));
    if (experts_per_node > 0 && first_in_unit(row, k, experts_per_node, num_experts))
      on_node(static_cast<int>(e / experts_per_node));
  }
}

}  // namespace uccl::ep::kernels::routing
