// Whether the chosen provider can register CUDA memory: decided by trying, at run time.
#include <cuda_runtime_api.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_errno.h>

#include "common/error.h"
#include "transport/libfabric/fabric.h"

namespace uccl::ep::transport::libfabric {

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error for later callers
    return 0;
  }
  return n;
}

int cuda_device_of(const void* ptr) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, ptr) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return attr.type == cudaMemoryTypeDevice ? attr.device : -1;
}

std::string probe_cuda_registration(fid_domain* domain) {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();
    return "no current CUDA device";
  }
  constexpr size_t kBytes = 1 << 20;
  void* ptr = nullptr;
  if (const cudaError_t e = cudaMalloc(&ptr, kBytes); e != cudaSuccess) {
    cudaGetLastError();
    return str_cat("cudaMalloc failed: ", cudaGetErrorString(e));
  }
  iovec iov{ptr, kBytes};
  fi_mr_attr attr{};
  attr.mr_iov = &iov;
  attr.iov_count = 1;
  attr.access = FI_REMOTE_WRITE | FI_WRITE;
  attr.requested_key = 0x7e57;
  attr.iface = FI_HMEM_CUDA;
  attr.device.cuda = device;
  fid_mr* mr = nullptr;
  const int rc = fi_mr_regattr(domain, &attr, 0, &mr);
  std::string why;
  if (rc != 0) {
    why = str_cat("fi_mr_regattr(FI_HMEM_CUDA) failed: ", fi_error_text(rc));
  } else {
    fi_close(&mr->fid);
  }
  cudaFree(ptr);
  return why;
}

}  // namespace uccl::ep::transport::libfabric
