// Host consumer of one GPU->CPU command queue (see consumer.h for the ordering rules).
#include "queue/consumer.h"

#include <atomic>

#include "common/error.h"

namespace uccl::ep::queue {
namespace {

using protocol::Command;

uint64_t load_acquire(uint64_t& word) {
  return std::atomic_ref<uint64_t>(word).load(std::memory_order_acquire);
}

}  // namespace

Consumer::Consumer(const QueueHostView& view) : view_(view) {
  UCCL_EP_CHECK_VALUE(view.slots != nullptr && view.control != nullptr, "queue ", view.index,
                      ": consumer needs the slots and control words (got null)");
  UCCL_EP_CHECK_VALUE(view.capacity != 0 && (view.capacity & (view.capacity - 1)) == 0, "queue ",
                      view.index, ": capacity=", view.capacity, " must be a power of two");
  mask_ = view.capacity - 1;
  head_ = load_acquire(view.control->tail);
}

int Consumer::peek(Command* out, int max) {
  const uint32_t limit = max <= 0                                      ? 0u
                         : static_cast<uint32_t>(max) < view_.capacity ? static_cast<uint32_t>(max)
                                                                       : view_.capacity;
  uint32_t i = 0;
  for (; i < limit; ++i) {
    Command& slot = view_.slots[(head_ + i) & mask_];
    // Acquire: a non-zero word0 orders the load of word1 after it. A slot is ready when both
    // halves hold the new command: a 16-byte store that reached memory as two halves shows
    // word0 != 0 with word1 still kEmptyWord1, and is taken on a later peek.
    const uint64_t word0 =
        i < num_ready_ ? std::atomic_ref<uint64_t>(slot.word0).load(std::memory_order_relaxed)
                       : load_acquire(slot.word0);
    if (word0 == 0) break;
    const uint64_t word1 = std::atomic_ref<uint64_t>(slot.word1).load(std::memory_order_relaxed);
    if (word1 == protocol::kEmptyWord1) break;
    out[i].word0 = word0;
    out[i].word1 = word1;
  }
  if (i > num_ready_) num_ready_ = i;
  return static_cast<int>(i);
}

void Consumer::release(int n) {
  UCCL_EP_CHECK_VALUE(n >= 0 && static_cast<uint32_t>(n) <= num_ready_, "queue ", view_.index,
                      ": release(", n, ") but only ", num_ready_,
                      " commands were found ready by peek() at ticket ", head_);
  if (n == 0) return;
  for (int i = 0; i < n; ++i) {
    Command& slot = view_.slots[(head_ + static_cast<uint32_t>(i)) & mask_];
    std::atomic_ref<uint64_t>(slot.word1).store(protocol::kEmptyWord1, std::memory_order_relaxed);
    std::atomic_ref<uint64_t>(slot.word0).store(0, std::memory_order_relaxed);
  }
  head_ += static_cast<uint32_t>(n);
  num_ready_ -= static_cast<uint32_t>(n);
  // Release: a producer that reads this tail (acquire) also sees the cleared slots, so its
  // next write to these slots is ordered after our clears and is never lost.
  std::atomic_ref<uint64_t>(view_.control->tail).store(head_, std::memory_order_release);
}

void Consumer::publish_fence_done(uint64_t sequence) {
  std::atomic_ref<uint64_t> done(view_.control->fence_done);
  const uint64_t last = done.load(std::memory_order_relaxed);
  UCCL_EP_CHECK_VALUE(sequence >= last, "queue ", view_.index, ": publish_fence_done(", sequence,
                      ") is below the published fence_done ", last, " (sequences only grow)");
  done.store(sequence, std::memory_order_release);
}

void Consumer::publish_barrier_done(uint64_t sequence) {
  std::atomic_ref<uint64_t> done(view_.control->barrier_done);
  const uint64_t last = done.load(std::memory_order_relaxed);
  UCCL_EP_CHECK_VALUE(sequence >= last, "queue ", view_.index, ": publish_barrier_done(", sequence,
                      ") is below the published barrier_done ", last, " (sequences only grow)");
  done.store(sequence, std::memory_order_release);
}

void Consumer::set_error(uint32_t code) {
  UCCL_EP_CHECK_VALUE(code != 0, "queue ", view_.index, ": set_error needs a non-zero code");
  uint32_t expected = 0;
  std::atomic_ref<uint32_t>(view_.control->error)
      .compare_exchange_strong(expected, code, std::memory_order_release,
                               std::memory_order_relaxed);
}

uint64_t Consumer::fence_done() const {
  return load_acquire(view_.control->fence_done);
}

uint64_t Consumer::barrier_done() const {
  return load_acquire(view_.control->barrier_done);
}

uint32_t Consumer::error() const {
  return std::atomic_ref<uint32_t>(view_.control->error).load(std::memory_order_acquire);
}

}  // namespace uccl::ep::queue
