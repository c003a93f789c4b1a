// Argument validation of every public intranode call. Host-only (no CUDA runtime), so CI can
// test it. Type problems raise Error(kType), everything else Error(kValue), naming the argument,
// the value and the rule.
#pragma once

#include <cstdint>

#include "uccl_ep/intranode.h"

namespace uccl::ep::runtime {

/// Checks the Buffer constructor arguments of the intranode mode.
void validate_buffer_args(int rank, int num_ranks, int64_t num_nvl_bytes);

void validate_layout(const BufferInfo& info, const LayoutTensors& t);
void validate_notify(const BufferInfo& info, const NotifyTensors& t);
void validate_dispatch(const BufferInfo& info, const DispatchTensors& t);
void validate_combine(const BufferInfo& info, const CombineTensors& t);

/// Ring-storage bytes a dispatch / combine with these parameters needs.
int64_t dispatch_ring_bytes(const Config& config, int num_ranks, int64_t hidden_bytes,
                            int num_scales, int num_topk);
int64_t combine_ring_bytes(const Config& config, int num_ranks, int64_t hidden_bytes, int num_topk);

}  // namespace uccl::ep::runtime
