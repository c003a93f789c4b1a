// The runtime of one rank: a Buffer owns the topology, the NVLink domain, the RDMA domain (when
// needed) and one health state. Every mode (intranode.h, and the modes that follow) is a set of
// operations on a Buffer, declared in its own header; this header names no mode.
//
// Construction and destruction are collective over all ranks: the Buffer exchanges what peers
// need through an injected all-gather (torch.distributed or mpi4py from Python, a TCP
// rendezvous from C++), and every rank learns of every other rank's failure.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "uccl_ep/topology.h"

namespace uccl::ep {

using Bytes = std::vector<uint8_t>;

/// All-gather of one message per rank: returns every rank's message, index = rank. Collective;
/// may throw (the Buffer then throws on this rank). The Buffer calls it a fixed number of times
/// in the same order on every rank.
using AllGather = std::function<std::vector<Bytes>(const Bytes& mine)>;

/// What a Buffer is built from. Sizes must agree on every rank (checked, naming both ranks).
struct BufferOptions {
  int rank = 0;
  int num_ranks = 1;
  /// Ranks per NVLink domain. 0: the ranks of each host (grouped at construction). The
  /// environment variable UCCL_EP_NUM_LOCAL_RANKS overrides both (emulated nodes on one host).
  int num_local_ranks = 0;
  int device = 0;              // CUDA device index of this rank
  int64_t num_nvl_bytes = 0;   // NVLink buffer (multiple of 128), shared with NVLink peers
  int64_t num_rdma_bytes = 0;  // RDMA buffer (multiple of 128), registered with the transport;
                               // > 0 needs several NVLink domains or low_latency_mode
  bool low_latency_mode = false;
  /// This rank's host name; ranks with equal names share a host (and, by default, an NVLink
  /// domain). Empty: gethostname().
  std::string host_name{};
};

/// What argument validation needs to know about a buffer.
struct BufferInfo {
  int rank = 0;
  int num_ranks = 1;
  int64_t num_nvl_bytes = 0;
  int device_index = 0;
  int64_t num_rdma_bytes = 0;
  bool low_latency_mode = false;
  /// Ranks per NVLink domain (node; Topology::num_local_ranks). 0: every rank in one domain.
  int num_local_ranks = 0;

  /// Ranks per NVLink domain, num_ranks when num_local_ranks is 0.
  int local_ranks() const { return num_local_ranks > 0 ? num_local_ranks : num_ranks; }
  /// Number of NVLink domains (nodes) the ranks span.
  int num_nodes() const { return local_ranks() > 0 ? num_ranks / local_ranks() : 1; }
};

/// What the RDMA domain runs (all zero / empty without one).
struct RdmaInfo {
  std::string transport;  // "ipc", "libfabric:tcp;ofi_rxm", ...
  int num_proxy_threads = 0;
  int num_queues = 0;
};

/// One rank's buffer. Not thread-safe; operations run on the stream they are given. Every
/// wait has a deadline (UCCL_EP_TIMEOUT_SECS); after any recorded error (a wait past its
/// deadline, a failed CPU proxy, inputs the GPU found inconsistent) the buffer is aborted:
/// kernels fill their outputs with poison (NaN, -1, zero counts) and every call throws.
class Buffer {
 public:
  /// Collective. Validates the options, allocates the NVLink buffer (and the RDMA buffer),
  /// exchanges handles and transport addresses through `all_gather`, maps the NVLink peers and
  /// starts the CPU proxies when an RDMA domain is needed. If any rank fails, every rank throws:
  /// the failing rank its own error, the others Error(kRuntime) naming the failing ranks.
  Buffer(const BufferOptions& options, const AllGather& all_gather);
  /// Destroys (see destroy()); errors are logged, never thrown.
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  const BufferOptions& options() const;
  const Topology& topology() const;
  BufferInfo info() const;
  RdmaInfo rdma_info() const;

  /// Throws the recorded error, if any (Error(kRuntime)); `op` names the caller in messages.
  void check(const char* op = "check") const;
  bool is_available() const;

  /// Collective: every rank waits (on the GPU, with the deadline) until all ranks arrived,
  /// then the CPU proxies stop and everything is freed. Never hangs: past the deadline the
  /// memory is freed anyway and Error(kRuntime) names the ranks that did not arrive. A buffer
  /// that is already aborted skips the wait. Safe to call twice.
  void destroy();

  /// Device pointers of this rank's buffers (null when the size is 0).
  void* nvl_buffer() const;
  void* rdma_buffer() const;

  /// Makes `waiter` wait for the work queued on `waitee` so far (one reused event; works under
  /// CUDA graph capture). Both streams belong to this buffer's device.
  void stream_wait(cudaStream_t waiter, cudaStream_t waitee);
  /// Makes `waiter` wait for a recorded CUDA event (null: no wait).
  void stream_wait_event(cudaStream_t waiter, cudaEvent_t event);

  struct Impl;
  /// The runtime's internals, for the mode operations (src/runtime/buffer_impl.h).
  Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

/// The message a rank that failed before it could build its Buffer sends in place of the
/// Buffer's first all-gather message, so that its peers' constructors throw instead of
/// waiting: the peers' error names `rank` and `message`.
Bytes buffer_setup_failure(int rank, const std::string& message);

}  // namespace uccl::ep
