// The internals of a Buffer, for the mode operations (src/runtime/*_ops.cc): the topology, the
// NVLink domain, the RDMA domain and the health state.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <string>
#include <vector>

#include "common/env.h"
#include "runtime/health.h"
#include "runtime/host_memory.h"
#include "runtime/nvl_domain.h"
#include "runtime/rdma_domain.h"
#include "uccl_ep/buffer.h"

namespace uccl::ep {

struct Buffer::Impl {
  BufferOptions options;
  EnvSettings env;
  Topology topology;
  std::unique_ptr<runtime::Health> health;
  std::unique_ptr<runtime::NvlDomain> nvl;
  runtime::RdmaMemory rdma_buffer;            // empty when num_rdma_bytes == 0
  std::unique_ptr<runtime::RdmaDomain> rdma;  // null without an RDMA buffer
  /// Low-latency mode with the RDMA buffer in device memory: the RDMA buffers of this rank's
  /// NVLink domain by local rank (this rank's own included; peers' through CUDA IPC).
  std::vector<uint8_t*> rdma_direct;
  std::vector<void*> rdma_opened;         // IPC mappings to close
  cudaEvent_t order_event = nullptr;      // stream_wait's event
  cudaStream_t control_stream = nullptr;  // destroy()'s barrier
  bool available = false;
  bool destroyed = false;

  /// Releases what a failed construction left (destroy() releases it otherwise).
  ~Impl();

  /// Throws unless the buffer is connected, not destroyed and healthy; `op` names the caller.
  void require_ready(const char* op) const;
  /// What kernels report to.
  device::DeviceDiag diag() const { return health->diag(); }

  /// Set-up steps of the constructor (buffer.cc).
  Bytes setup_local();
  Bytes connect_domains(const std::vector<Bytes>& setup);
  void start_proxies(const std::vector<Bytes>& addresses);
  /// Maps the RDMA buffers of the local peers (`handles` by rank; empty entries are skipped).
  void map_direct_peers(const std::vector<Bytes>& handles);
  void unmap_direct_peers() noexcept;
  /// destroy()'s wait for every rank; returns "" or why it failed.
  std::string barrier_before_free();
};

}  // namespace uccl::ep
