// Host-thread producer: the same protocol as the device producer (producer.cuh), with
// std::atomic_ref in place of PTX loads, stores and fences.
#include "queue/host_producer.h"

#include <atomic>
#include <thread>

#include "common/error.h"

namespace uccl::ep::queue {
namespace {

using protocol::Command;

#if defined(__SANITIZE_THREAD__)
constexpr bool kThreadSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool kThreadSanitizer = true;
#else
constexpr bool kThreadSanitizer = false;
#endif
#else
constexpr bool kThreadSanitizer = false;
#endif

// Spins, then yields: host producers share few cores with their consumers in tests.
class Backoff {
 public:
  void pause() {
    if (++spins_ > 64) std::this_thread::yield();
  }

 private:
  uint32_t spins_ = 0;
};

}  // namespace

HostProducer::HostProducer(const QueueDeviceHandle& queue, std::chrono::nanoseconds timeout)
    : queue_(queue), timeout_(timeout) {
  UCCL_EP_CHECK_VALUE(
      queue.slots != nullptr && queue.control != nullptr && queue.producer != nullptr, "queue ",
      queue.index, ": host producer needs slots, control and producer");
  UCCL_EP_CHECK_VALUE(queue.capacity != 0 && (queue.capacity & (queue.capacity - 1)) == 0, "queue ",
                      queue.index, ": capacity=", queue.capacity, " must be a power of two");
}

uint64_t HostProducer::push(const Command& command) {
  return push_batch(&command, 1);
}

uint64_t HostProducer::push_batch(const Command* commands, uint32_t n) {
  UCCL_EP_CHECK_VALUE(n >= 1 && n <= queue_.capacity, "queue ", queue_.index, ": a batch of ", n,
                      " commands must hold 1 to capacity=", queue_.capacity, " commands");
  for (uint32_t i = 0; i < n; ++i)
    UCCL_EP_CHECK_VALUE(commands[i].word0 != 0, "queue ", queue_.index, ": command ", i,
                        " of the batch is empty (word0 == 0; opcode kEmpty marks a free slot)");
  // Rule 1: one atomic add reserves n consecutive tickets.
  const uint64_t first =
      std::atomic_ref<uint64_t>(queue_.producer->ticket).fetch_add(n, std::memory_order_relaxed);
  // Rule 2: wait for room; the cached tail is acquired (it carries the consumer's release).
  const uint64_t cached =
      std::atomic_ref<uint64_t>(queue_.producer->cached_tail).load(std::memory_order_acquire);
  if (first + n > cached + queue_.capacity) wait_for_space(first, n);
  // Rule 3, host form: every word1, one fence, every word0 (no portable 16-byte store; the
  // consumer takes a slot only when both halves changed, so this order is one it accepts).
  const uint32_t mask = queue_.capacity - 1;
  for (uint32_t i = 0; i < n; ++i) queue_.slots[(first + i) & mask].word1 = commands[i].word1;
  if constexpr (!kThreadSanitizer) std::atomic_thread_fence(std::memory_order_seq_cst);
  // ThreadSanitizer does not model standalone fences, so under it each word0 store is a release
  // store instead: per slot it orders the same writes, and TSan then checks the protocol.
  constexpr auto word0_order =
      kThreadSanitizer ? std::memory_order_release : std::memory_order_relaxed;
  for (uint32_t i = 0; i < n; ++i)
    std::atomic_ref<uint64_t>(queue_.slots[(first + i) & mask].word0)
        .store(commands[i].word0, word0_order);
  return first;
}

void HostProducer::wait_for_space(uint64_t first, uint32_t n) {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  std::atomic_ref<uint64_t> tail(queue_.control->tail);
  std::atomic_ref<uint32_t> error(queue_.control->error);
  Backoff backoff;
  for (uint64_t iter = 0;; ++iter) {
    const uint64_t seen = tail.load(std::memory_order_acquire);
    if (first + n <= seen + queue_.capacity) {
      // Publish what we saw for later pushes (monotonic max, release: rule 2's chain).
      std::atomic_ref<uint64_t> cached(queue_.producer->cached_tail);
      uint64_t old = cached.load(std::memory_order_relaxed);
      while (old < seen && !cached.compare_exchange_weak(old, seen, std::memory_order_release,
                                                         std::memory_order_relaxed)) {
      }
      return;
    }
    if (const uint32_t code = error.load(std::memory_order_acquire); code != 0)
      throw_queue_error(code, "waiting for room in the queue");
    if ((iter & 63) == 63 && std::chrono::steady_clock::now() > deadline)
      throw_error(
          ErrorKind::kTimeout,
          str_cat("uccl-ep: command queue ", queue_.index, " stayed full for ",
                  timeout_.count() / 1000000, " ms: push of ", n, " command(s) at ticket ", first,
                  " needs tail >= ", first + n - queue_.capacity, ", tail ", seen, ", capacity ",
                  queue_.capacity, " (is the consumer of this queue running?)"));
    backoff.pause();
  }
}

void HostProducer::wait_fence(uint64_t sequence) {
  wait_done(&queue_.control->fence_done, sequence, "fence_done");
}

void HostProducer::wait_barrier(uint64_t sequence) {
  wait_done(&queue_.control->barrier_done, sequence, "barrier_done");
}

void HostProducer::wait_done(uint64_t* word, uint64_t sequence, const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  std::atomic_ref<uint64_t> done(*word);
  std::atomic_ref<uint32_t> error(queue_.control->error);
  Backoff backoff;
  for (uint64_t iter = 0;; ++iter) {
    const uint64_t seen = done.load(std::memory_order_acquire);
    if (seen >= sequence) return;
    if (const uint32_t code = error.load(std::memory_order_acquire); code != 0)
      throw_queue_error(code, str_cat("waiting for ", what, " >= ", sequence).c_str());
    if ((iter & 63) == 63 && std::chrono::steady_clock::now() > deadline)
      throw_error(ErrorKind::kTimeout,
                  str_cat("uccl-ep: command queue ", queue_.index, ": timed out after ",
                          timeout_.count() / 1000000, " ms waiting for ", what, " >= ", sequence,
                          ", ", what, " ", seen));
    backoff.pause();
  }
}

void HostProducer::throw_queue_error(uint32_t code, const char* while_doing) const {
  throw_error(ErrorKind::kRuntime,
              str_cat("uccl-ep: command queue ", queue_.index, ": its proxy reported error ", code,
                      " while ", while_doing));
}

}  // namespace uccl::ep::queue
