// One proxy thread: FENCE and BARRIER, deadlines, errors and statistics.
#include <atomic>
#include <string>

#include "common/error.h"
#include "common/log.h"
#include "proxy/worker_state.h"

namespace uccl::ep::proxy {

using protocol::Opcode;
using worker_detail::opcode_name;
using worker_detail::secs;

// ---- Errors

std::string Worker::counters(const Queue& q) const {
  return str_cat("queue ", q.index, ": ", q.inflight, " operation(s) in flight (",
                 q.inflight_writes, " writes), posted ", q.posted, ", completed ", q.completed,
                 ", fence_done ", q.fence_done, ", barrier_done ", q.barrier_done,
                 "; thread: ", bytes_inflight_, " bytes in flight");
}

void Worker::fail(ProxyErrorCode code, const Queue* q, int64_t ticket, int opcode, int peer,
                  const std::string& what) {
  std::string where = str_cat("uccl-ep proxy: rank ", options_.rank, ", thread ", thread_);
  if (q != nullptr) where += str_cat(", queue ", q->index);
  if (ticket >= 0) where += str_cat(", ticket ", ticket);
  if (opcode >= 0) where += str_cat(", ", opcode_name(opcode));
  if (peer >= 0) where += str_cat(", peer ", peer);
  std::string msg = str_cat(where, ": ", error_code_name(static_cast<uint32_t>(code)), ": ", what);
  if (q != nullptr) msg += str_cat(" [", counters(*q), "]");
  if (control_.fail(code, msg)) log_message(LogLevel::kError, msg);
  failed_ = true;
}

bool SharedControl::fail(ProxyErrorCode code, std::string message) {
  if (!error.record(code, std::move(message))) return false;
  set_queue_errors(static_cast<uint32_t>(code));
  return true;
}

void SharedControl::set_queue_errors(uint32_t code) const {
  for (const queue::QueueHostView& view : queues) queue::Consumer(view).set_error(code);
}

// ---- FENCE and BARRIER

Worker::Step Worker::fence(Queue& q, const protocol::CommandFields& f, uint64_t ticket) {
  if (q.inflight > 0) return block(q, Wait::kFence, ticket, static_cast<int>(Opcode::kFence), -1);
  q.fence_done = queue::widen_sequence(q.fence_done, f.sequence);
  q.consumer.publish_fence_done(q.fence_done);
  ++local_.fences;
  return Step::kDone;
}

Worker::Step Worker::start_barrier(Queue& q, const protocol::CommandFields& f, uint64_t ticket) {
  const uint32_t group = f.signal_slot;
  if (group >= options_.num_barrier_groups) {
    fail(ProxyErrorCode::kBadCommand, &q, static_cast<int64_t>(ticket),
         static_cast<int>(Opcode::kBarrier), -1,
         options_.num_barrier_groups == 0
             ? std::string("BARRIER needs a signal region with reserved barrier slots")
             : str_cat("barrier group ", group, " out of range [0, ", options_.num_barrier_groups,
                       ")"));
    return Step::kBlocked;
  }
  if (q.inflight > 0)  // a BARRIER is also a FENCE
    return block(q, Wait::kFence, ticket, static_cast<int>(Opcode::kBarrier), -1);
  q.barrier = true;
  q.barrier_seq = queue::widen_sequence(q.barrier_done, f.sequence);
  q.barrier_ticket = ticket;
  q.barrier_slot = options_.barrier_slot + group;
  q.barrier_next_peer = 0;
  q.barrier_arrived = false;
  q.wait = Wait::kNone;
  return Step::kDoneStop;
}

bool Worker::advance_barrier(Queue& q) {
  for (; q.barrier_next_peer < options_.num_ranks; ++q.barrier_next_peer) {
    if (q.barrier_next_peer == options_.rank) continue;
    if (post_atomic(q, q.barrier_next_peer, q.barrier_slot, 1, q.barrier_ticket,
                    Opcode::kBarrier) == Step::kBlocked)
      return false;
  }
  if (!q.barrier_arrived) {
    const int64_t target = static_cast<int64_t>(q.barrier_seq) * (options_.num_ranks - 1);
    const int64_t seen =
        std::atomic_ref<int64_t>(options_.signals[q.barrier_slot]).load(std::memory_order_acquire);
    if (seen < target) {
      block(q, Wait::kBarrier, q.barrier_ticket, static_cast<int>(Opcode::kBarrier), -1);
      return false;
    }
    // Every peer arrived. What a peer completed (on any queue) before it sent its arrival was
    // handed to this rank's transports; each applies it in its next poll(). Wait until every
    // thread has polled its plane once more before the kernels hear of the barrier.
    q.barrier_arrived = true;
    for (int t = 0; t < control_.num_threads; ++t)
      q.barrier_polls[t] = control_.progress[t].polls.load(std::memory_order_acquire);
  }
  if (!planes_polled_since(q)) return false;
  q.barrier = false;
  q.barrier_done = q.barrier_seq;
  q.consumer.publish_barrier_done(q.barrier_done);
  q.wait = Wait::kNone;
  ++local_.barriers;
  return true;
}

bool Worker::planes_polled_since(const Queue& q) const {
  // +2: the poll running when the counts were read may have started before the arrivals.
  for (int t = 0; t < control_.num_threads; ++t) {
    const ThreadProgress& p = control_.progress[t];
    if (p.polls.load(std::memory_order_acquire) < q.barrier_polls[t] + 2 &&
        !p.exited.load(std::memory_order_acquire))
      return false;
  }
  return true;
}

// ---- Deadlines and statistics

std::string Worker::describe_wait(const Queue& q) const {
  switch (q.wait) {
    case Wait::kFlow:
      return str_cat("the in-flight limit of ", limit_, " operations per queue");
    case Wait::kBytes:
      return str_cat("the in-flight byte budget of ", byte_budget_, " bytes per thread");
    case Wait::kRetry:
      return str_cat(caps_.name, " to accept an operation (it kept answering retry)");
    case Wait::kFence:
      return str_cat("a FENCE/BARRIER: every earlier operation of the queue to complete");
    case Wait::kAtomicOrder:
      return "an atomic add: earlier writes of the queue to complete (unordered transport, or "
             "the atomic of a split WRITE_SIGNAL)";
    case Wait::kBarrier: {
      const int64_t seen = std::atomic_ref<int64_t>(options_.signals[q.barrier_slot])
                               .load(std::memory_order_acquire);
      return str_cat("BARRIER sequence ", q.barrier_seq, ": arrivals in slot ", q.barrier_slot,
                     " expected ", q.barrier_seq * static_cast<uint64_t>(options_.num_ranks - 1),
                     ", observed ", seen, " (", options_.num_ranks - 1, " peers per barrier)");
    }
    case Wait::kNone:
      break;
  }
  return "nothing";
}

const Worker::Op* Worker::oldest_op(const Queue& q) const {
  const Op* oldest = nullptr;
  for (const Op& op : ops_)
    if (op.in_use && &queues_[op.queue] == &q && (!oldest || op.ticket < oldest->ticket))
      oldest = &op;
  return oldest;
}

void Worker::check_deadlines() {
  const bool paused = control_.paused.load(std::memory_order_relaxed);
  for (Queue& q : queues_) {
    std::string what;
    if (q.inflight > 0 && now_ - q.progress_at > timeout_ns_) {
      what = str_cat(q.inflight, " operation(s) in flight without a completion for ",
                     secs(now_ - q.progress_at),
                     " s: a dropped operation or a peer that stopped "
                     "making progress");
    } else if (!paused && q.wait != Wait::kNone && now_ - q.wait_since > timeout_ns_) {
      what = str_cat("waited ", secs(now_ - q.wait_since), " s for ", describe_wait(q));
    } else {
      continue;
    }
    // Name the oldest operation in flight, else the command the queue's head waits with.
    if (const Op* op = oldest_op(q)) {
      fail(ProxyErrorCode::kTimeout, &q, static_cast<int64_t>(op->ticket), op->opcode, op->peer,
           str_cat(what, " (the oldest operation in flight is named above) (UCCL_EP_TIMEOUT_SECS=",
                   options_.timeout_secs, ")"));
    } else {
      const bool head = q.wait != Wait::kNone;
      fail(ProxyErrorCode::kTimeout, &q, head ? static_cast<int64_t>(q.wait_ticket) : -1,
           head ? q.wait_opcode : -1, head ? q.wait_peer : -1,
           str_cat(what, head ? " (the waiting command is named above)" : "",
                   " (UCCL_EP_TIMEOUT_SECS=", options_.timeout_secs, ")"));
    }
    return;
  }
}

void Worker::publish_stats() {
  uint64_t inflight = 0;
  for (const Queue& q : queues_) inflight += q.inflight;
  local_.inflight = inflight;
  const uint64_t v[11] = {local_.commands,      local_.posted,      local_.completed,
                          local_.bytes,         local_.fences,      local_.barriers,
                          local_.split_signals, local_.flow_stalls, local_.retries,
                          local_.inflight,      local_.pending};
  for (int i = 0; i < 11; ++i) shared_[i].store(v[i], std::memory_order_relaxed);
}

ThreadStats Worker::stats() const {
  uint64_t v[11];
  for (int i = 0; i < 11; ++i) v[i] = shared_[i].load(std::memory_order_relaxed);
  return ThreadStats{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10]};
}

}  // namespace uccl::ep::proxy
