// Device producer of GPU->CPU command queues: reserve slots with one atomic add, wait (with a
// deadline) only while the queue is full, publish each command with one 16-byte store after one
// system-scope fence per batch.
//
// Ordering rules (queue_layout.h; docs/command_path.md has the full argument):
//  R1 Reserve: `first = atomicAdd(&producer->ticket, n)` gives n consecutive tickets; any lane
//     of any warp may push, and tickets order the commands of a queue. Ticket t uses slot
//     `t & (capacity - 1)`.
//  R2 Room: ticket t may be written once `t < tail + capacity` (the consumer released slot
//     t - capacity). The producer compares with `producer->cached_tail` (device memory, acquire
//     at gpu scope) and reads `control->tail` over PCIe (acquire, system scope) only when the
//     queue looks full; it then raises cached_tail (atomic max, release at gpu scope). The
//     consumer freed the slots before it released the tail, so the acquire chain
//     consumer -> tail -> cached_tail -> this producer orders our writes after its clears.
//     The wait has the deadline of timed_wait and stops when the queue's error word is set.
//  R3 Publish: one `fence.acq_rel.sys`, then each command as one 16-byte relaxed store. The fence
//     releases everything the pushing thread wrote or observed before (the data a WRITE names); it
//     is the main cost of a push, so a batch pays it once (docs/command_path.md, "Measurements
//     behind the code's choices"). PTX does not promise that a 16-byte store becomes visible as one
//     piece, so a free slot holds word0 == 0 and word1 == kEmptyWord1 and the consumer takes a slot
//     only when both halves have changed (no valid command has either free value).
//  R4 Completion: FENCE / BARRIER commands complete when the proxy stores fence_done /
//     barrier_done (release); wait_fence / wait_barrier load them with acquire (system scope).
//
// A producer that reserved tickets but could not write them (deadline or proxy error) leaves
// a hole the consumer never passes: the queue is dead, as is the rank (the error is recorded).
#pragma once

#include <cstdint>
#include <cstdio>

#include "device/diag.h"
#include "device/ptx.cuh"
#include "device/timed_wait.cuh"
#include "protocol/command.h"
#include "queue/queue_layout.h"

