// Helpers the mode operations (src/runtime/*_ops.cc) share to fill kernel arguments from
// TensorViews.
#pragma once

#include "uccl_ep/tensor.h"

namespace uccl::ep::runtime {

/// The tensor's data as T*, or null for an absent (undefined) optional tensor.
template <typename T>
T* ptr_or_null(const TensorView& t) {
  return t.defined() ? t.ptr<T>() : nullptr;
}

/// The input fields every normal-mode dispatch kernel takes (intranode and internode
/// DispatchArgs name them alike): x, its scales and the top-k ids and weights of `t`.
template <typename Args, typename Tensors>
void fill_dispatch_inputs(Args& a, const Tensors& t) {
  a.x = t.x.template ptr<const uint8_t>();
  a.hidden_bytes = t.x.size(1) * dtype_size(t.x.dtype);
  a.num_tokens = static_cast<int>(t.x.size(0));
  a.x_scales = ptr_or_null<const int32_t>(t.x_scales);
  a.num_scales = t.x_scales.defined() ? static_cast<int>(t.x_scales.size(1)) : 0;
  a.scale_token_stride = t.x_scales.defined() ? t.x_scales.stride(0) : 0;
  a.scale_hidden_stride = t.x_scales.defined() ? t.x_scales.stride(1) : 0;
  a.topk_idx = ptr_or_null<const int64_t>(t.topk_idx);
  a.topk_weights = ptr_or_null<const float>(t.topk_weights);
  a.num_topk = t.topk_idx.defined() ? static_cast<int>(t.topk_idx.size(1)) : 0;
}

}  // namespace uccl::ep::runtime
