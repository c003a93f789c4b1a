// Host consumer of one GPU->CPU command queue: reads ready commands in ticket order, releases
// their slots, and publishes FENCE / BARRIER completion and errors back to the producers.
#pragma once

#include <cstdint>

#include "protocol/command.h"
#include "queue/queue_layout.h"

namespace uccl::ep::queue {

/// Host addresses of one queue, as its consumer sees them.
struct QueueHostView {
  protocol::Command* slots = nullptr;  // [capacity], host address of the shared slots
  QueueControl* control = nullptr;     // host address of the shared control words
  uint32_t capacity = 0;               // a power of two
  uint32_t index = 0;                  // queue id, for messages
};

/// The consumer side of one queue. Exactly one thread uses a Consumer at a time, and one
/// Consumer serves a queue (a proxy thread owns its queues). peek() and release() allocate
/// nothing and take no lock.
///
/// Ordering (docs/command_path.md): a slot is ready when its word0 (loaded with acquire) is
/// non-zero and its word1 is not kEmptyWord1: both halves of the producer's 16-byte store have
/// arrived. release() frees the released slots (word0 = 0, word1 = kEmptyWord1) and then
/// stores the new tail with release, so a producer that reads the tail (acquire) sees the freed
/// slots and never loses a later write to them.
class Consumer {
 public:
  Consumer() = default;
  /// Starts at the queue's current tail (a consumer may be re-created over a live queue).
  /// Throws Error(kValue) on null pointers or a capacity that is not a power of two.
  explicit Consumer(const QueueHostView& view);
  /// Move-only: two Consumers with separate heads on one queue would both release its slots.
  Consumer(Consumer&&) noexcept = default;
  Consumer& operator=(Consumer&&) noexcept = default;
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  /// Copies up to `max` ready commands, in ticket order, starting at head(), into `out`;
  /// stops at the first empty slot. Does not consume: the same commands (and possibly more)
  /// come back until release(). Returns how many were copied (0 when none is ready).
  int peek(protocol::Command* out, int max);
  /// Consumes the first `n` commands returned by peek(): clears their slots and publishes the
  /// tail with one release store. Throws Error(kValue) when n exceeds what peek() found ready.
  void release(int n);

  /// Ticket of the next command to consume (equals the published tail).
  uint64_t head() const { return head_; }
  /// Commands peek() has found ready and that are not released yet.
  uint32_t num_ready() const { return num_ready_; }
  uint32_t capacity() const { return view_.capacity; }
  uint32_t index() const { return view_.index; }

  /// Publishes that every FENCE with sequence <= `sequence` completed (release store; wakes
  /// GPU wait_fence). Throws Error(kValue) if `sequence` is below the last published value.
  void publish_fence_done(uint64_t sequence);
  /// Publishes that every BARRIER with sequence <= `sequence` completed (release store).
  void publish_barrier_done(uint64_t sequence);
  /// Records a failure of this queue's proxy: every producer wait on the queue stops. The first
  /// non-zero code is kept (later calls do not overwrite it). Throws Error(kValue) for code 0.
  void set_error(uint32_t code);

  /// Current values of the control words (acquire loads).
  uint64_t fence_done() const;
  uint64_t barrier_done() const;
  uint32_t error() const;

 private:
  QueueHostView view_;
  uint32_t mask_ = 0;
  uint64_t head_ = 0;       // next ticket to consume; the last tail published
  uint32_t num_ready_ = 0;  // slots from head_ known to be ready
};

/// Widens the 32-bit sequence a FENCE / BARRIER command carries to the 64-bit counter the
/// proxy publishes: the first value >= `last` whose low 32 bits are `low`. Sequences of one
/// queue increase, and fewer than 2^32 of them are outstanding at a time.
inline uint64_t widen_sequence(uint64_t last, uint32_t low) {
  return last + static_cast<uint32_t>(low - static_cast<uint32_t>(last));
}

}  // namespace uccl::ep::queue
