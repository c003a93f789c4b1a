// Marks functions callable from host and device code alike.
#pragma once

#if defined(__CUDACC__)
#define UCCL_HD __host__ __device__ __forceinline__
#else
#define UCCL_HD inline
#endif
