// Host launchers of the RDMA domain's own kernels (the modes' kernels push their commands
// themselves).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "device/diag.h"
#include "queue/queue_layout.h"

namespace uccl::ep::kernels::rdma {

/// Barrier of every rank of the command path: one thread pushes BARRIER(group, sequence) into
/// `queue` and waits for its completion (deadline: the diag's timeout; a failed proxy stops it).
struct BarrierArgs {
  queue::QueueDeviceHandle queue;
  uint32_t group;
  uint64_t sequence;  // this rank's BARRIER count on the group, the one being issued
  device::DeviceDiag diag;
};
void launch_barrier(const BarrierArgs& args, cudaStream_t stream);
/// Loads the barrier kernel now (CUDA lazy loading would load it at its first launch, waiting
/// for the kernels running then: docs/command_path.md, "CUDA lazy loading").
void preload_barrier();

/// Tests: one WRITE of `bytes` from this rank's RDMA buffer at `local_offset` to `peer`'s at
/// `remote_offset` through `queue`, then a FENCE the kernel waits for (the data has landed).
struct TestWriteArgs {
  queue::QueueDeviceHandle queue;
  int peer;
  uint64_t local_offset, remote_offset, bytes;
  uint64_t fence_sequence;  // this queue's FENCE count, the one being issued
  device::DeviceDiag diag;
};
void launch_test_write(const TestWriteArgs& args, cudaStream_t stream);

}  // namespace uccl::ep::kernels::rdma
