// The GPU-initiated command path of one rank, on its own: command queues that kernels push
// 16-byte commands into, the signal region, one transport per CPU proxy thread, and the proxy
// threads executing the commands against the RDMA buffer of every rank. A Buffer with an RDMA
// domain owns one; uccl.ep.initialize_uccl builds one around a caller's RDMA buffer.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "uccl_ep/buffer.h"

namespace uccl::ep {

struct CommandPathOptions {
  int rank = 0;
  int num_ranks = 1;
  int local_rank = 0;  // index of this rank's GPU on its host (CPU placement of the proxies)
  /// The RDMA buffer: same size and layout on every rank; the caller keeps it alive.
  void* rdma_buffer = nullptr;
  uint64_t rdma_buffer_bytes = 0;
  bool rdma_buffer_on_device = true;      // false: pinned host memory
  std::string rdma_buffer_shared_name{};  // host memory in POSIX shared memory: its name
  int device = -1;                        // CUDA device of the queues; -1: host queues (no GPU)
  bool low_latency_mode = false;          // the in-flight limit per queue (UCCL_IB_MAX_INFLIGHT_*)
  std::string transport{};                // "" : UCCL_EP_TRANSPORT; else auto, libfabric, ipc, null
  uint32_t num_queues = 32;
  uint32_t queue_capacity = 2048;  // slots per queue, a power of two
  bool host_queues = false;        // queues in plain host memory, pushed by the host (tests)
};

/// How a CommandPath's proxies stopped: "drained", "abandoned", "failed" or "not started", and
/// one line for logs and exceptions.
struct CommandPathStop {
  std::string status;
  std::string message;
};

/// A test-only transport factory (src/runtime/rdma_domain.h); null in production.
struct TransportInjection;

class CommandPath {
 public:
  /// Collective: builds this rank's queues, signal region and transports, exchanges transport
  /// addresses through `all_gather`, connects and starts the proxy threads. If any rank fails,
  /// every rank throws (its own error, or Error(kRuntime) naming the failed ranks).
  CommandPath(const CommandPathOptions& options, const AllGather& all_gather,
              const TransportInjection* injection = nullptr);
  /// Stops the proxies at once (abandon) if stop() was not called.
  ~CommandPath();
  CommandPath(const CommandPath&) = delete;
  CommandPath& operator=(const CommandPath&) = delete;

  /// Throws Error(kRuntime) with the proxies' first error (rank, thread, queue, ticket, opcode,
  /// peer, transport message, counters), if they failed.
  void check() const;
  /// Stops the proxy threads: `drain` executes what is queued first (with the deadline).
  CommandPathStop stop(bool drain);

  std::string transport() const;
  int num_proxy_threads() const;
  uint32_t num_queues() const;
  uint32_t queue_capacity() const;
  /// Counters summed over the proxy threads (commands, posted, completed, bytes, ...).
  std::map<std::string, uint64_t> stats() const;

  struct Impl;
  Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace uccl::ep