namespace uccl::ep::queue {

namespace detail {

using device::lane_id;
using device::lanemask_lt;
using device::red_max_release_gpu;

/// R1: reserves `n` consecutive tickets; returns the first.
__device__ __forceinline__ uint64_t reserve_tickets(const QueueDeviceHandle& q, uint32_t n) {
  return atomicAdd(reinterpret_cast<unsigned long long*>(&q.producer->ticket),
                   static_cast<unsigned long long>(n));
}

/// R2 fast path: room according to the cached tail (a lower bound of the real tail).
__device__ __forceinline__ bool has_cached_room(const QueueDeviceHandle& q, uint64_t first,
                                                uint32_t n) {
  return first + n <= device::ld_acquire_gpu(&q.producer->cached_tail) + q.capacity;
}

/// Records that the proxy of queue `q` failed with `error` (the proxy's own message is what the
/// host reports first) and so stops every other wait of this rank.
__device__ __forceinline__ void raise_abort(const device::DeviceDiag& d, const QueueDeviceHandle& q,
                                            uint32_t error) {
  device::report_error(d, protocol::WaitSite::kProxyError, -1, -1, static_cast<int>(q.index), -1,
                       -1, 0, error, 0);
}

/// A batch that can never fit: reported at once (a programming error, not a wait).
static __device__ __noinline__ bool report_bad_batch(QueueDeviceHandle q, uint32_t n,
                                                     uint32_t max_batch, device::DeviceDiag d) {
  printf(
      "[uccl-ep] rank %d: push of %u commands into command queue %u exceeds its capacity %u "
      "or the batch limit %u\n",
      d.rank, n, q.index, q.capacity, max_batch);
  device::report_timeout(d, protocol::WaitSite::kQueueFull, -1, static_cast<int>(q.index), n,
                         q.capacity, 0);
  return false;
}

/// R2 slow path: re-reads the consumer's tail until tickets [first, first + n) have room; the
/// tail it saw goes into cached_tail (and `*seen_tail` when given).
static __device__ __noinline__ bool wait_for_room(QueueDeviceHandle q, uint64_t first, uint32_t n,
                                                  device::DeviceDiag d,
                                                  uint64_t* seen_tail = nullptr) {
  const uint64_t start = device::global_timer_ns();
  uint64_t tail = 0;
  uint32_t error = 0;
  const int64_t needed = static_cast<int64_t>(first + n - q.capacity);
  const bool stopped =
      device::timed_wait(d, protocol::WaitSite::kQueueFull, -1, static_cast<int>(q.index), needed,
                         [&](int64_t& observed) {
                           tail = device::ld_acquire_sys(&q.control->tail);
                           observed = static_cast<int64_t>(tail);
                           if (first + n <= tail + q.capacity) return true;
                           error = device::ld_acquire_sys(&q.control->error);
                           return error != 0;
                         });
  if (stopped && error == 0) {
    red_max_release_gpu(&q.producer->cached_tail, tail);
    if (seen_tail != nullptr) *seen_tail = tail;
    return true;
  }
  if (error != 0) {
    raise_abort(d, q, error);
    printf(
        "[uccl-ep] rank %d: command queue %u: its proxy reported error %u; push at ticket %llu "
        "stopped\n",
        d.rank, q.index, error, static_cast<unsigned long long>(first));
  } else if (device::global_timer_ns() - start > d.timeout_ns) {
    printf(
        "[uccl-ep] rank %d: command queue %u stayed full: push of %u command(s) at ticket %llu "
        "needs tail >= %lld, tail %llu, capacity %u (is its CPU proxy running?)\n",
        d.rank, q.index, n, static_cast<unsigned long long>(first), static_cast<long long>(needed),
        static_cast<unsigned long long>(tail), q.capacity);
  }
  return false;
}

/// R2: true once tickets [first, first + n) may be written.
__device__ __forceinline__ bool wait_room(const QueueDeviceHandle& q, uint64_t first, uint32_t n,
                                          const device::DeviceDiag& d) {
  return has_cached_room(q, first, n) || wait_for_room(q, first, n, d);
}

/// R4: waits until `*word >= sequence`, stopping on the queue's error word.
static __device__ __noinline__ bool wait_done_slow(QueueDeviceHandle q, const uint64_t* word,
                                                   uint64_t sequence, protocol::WaitSite site,
                                                   device::DeviceDiag d) {
  uint32_t error = 0;
  const bool stopped = device::timed_wait(d, site, -1, static_cast<int>(q.index),
                                          static_cast<int64_t>(sequence), [&](int64_t& observed) {
                                            const uint64_t done = device::ld_acquire_sys(word);
                                            observed = static_cast<int64_t>(done);
                                            if (done >= sequence) return true;
                                            error = device::ld_acquire_sys(&q.control->error);
                                            return error != 0;
                                          });
  if (stopped && error == 0) return true;
  if (error != 0) {
    raise_abort(d, q, error);
    printf(
        "[uccl-ep] rank %d: command queue %u: its proxy reported error %u while a kernel "
        "waited for sequence %llu\n",
        d.rank, q.index, error, static_cast<unsigned long long>(sequence));
  }
  return false;
}

}  // namespace detail

/// R3 for one slot (after the fence): one 16-byte store.
__device__ __forceinline__ void store_slot(protocol::Command& slot,
                                           const protocol::Command& command) {
  device::st_relaxed_sys_v2(&slot.word0, command.word0, command.word1);
}

/// Reads back word0 of a slot this lane just wrote (the value is not used). A read of the same
/// address completes only after the write reached host memory, so the lane's next fence finds no
/// write of its own left to flush over PCIe: the fence saves more time than the read costs
/// (docs/command_path.md, "Measurements behind the code's choices"). A read of another host word
/// (e.g. the tail) does not drain reliably. Only LaneProducer uses it: push / push_batch /
/// push_warp serve many producers, whose throughput would pay one PCIe read per command.
/// The load is volatile: ptxas deletes a relaxed load whose value is unused.
__device__ __forceinline__ void drain_slot(const protocol::Command& slot) {
  uint64_t unused;
  asm volatile("ld.volatile.global.u64 %0, [%1];" : "=l"(unused) : "l"(&slot.word0) : "memory");
  asm volatile("" ::"l"(unused));
}

/// R3 for one lane: writes `n` (<= kMaxBatch) commands into the reserved tickets
/// [first, first + n): one system-scope fence, then one 16-byte store per command. `commands`
/// stays in registers when `n` and the indexing unroll.
template <uint32_t kMaxBatch>
__device__ __forceinline__ void write_slots(const QueueDeviceHandle& q, uint64_t first,
                                            const protocol::Command (&commands)[kMaxBatch],
                                            uint32_t n) {
  const uint32_t mask = q.capacity - 1;
  device::fence_acq_rel_sys();
#pragma unroll
  for (uint32_t i = 0; i < kMaxBatch; ++i)
    if (i < n) store_slot(q.slots[(first + i) & mask], commands[i]);
}

/// Pushes `n` commands (n <= kMaxBatch and n <= capacity; 0 is a no-op) from the calling lane
/// as one batch: one atomic add, one fence; the commands get consecutive tickets, the first in
/// `*first_ticket` when given. Every command must be valid (made by a protocol::encode_*
/// function from values the host checked: word0 != 0, word1 != kEmptyWord1). The push
/// releases every earlier write of the calling thread (and what it observed, e.g. after a
/// __syncwarp or __syncthreads): data a WRITE names may be written just before. Blocks while the
/// queue is full. Returns false when the wait stopped (deadline: recorded in the diag; proxy error;
/// another wait of the rank timed out): the caller must stop pushing and let the kernel finish.
template <uint32_t kMaxBatch>
__device__ __forceinline__ bool push_batch(const QueueDeviceHandle& q,
                                           const protocol::Command (&commands)[kMaxBatch],
                                           uint32_t n, const device::DeviceDiag& diag,
                                           uint64_t* first_ticket = nullptr) {
  if (n == 0) return true;
  if (n > kMaxBatch || n > q.capacity) return detail::report_bad_batch(q, n, kMaxBatch, diag);
  const uint64_t first = detail::reserve_tickets(q, n);
  if (!detail::wait_room(q, first, n, diag)) return false;
  write_slots(q, first, commands, n);
  if (first_ticket != nullptr) *first_ticket = first;
  return true;
}

/// Pushes one command from the calling lane; see push_batch. No read-back (drain_slot): with
/// many lanes pushing, a PCIe read per command costs more throughput than it saves in fence
/// time (docs/command_path.md); latency-bound lanes use LaneProducer.
__device__ __forceinline__ bool push(const QueueDeviceHandle& q, const protocol::Command& command,
                                     const device::DeviceDiag& diag, uint64_t* ticket = nullptr) {
  const protocol::Command one[1] = {command};
  return push_batch<1>(q, one, 1, diag, ticket);
}

/// Warp-cooperative push: all 32 lanes of the warp call it together (converged); every lane
/// with `active` pushes its own `command`. Active lanes get consecutive tickets in lane order
/// (stored in `*ticket` on that lane when given) from one atomic add and one wait, done by the
/// first active lane; each lane then fences and writes its own slot (one warp instruction
/// each). Returns the same value on every lane (see push_batch).
__device__ __forceinline__ bool push_warp(const QueueDeviceHandle& q,
                                          const protocol::Command& command, bool active,
                                          const device::DeviceDiag& diag,
                                          uint64_t* ticket = nullptr) {
  constexpr uint32_t kFullMask = 0xffffffffu;
  const uint32_t active_mask = __ballot_sync(kFullMask, active);
  if (active_mask == 0) return true;
  const uint32_t n = __popc(active_mask);
  const int leader = __ffs(active_mask) - 1;
  uint64_t first = 0;
  int ok = 1;
  if (detail::lane_id() == static_cast<uint32_t>(leader)) {
    if (n > q.capacity) {
      ok = detail::report_bad_batch(q, n, 32, diag);
    } else {
      first = detail::reserve_tickets(q, n);
      ok = detail::wait_room(q, first, n, diag);
    }
  }
  first = __shfl_sync(kFullMask, first, leader);
  ok = __shfl_sync(kFullMask, ok, leader);
  // Orders the leader's acquire of the tail (R2) before every lane's slot writes.
  __syncwarp(kFullMask);
  if (!ok) return false;
  if (active) {
    const uint64_t mine = first + __popc(active_mask & detail::lanemask_lt());
    device::fence_acq_rel_sys();
    store_slot(q.slots[mine & (q.capacity - 1)], command);
    if (ticket != nullptr) *ticket = mine;
  }
  return true;
}

/// A queue owned by one lane: the latency-critical way to push. The ticket and the cached tail live
/// in registers, so a push is one room check against a register, the R3 fence, one 16-byte store
/// and its read-back (drain_slot): no atomic (the ticket atomic costs about as much as the fence;
/// docs/command_path.md). While a LaneProducer of a queue is live, no other producer (lane, warp or
/// host) may push to that queue; finish() hands the queue back (later kernels and producers
/// continue after its tickets). Rules R2-R4 are unchanged; R1 is this lane's counter.
class LaneProducer {
 public:
  /// Not bound to a queue (assign a bound one before pushing), e.g. for arrays.
  LaneProducer() = default;
  /// Takes the queue over: reads its ticket and cached tail (device memory, once).
  __device__ explicit LaneProducer(const QueueDeviceHandle& q)
      : q_(q),
        ticket_(device::ld_acquire_gpu(&q.producer->ticket)),
        cached_tail_(device::ld_acquire_gpu(&q.producer->cached_tail)) {}

