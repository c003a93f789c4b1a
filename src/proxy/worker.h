// One proxy thread: owns a fixed set of queues and one transport, drains the queues in
// batches, executes the commands through the transport and tracks their completions.
//
// Rules (docs/command_path.md, "The proxy"):
//  - Order: the commands of a queue are taken in ticket order; a command that cannot run yet
//    (flow control, FENCE, ordering) blocks the rest of its queue, never other queues.
//  - WRITE: one post_write. WRITE_SIGNAL: one post_write with the fused signal when the value
//    fits capabilities().max_fused_signal_value, else the write, then (once it completed) an
//    atomic add of the value; the queue waits for that atomic.
//  - ATOMIC_ADD: posted at once when the transport delivers in order (ordered_delivery), else
//    only once no earlier WRITE of its queue is in flight (their completions mean delivered).
//  - FENCE: completes (fence_done published) once nothing of its queue is in flight.
//  - BARRIER: waits like a FENCE, adds 1 to the group's barrier slot on every peer, waits until
//    this rank's own slot counts (num_ranks - 1) x sequence arrivals, then until every thread
//    of the proxy polled its transport once more (what peers completed before arriving is
//    then applied here on every plane), and publishes barrier_done.
//  - Flow control: at most max_inflight_per_queue() operations per queue and the thread's share
//    of max_inflight_bytes in flight (one write may always go); beyond, the queue is simply not
//    drained and its producers wait on the full queue.
//  - Errors: nothing throws out of run(); the first error is recorded with its context and the
//    error word of every queue of the proxy is set.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "protocol/command.h"
#include "proxy/error_state.h"
#include "proxy/proxy_options.h"
#include "queue/consumer.h"
#include "transport/transport.h"

namespace uccl::ep::proxy {

/// What the owner asks of the threads.
enum class RunMode : int { kRun = 0, kDrain = 1, kAbandon = 2 };

/// Per-thread progress the other threads of a proxy can see (own cache line).
struct alignas(64) ThreadProgress {
  std::atomic<uint64_t> polls{0};   // transport poll() calls completed
  std::atomic<bool> exited{false};  // the thread left its loop
};

/// State shared by the threads of one proxy and its owner.
struct SharedControl {
  std::atomic<int> mode{static_cast<int>(RunMode::kRun)};
  std::atomic<bool> paused{false};
  ErrorState error;
  std::vector<queue::QueueHostView> queues;  // every queue of the proxy (set before start)
  /// [num_threads]: a BARRIER completes only after every thread polled its transport once
  /// more (so what peers fenced before arriving is applied here on every plane).
  std::unique_ptr<ThreadProgress[]> progress;
  int num_threads = 0;

  /// Records the first error and, if it is the first, sets the error word of every queue at
  /// once (so every producer of this GPU stops, not only those of the failing thread).
  bool fail(ProxyErrorCode code, std::string message);
  /// Sets the error word of every queue (first code wins).
  void set_queue_errors(uint32_t code) const;
};

/// Counters of one thread (snapshots; updated by the thread as it works).
struct ThreadStats {
  uint64_t commands = 0;       // commands taken from the queues
  uint64_t posted = 0;         // transport operations posted
  uint64_t completed = 0;      // transport completions
  uint64_t bytes = 0;          // bytes of writes posted
  uint64_t fences = 0;         // FENCE completed
  uint64_t barriers = 0;       // BARRIER completed
  uint64_t split_signals = 0;  // WRITE_SIGNAL sent as write + atomic
  uint64_t flow_stalls = 0;    // visits that found a queue at an in-flight limit
  uint64_t retries = 0;        // kRetry answers of the transport
  uint64_t inflight = 0;       // operations in flight now
  uint64_t pending = 0;        // when the thread ended: commands left in its queues
};

/// How a thread ended.
struct ThreadExit {
  bool drained = false;  // stop(kDrain) found its queues empty and nothing in flight
  uint64_t pending_commands = 0, inflight_ops = 0;
};

class Worker {
 public:
  /// `queues` are the queues with thread_of_queue(index) == thread, in index order; queue i of
  /// them uses pipe i % transport::kMaxPipes. `transport` is connected (with that many
  /// pipes and room for queues.size() x max_inflight_per_queue() operations) and used by
  /// this thread only.
  Worker(int thread, const ProxyOptions& options, const std::vector<queue::QueueHostView>& queues,
         std::unique_ptr<transport::Transport> transport, SharedControl& control);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  /// The thread body: runs until stop or failure; never throws. `cpu` >= 0: pin first.
  void run(int cpu) noexcept;
  /// True once run() returned.
  bool exited() const { return exited_.load(std::memory_order_acquire); }
  /// True while the thread honours SharedControl::paused (it drains nothing until resumed).
  bool paused() const { return paused_ack_.load(std::memory_order_acquire); }
  ThreadStats stats() const;
  /// Valid after exited().
  const ThreadExit& exit_state() const { return exit_; }

