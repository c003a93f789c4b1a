// Memory layout of a GPU->CPU command queue, shared by the device producer, the host consumer
// and the proxy.
//
// Slots and control words live in pinned host memory mapped into the device; the producer's
// reservation ticket and its cached copy of the consumer position live in device memory.
//
// Ordering rules (docs/command_path.md has the full argument):
//  1. A producer reserves slots with one atomic add on `ProducerState::ticket`, so any warp (any
//     number of warps) may push; tickets give the order of commands in a queue.
//  2. It waits while `ticket + n > cached_tail + capacity`, re-reading `QueueControl::tail`
//     (acquire, system scope) only then, with a deadline; a full queue never overwrites. The
//     tail it saw goes into `cached_tail` with an atomic max (release; readers acquire), so a
//     push that trusts the cache is still ordered after the consumer's clears (rule 4).
//  3. It fences at system scope once per batch (`fence.acq_rel.sys`: releases the data the
//     commands name), then writes each command with one 16-byte store. A free slot holds
//     `word0 == 0` and `word1 == kEmptyWord1`; no valid command has either value, so a slot
//     whose two halves have both changed holds a whole command, even if the 16-byte store
//     reached memory in two pieces.
//  4. The consumer reads slots in ticket order (acquire load of `word0`, then `word1`), stops
//     at the first slot that is not whole, frees the slots it took (word0 = 0,
//     word1 = kEmptyWord1), then publishes `tail` (release) once per batch.
//  5. Completion flows back through `fence_done` / `barrier_done` (release by the proxy,
//     acquire by the GPU) and `error`, which makes every GPU wait on this queue stop.
// producer.cuh (device), host_producer.cc and consumer.cc implement these rules.
#pragma once

#include <cstdint>

#include "protocol/command.h"

namespace uccl::ep::queue {

/// Host-resident control words of one queue (each on its own 128-byte line).
struct alignas(128) QueueControl {
  alignas(128) uint64_t tail;          // slots released by the consumer
  alignas(128) uint64_t fence_done;    // highest FENCE sequence completed at the targets
  alignas(128) uint64_t barrier_done;  // highest BARRIER sequence completed
  alignas(128) uint32_t error;         // non-zero once the proxy owning this queue failed
};

/// Device-resident producer state of one queue.
struct alignas(128) ProducerState {
  uint64_t ticket;       // next slot to reserve (monotonic)
  uint64_t cached_tail;  // last `QueueControl::tail` a producer read (monotonic)
};

/// Everything a kernel needs to push into one queue (passed by value in kernel args).
struct QueueDeviceHandle {
  protocol::Command* slots;  // [capacity], host memory mapped into the device
  QueueControl* control;     // host memory mapped into the device
  ProducerState* producer;   // device memory
  uint32_t capacity;         // a power of two
  uint32_t index;            // queue id, for diagnostics
};

}  // namespace uccl::ep::queue
