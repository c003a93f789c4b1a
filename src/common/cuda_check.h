// CUDA runtime error checks that throw uccl::ep::Error with the failing call and location.
#pragma once

#include <cuda_runtime_api.h>

#include "common/error.h"

#define UCCL_EP_CUDA_CHECK(expr)                                                              \
  do {                                                                                        \
    const cudaError_t uccl_ep_err_ = (expr);                                                  \
    if (uccl_ep_err_ != cudaSuccess)                                                          \
      ::uccl::ep::throw_error(                                                                \
          ::uccl::ep::ErrorKind::kRuntime,                                                    \
          ::uccl::ep::str_cat("CUDA error in ", #expr, " at ", __FILE__, ":", __LINE__, ": ", \
                              cudaGetErrorString(uccl_ep_err_)));                             \
  } while (0)

/// Checks the last launch; `what` names the kernel.
#define UCCL_EP_CHECK_LAUNCH(what)                                                     \
  do {                                                                                 \
    const cudaError_t uccl_ep_err_ = cudaGetLastError();                               \
    if (uccl_ep_err_ != cudaSuccess)                                                   \
      ::uccl::ep::throw_error(::uccl::ep::ErrorKind::kRuntime,                         \
                              ::uccl::ep::str_cat("CUDA error launching ", what, ": ", \
                                                  cudaGetErrorString(uccl_ep_err_)));  \
  } while (0)
