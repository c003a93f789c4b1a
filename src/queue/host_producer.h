// A host-thread producer for a GPU->CPU command queue: the device producer's protocol
// (producer.cuh) written with std::atomic_ref, for CPU tests and the CPU benchmark.
#pragma once

#include <chrono>
#include <cstdint>

#include "protocol/command.h"
#include "queue/queue_layout.h"

namespace uccl::ep::queue {

/// Pushes commands into one queue from a host thread. Any number of HostProducers (one per
/// thread) may push into the same queue: slots are reserved with one atomic add on the
/// ticket, exactly as GPU warps do. Every pointer of the handle must be host-addressable
/// (QueueSet::host_producer_handle()).
class HostProducer {
 public:
  /// `timeout` bounds every wait (full queue, fence, barrier).
  HostProducer(const QueueDeviceHandle& queue, std::chrono::nanoseconds timeout);

  /// Pushes one command; returns its ticket. Blocks while the queue is full. Throws
  /// Error(kValue) for an empty command (word0 == 0), Error(kTimeout) naming queue, ticket,
  /// tail and capacity when the deadline passes, Error(kRuntime) when the queue's error word
  /// is set while waiting.
  uint64_t push(const protocol::Command& command);
  /// Pushes `n` commands as one batch (one reservation, one fence); returns the first ticket
  /// (commands get consecutive tickets). `n` must be in [1, capacity]; errors as push().
  uint64_t push_batch(const protocol::Command* commands, uint32_t n);

  /// Waits until the consumer published fence_done >= `sequence`. Throws Error(kTimeout) with
  /// the queue, sequence and fence_done, Error(kRuntime) when the error word is set.
  void wait_fence(uint64_t sequence);
  /// Same for barrier_done.
  void wait_barrier(uint64_t sequence);

  uint32_t index() const { return queue_.index; }

 private:
  void wait_for_space(uint64_t first, uint32_t n);
  void wait_done(uint64_t* word, uint64_t sequence, const char* what);
  [[noreturn]] void throw_queue_error(uint32_t code, const char* while_doing) const;

  QueueDeviceHandle queue_;
  std::chrono::nanoseconds timeout_;
};

}  // namespace uccl::ep::queue
