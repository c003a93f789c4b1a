// One proxy thread: the loop, queue draining, command execution and completion accounting.
#include "proxy/worker.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "common/error.h"
#include "common/log.h"
#include "proxy/cpu_affinity.h"
#include "proxy/worker_state.h"

namespace uccl::ep::proxy {

using protocol::Opcode;
using worker_detail::cpu_relax;
using worker_detail::kDeadlineCheckMask;
using worker_detail::kIdMagic;
using worker_detail::kPollBatch;
using worker_detail::kPollRounds;
using worker_detail::steady_ns;

Worker::Worker(int thread, const ProxyOptions& options,
               const std::vector<queue::QueueHostView>& queues,
               std::unique_ptr<transport::Transport> transport, SharedControl& control)
    : thread_(thread), options_(options), control_(control), transport_(std::move(transport)) {
  UCCL_EP_CHECK_VALUE(transport_ != nullptr, "proxy thread ", thread, ": no transport");
  caps_ = transport_->capabilities();
  limit_ = static_cast<uint32_t>(options.max_inflight_per_queue());
  byte_budget_ = options.max_inflight_bytes == UINT64_MAX
                     ? UINT64_MAX
                     : std::max<uint64_t>(1, options.max_inflight_bytes /
                                                 static_cast<uint64_t>(options.num_threads));
  timeout_ns_ = static_cast<int64_t>(options.timeout_secs * 1e9);
  // One pipe per queue (the proxy creates the transport with this many pipes).
  const int pipes = static_cast<int>(
      std::clamp<size_t>(queues.size(), 1, static_cast<size_t>(transport::kMaxPipes)));
  queues_.reserve(queues.size());
  for (const queue::QueueHostView& view : queues) {
    UCCL_EP_CHECK_VALUE(thread_of_queue(view.index, options.num_threads) == thread, "queue ",
                        view.index, " does not belong to proxy thread ", thread);
    Queue q;
    q.consumer = queue::Consumer(view);
    q.index = view.index;
    q.pipe = pipe_of_queue(view.index, options.num_threads, pipes);
    q.fence_done = q.consumer.fence_done();
    q.barrier_polls.assign(static_cast<size_t>(options.num_threads), 0);
    q.barrier_done = q.consumer.barrier_done();
    queues_.push_back(std::move(q));
  }
  const size_t num_ops = std::max<size_t>(1, queues.size() * limit_);
  ops_.resize(num_ops);
  free_ops_.reserve(num_ops);
  for (size_t i = num_ops; i-- > 0;) free_ops_.push_back(static_cast<uint32_t>(i));
  batch_.resize(options.batch);
  completions_.resize(kPollBatch);
}

Worker::~Worker() = default;

uint64_t Worker::op_id(uint32_t index) const {
  return kIdMagic | (static_cast<uint64_t>(thread_) << 32) | index;
}

uint32_t Worker::alloc_op() {
  const uint32_t index = free_ops_.back();
  free_ops_.pop_back();
  ops_[index].in_use = true;
  return index;
}

void Worker::free_op(uint32_t index) {
  ops_[index].in_use = false;
  free_ops_.push_back(index);  // capacity reserved: never allocates
}

// ---- The loop

void Worker::run(int cpu) noexcept {
  try {
    if (cpu >= 0) {
      std::string why;
      if (!pin_current_thread(cpu, &why))
        log_message(LogLevel::kWarn, str_cat("proxy thread ", thread_, ": cannot pin to CPU ", cpu,
                                             ": ", why, " (running unpinned)"));
    }
    loop();
  } catch (const std::exception& e) {
    fail(ProxyErrorCode::kInternal, nullptr, -1, -1, -1, e.what());
  } catch (...) {
    fail(ProxyErrorCode::kInternal, nullptr, -1, -1, -1, "unknown exception");
  }
  try {
    // What is left (ready commands counted up to one batch per queue: "at least").
    exit_.inflight_ops = 0;
    for (Queue& q : queues_) {
      exit_.inflight_ops += q.inflight;
      exit_.pending_commands +=
          static_cast<uint64_t>(q.consumer.peek(batch_.data(), static_cast<int>(batch_.size()))) +
          (q.deferred ? 1 : 0) + (q.barrier ? 1 : 0);
    }
    local_.pending = exit_.pending_commands;
    publish_stats();
  } catch (...) {
  }
  control_.progress[thread_].exited.store(true, std::memory_order_release);
  exited_.store(true, std::memory_order_release);
}

void Worker::loop() {
  uint64_t iter = 0;
  uint32_t idle = 0;
  for (;;) {
    now_ = steady_ns();
    const auto mode = static_cast<RunMode>(control_.mode.load(std::memory_order_acquire));
    if (mode == RunMode::kAbandon || failed_ || control_.error.failed()) return;
    bool busy = poll() > 0;
    const bool paused = control_.paused.load(std::memory_order_acquire);
    paused_ack_.store(paused, std::memory_order_release);
    if (!paused) {
      // Start at a different queue each iteration: no queue always comes last when the
      // thread's byte budget or the transport frees up (fairness).
      const size_t n = queues_.size();
      for (size_t k = 0, i = first_queue_; k < n; ++k, i = i + 1 == n ? 0 : i + 1) {
        busy = service(queues_[i]) || busy;
        if (failed_) return;
      }
      first_queue_ = first_queue_ + 1 == n ? 0 : first_queue_ + 1;
    }
    if ((++iter & kDeadlineCheckMask) == 0) check_deadlines();
    if (mode == RunMode::kDrain) {
      if (drain_deadline_ == 0) drain_deadline_ = now_ + timeout_ns_;
      if (!busy && quiescent()) {
        exit_.drained = true;
        return;
      }
      if (now_ > drain_deadline_) return;  // abandoned: stop() reports what is left
    }
    if (busy) {
      publish_stats();
      idle = 0;
    } else if (++idle > options_.idle_spins_before_yield) {
      std::this_thread::yield();
    } else {
      cpu_relax();
    }
  }
}

bool Worker::quiescent() {
  for (Queue& q : queues_)
    if (q.inflight > 0 || q.deferred || q.barrier || q.consumer.peek(batch_.data(), 1) > 0)
      return false;
  return true;
}

// ---- Completions

int Worker::poll() {
  int total = 0;
  for (int round = 0; round < kPollRounds; ++round) {
    int n = 0;
    try {
      n = transport_->poll(completions_.data(), kPollBatch);
    } catch (const std::exception& e) {
      fail(ProxyErrorCode::kTransport, nullptr, -1, -1, -1,
           str_cat(caps_.name, " poll() failed: ", e.what()));
      return total;
    }
    for (int i = 0; i < n && !failed_; ++i) complete(completions_[i]);
    total += n;
    if (n < kPollBatch || failed_) break;
  }
  control_.progress[thread_].polls.store(++polls_, std::memory_order_release);
  return total;
}

void Worker::complete(const transport::Completion& c) {
  const uint64_t index = c.id & 0xffffffffu;
  if ((c.id & ~0xffffffffull) != op_id(0) || index >= ops_.size() || !ops_[index].in_use) {
    fail(ProxyErrorCode::kInternal, nullptr, -1, -1, -1,
         str_cat(caps_.name, " returned a completion with unknown id ", c.id));
    return;
  }
  Op& op = ops_[index];
  Queue& q = queues_[op.queue];
  if (!c.ok) {
    fail(ProxyErrorCode::kTransport, &q, static_cast<int64_t>(op.ticket), op.opcode, op.peer,
         str_cat("operation failed: ", c.error));
    return;
  }
  --q.inflight;
  if (op.is_write) --q.inflight_writes;
  ++q.completed;
  q.progress_at = now_;
  bytes_inflight_ -= op.bytes;
  ++local_.completed;
  free_op(static_cast<uint32_t>(index));
}

// ---- Draining a queue

bool Worker::service(Queue& q) {
  bool did = false;
  if (q.deferred) {
    if (!post_deferred(q)) return false;
    did = true;
  }
  if (q.barrier) {
    if (!advance_barrier(q)) return did;
    did = true;
  }
  if (q.inflight >= limit_) {  // nothing can post; a FENCE could not complete either
    ++local_.flow_stalls;
    return did;
  }
  const int max = static_cast<int>(std::min<uint32_t>(options_.batch, limit_ - q.inflight));
  const int n = q.consumer.peek(batch_.data(), max);
  if (n == 0) return did;
  const uint64_t head = q.consumer.head();
  int done = 0;
  while (done < n) {
    const Step s = execute(q, protocol::decode(batch_[done]), head + static_cast<uint64_t>(done));
    if (s == Step::kBlocked) break;
    ++done;
    if (s == Step::kDoneStop) break;
    q.wait = Wait::kNone;
  }
  if (done > 0) {
    q.consumer.release(done);
    local_.commands += static_cast<uint64_t>(done);
  }
  return did || done > 0;
}

Worker::Step Worker::block(Queue& q, Wait wait, uint64_t ticket, int opcode, int peer) {
  if (q.wait != wait) {
    q.wait = wait;
    q.wait_since = now_;
  }
  q.wait_ticket = ticket;
  q.wait_opcode = opcode;
  q.wait_peer = peer;
  if (wait == Wait::kFlow || wait == Wait::kBytes) ++local_.flow_stalls;
  if (wait == Wait::kRetry) ++local_.retries;
  return Step::kBlocked;
}

bool Worker::check_peer(Queue& q, const protocol::CommandFields& f, uint64_t ticket) {
  if (f.peer < static_cast<uint32_t>(options_.num_ranks) &&
      f.peer != static_cast<uint32_t>(options_.rank))
    return true;
  fail(ProxyErrorCode::kBadCommand, &q, static_cast<int64_t>(ticket), static_cast<int>(f.opcode),
       static_cast<int>(f.peer),
       str_cat("peer ", f.peer,
               f.peer == static_cast<uint32_t>(options_.rank)
                   ? " is this rank (local moves bypass the proxy)"
                   : str_cat(" is out of range [0, ", options_.num_ranks, ")")));
  return false;
}

Worker::Step Worker::execute(Queue& q, const protocol::CommandFields& f, uint64_t ticket) {
  switch (f.opcode) {
    case Opcode::kWrite:
      return check_peer(q, f, ticket) ? post_write(q, f, ticket, nullptr) : Step::kBlocked;
    case Opcode::kWriteSignal: {
      if (!check_peer(q, f, ticket)) return Step::kBlocked;
      const int64_t max = caps_.max_fused_signal_value;
      if (f.value == 0) return post_write(q, f, ticket, nullptr);  // adding 0: a plain write
      if (f.value <= max && f.value >= -max - 1) {
        const transport::Signal signal{f.signal_slot, f.value};
        return post_write(q, f, ticket, &signal);
      }
      const Step s = post_write(q, f, ticket, nullptr);
      if (s == Step::kBlocked) return s;
      q.deferred = true;
      q.deferred_peer = static_cast<int32_t>(f.peer);
      q.deferred_slot = f.signal_slot;
      q.deferred_value = f.value;
      q.deferred_ticket = ticket;
      ++local_.split_signals;
      return Step::kDoneStop;
    }
    case Opcode::kAtomicAdd:
      return check_peer(q, f, ticket) ? post_atomic(q, static_cast<int>(f.peer), f.signal_slot,
                                                    f.value, ticket, Opcode::kAtomicAdd)
                                      : Step::kBlocked;
    case Opcode::kFence:
      return fence(q, f, ticket);
    case Opcode::kBarrier:
      return start_barrier(q, f, ticket);
    case Opcode::kEmpty:
      break;
  }
  fail(ProxyErrorCode::kBadCommand, &q, static_cast<int64_t>(ticket), static_cast<int>(f.opcode),
       -1, str_cat("unknown opcode ", static_cast<int>(f.opcode)));
  return Step::kBlocked;
}

// ---- Posting

Worker::Step Worker::post_write(Queue& q, const protocol::CommandFields& f, uint64_t ticket,
                                const transport::Signal* signal) {
  const int code = static_cast<int>(f.opcode), peer = static_cast<int>(f.peer);
  if (q.inflight >= limit_) return block(q, Wait::kFlow, ticket, code, peer);
  if (bytes_inflight_ > 0 && f.bytes > byte_budget_ - std::min(byte_budget_, bytes_inflight_))
    return block(q, Wait::kBytes, ticket, code, peer);
  const uint32_t index = alloc_op();
  Op& op = ops_[index];
  op.ticket = ticket;
  op.bytes = f.bytes;
  op.peer = static_cast<int32_t>(f.peer);
  op.queue = static_cast<uint32_t>(&q - queues_.data());
  op.opcode = static_cast<uint8_t>(f.opcode);
  op.is_write = true;
  transport::PostStatus status;
  try {
    status = transport_->post_write(q.pipe, op.peer, f.local_offset, f.remote_offset, f.bytes,
                                    signal, op_id(index));
  } catch (const Error& e) {
    free_op(index);
    fail(e.kind() == ErrorKind::kValue ? ProxyErrorCode::kBadCommand : ProxyErrorCode::kTransport,
         &q, static_cast<int64_t>(ticket), static_cast<int>(f.opcode), static_cast<int>(f.peer),
         e.what());
    return Step::kBlocked;
  }
  if (status == transport::PostStatus::kRetry) {
    free_op(index);
    return block(q, Wait::kRetry, ticket, code, peer);
  }
  if (q.inflight++ == 0) q.progress_at = now_;
  ++q.inflight_writes;
  ++q.posted;
  bytes_inflight_ += f.bytes;
  ++local_.posted;
  local_.bytes += f.bytes;
  return Step::kDone;
}

Worker::Step Worker::post_atomic(Queue& q, int peer, uint32_t slot, int64_t value, uint64_t ticket,
                                 Opcode opcode, bool after_writes) {
  const int code = static_cast<int>(opcode);
  if (q.inflight >= limit_) return block(q, Wait::kFlow, ticket, code, peer);
  if ((after_writes || !caps_.ordered_delivery) && q.inflight_writes > 0)
    return block(q, Wait::kAtomicOrder, ticket, code, peer);
  const uint32_t index = alloc_op();
  Op& op = ops_[index];
  op.ticket = ticket;
  op.bytes = 0;
  op.peer = peer;
  op.queue = static_cast<uint32_t>(&q - queues_.data());
  op.opcode = static_cast<uint8_t>(opcode);
  op.is_write = false;
  transport::PostStatus status;
  try {
    status = transport_->post_atomic_add(q.pipe, peer, slot, value, op_id(index));
  } catch (const Error& e) {
    free_op(index);
    fail(e.kind() == ErrorKind::kValue ? ProxyErrorCode::kBadCommand : ProxyErrorCode::kTransport,
         &q, static_cast<int64_t>(ticket), static_cast<int>(opcode), peer,
         str_cat("atomic add of ", value, " to slot ", slot, ": ", e.what()));
    return Step::kBlocked;
  }
  if (status == transport::PostStatus::kRetry) {
    free_op(index);
    return block(q, Wait::kRetry, ticket, code, peer);
  }
  if (q.inflight++ == 0) q.progress_at = now_;
  ++q.posted;
  ++local_.posted;
  return Step::kDone;
}

bool Worker::post_deferred(Queue& q) {
  // The split signal of a WRITE_SIGNAL: after its write completed, whatever the ordering.
  const Step s = post_atomic(q, q.deferred_peer, q.deferred_slot, q.deferred_value,
                             q.deferred_ticket, Opcode::kWriteSignal, /*after_writes=*/true);
  if (s == Step::kBlocked) return false;
  q.deferred = false;
  q.wait = Wait::kNone;
  return true;
}

}  // namespace uccl::ep::proxy