 private:
  struct Op;
  struct Queue;
  enum class Step { kDone, kDoneStop, kBlocked };
  enum class Wait : uint8_t;

  void loop();
  int poll();
  void complete(const transport::Completion& c);
  bool service(Queue& q);
  Step execute(Queue& q, const protocol::CommandFields& f, uint64_t ticket);
  Step post_write(Queue& q, const protocol::CommandFields& f, uint64_t ticket,
                  const transport::Signal* signal);
  /// `after_writes`: wait for the queue's writes to complete even on ordered transports.
  Step post_atomic(Queue& q, int peer, uint32_t slot, int64_t value, uint64_t ticket,
                   protocol::Opcode opcode, bool after_writes = false);
  Step fence(Queue& q, const protocol::CommandFields& f, uint64_t ticket);
  Step start_barrier(Queue& q, const protocol::CommandFields& f, uint64_t ticket);
  bool advance_barrier(Queue& q);
  bool planes_polled_since(const Queue& q) const;
  bool post_deferred(Queue& q);
  Step block(Queue& q, Wait wait, uint64_t ticket, int opcode, int peer);
  bool check_peer(Queue& q, const protocol::CommandFields& f, uint64_t ticket);
  void check_deadlines();
  const Op* oldest_op(const Queue& q) const;
  bool quiescent();
  void publish_stats();

  uint32_t alloc_op();
  void free_op(uint32_t index);
  uint64_t op_id(uint32_t index) const;

  void fail(ProxyErrorCode code, const Queue* q, int64_t ticket, int opcode, int peer,
            const std::string& what);
  std::string describe_wait(const Queue& q) const;
  std::string counters(const Queue& q) const;

  const int thread_;
  const ProxyOptions options_;
  SharedControl& control_;
  std::unique_ptr<transport::Transport> transport_;
  transport::Capabilities caps_;
  uint32_t limit_ = 0;        // operations in flight per queue
  uint64_t byte_budget_ = 0;  // bytes in flight for this thread
  int64_t timeout_ns_ = 0;

  std::vector<Queue> queues_;
  std::vector<Op> ops_;                   // preallocated operation records
  std::vector<uint32_t> free_ops_;        // stack of free record indices (capacity reserved)
  std::vector<protocol::Command> batch_;  // peek buffer
  std::vector<transport::Completion> completions_;
  uint64_t bytes_inflight_ = 0;
  int64_t now_ = 0;  // steady clock (ns) of the current iteration
  int64_t drain_deadline_ = 0;
  uint64_t polls_ = 0;      // transport poll() calls (published in control_.progress[thread_])
  size_t first_queue_ = 0;  // where the next iteration starts servicing
  bool failed_ = false;

  ThreadStats local_;                      // owned by the thread
  std::atomic<uint64_t> shared_[11] = {};  // published copy of local_ (see stats())
  std::atomic<bool> exited_{false};
  std::atomic<bool> paused_ack_{false};
  ThreadExit exit_;
};

}  // namespace uccl::ep::proxy