  /// Pushes one valid command (see push_batch), releasing the calling lane's earlier writes.
  /// Blocks while the queue is full; returns false when that wait stopped (deadline, proxy
  /// error, another wait of the rank timed out): stop pushing and let the kernel finish (the
  /// queue is dead). The command's ticket goes to `*ticket` when given.
  __device__ bool push(const protocol::Command& command, const device::DeviceDiag& diag,
                       uint64_t* ticket = nullptr) {
    if (ticket_ + 1 > cached_tail_ + q_.capacity &&
        !detail::wait_for_room(q_, ticket_, 1, diag, &cached_tail_))
      return false;
    protocol::Command& slot = q_.slots[ticket_ & (q_.capacity - 1)];
    device::fence_acq_rel_sys();
    store_slot(slot, command);
    drain_slot(slot);
    if (ticket != nullptr) *ticket = ticket_;
    ++ticket_;
    return true;
  }

  /// Hands the queue back: stores the next ticket, so a later LaneProducer or push continues
  /// after this lane's commands. Call once, after the last push (also after a failed push).
  __device__ void finish() { q_.producer->ticket = ticket_; }

  /// The next ticket this lane will use.
  __device__ uint64_t next_ticket() const { return ticket_; }

 private:
  QueueDeviceHandle q_{};
  uint64_t ticket_ = 0, cached_tail_ = 0;
};

/// Waits until the proxy has completed every FENCE of this queue with sequence <= `sequence`
/// (QueueControl::fence_done >= sequence). One lane calls it. Returns false on deadline
/// (recorded in the diag), proxy error (error word set; the rank's other waits are stopped)
/// or when another wait of the rank timed out.
__device__ __forceinline__ bool wait_fence(const QueueDeviceHandle& q, uint64_t sequence,
                                           const device::DeviceDiag& diag) {
  if (device::ld_acquire_sys(&q.control->fence_done) >= sequence) return true;
  return detail::wait_done_slow(q, &q.control->fence_done, sequence,
                                protocol::WaitSite::kQueueFence, diag);
}

/// Same as wait_fence for BARRIER commands (QueueControl::barrier_done >= sequence).
__device__ __forceinline__ bool wait_barrier(const QueueDeviceHandle& q, uint64_t sequence,
                                             const device::DeviceDiag& diag) {
  if (device::ld_acquire_sys(&q.control->barrier_done) >= sequence) return true;
  return detail::wait_done_slow(q, &q.control->barrier_done, sequence,
                                protocol::WaitSite::kQueueBarrier, diag);
}

}  // namespace uccl::ep::queue
