// Argument validation of the Buffer constructor.
#include "runtime/validate/buffer.h"

#include <cstdint>

#include "common/error.h"

namespace uccl::ep::runtime {
namespace {

void check_size(const char* name, int64_t bytes) {
  UCCL_EP_CHECK_VALUE(bytes >= 0 && bytes % 128 == 0, name, "=", bytes,
                      " must be a non-negative multiple of 128");
  UCCL_EP_CHECK_VALUE(bytes / 16 < INT32_MAX, name, "=", bytes, " is too large: ", name,
                      " / 16 must be < 2^31 - 1");
}

}  // namespace

void validate_buffer_options(const BufferOptions& o) {
  UCCL_EP_CHECK_VALUE(o.num_ranks >= 1, "num_ranks=", o.num_ranks, " must be >= 1");
  UCCL_EP_CHECK_VALUE(o.rank >= 0 && o.rank < o.num_ranks, "rank=", o.rank, " must be in [0, ",
                      o.num_ranks, ")");
  UCCL_EP_CHECK_VALUE(o.num_local_ranks >= 0, "num_local_ranks=", o.num_local_ranks,
                      " must be >= 0 (0: the ranks of each host)");
  UCCL_EP_CHECK_VALUE(o.device >= 0, "device=", o.device, " must be a CUDA device index");
  check_size("num_nvl_bytes", o.num_nvl_bytes);
  check_size("num_rdma_bytes", o.num_rdma_bytes);
  UCCL_EP_CHECK_VALUE(o.low_latency_mode || o.num_rdma_bytes <= INT32_MAX,
                      "num_rdma_bytes=", o.num_rdma_bytes,
                      " must be <= 2^31 - 1 without low_latency_mode");
}

void validate_buffer_topology(const BufferOptions& o, const Topology& t) {
  UCCL_EP_CHECK_VALUE(o.num_rdma_bytes == 0 || t.num_nodes() > 1 || o.low_latency_mode,
                      "num_rdma_bytes=", o.num_rdma_bytes, " must be 0 when every rank shares one ",
                      "NVLink domain (", t.describe(),
                      ") without low_latency_mode: the RDMA buffer serves the internode and "
                      "low-latency modes");
}

}  // namespace uccl::ep::runtime
