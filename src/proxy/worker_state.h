// Internal state of a proxy thread shared by worker.cc and worker_sync.cc: the operation
// record, the per-queue accounting and what a blocked queue waits for.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "proxy/worker.h"

namespace uccl::ep::proxy {

namespace worker_detail {

constexpr int kPollBatch = 64;
constexpr int kPollRounds = 4;                  // poll again while a poll returned a full batch
constexpr uint64_t kDeadlineCheckMask = 127;    // check deadlines every 128 iterations
constexpr uint64_t kIdMagic = 0x5550ull << 48;  // "UP": ids of this proxy's operations

inline int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

inline const char* opcode_name(int op) {
  using protocol::Opcode;
  switch (static_cast<Opcode>(op)) {
    case Opcode::kEmpty:
      return "EMPTY";
    case Opcode::kWrite:
      return "WRITE";
    case Opcode::kWriteSignal:
      return "WRITE_SIGNAL";
    case Opcode::kAtomicAdd:
      return "ATOMIC_ADD";
    case Opcode::kFence:
      return "FENCE";
    case Opcode::kBarrier:
      return "BARRIER";
  }
  return "UNKNOWN";
}

inline double secs(int64_t ns) {
  return static_cast<double>(ns) * 1e-9;
}

}  // namespace worker_detail

/// One posted transport operation (preallocated; indexed by the low bits of its id).
struct Worker::Op {
  uint64_t ticket = 0;  // of the command it executes
  uint64_t bytes = 0;   // write bytes (flow control)
  int32_t peer = 0;
  uint32_t queue = 0;  // index into queues_
  uint8_t opcode = 0;
  bool is_write = false;
  bool in_use = false;
};

/// What the head of a queue waits for.
enum class Worker::Wait : uint8_t {
  kNone,
  kFlow,         // per-queue in-flight limit
  kBytes,        // in-flight bytes budget
  kRetry,        // the transport answered kRetry
  kFence,        // FENCE (or BARRIER) waiting for earlier operations
  kAtomicOrder,  // ATOMIC_ADD waiting for earlier writes (unordered transport)
  kBarrier,      // BARRIER waiting for the peers' arrivals
};

/// One owned queue and its accounting.
struct Worker::Queue {
  queue::Consumer consumer;
  uint32_t index = 0;  // global queue id
  int pipe = 0;
  uint32_t inflight = 0, inflight_writes = 0;
  uint64_t posted = 0, completed = 0;
  uint64_t fence_done = 0, barrier_done = 0;  // last published (widened) sequences
  Wait wait = Wait::kNone;
  int64_t wait_since = 0;  // when `wait` began
  // The command at the head of the queue while it waits (for deadline messages).
  uint64_t wait_ticket = 0;
  int wait_opcode = -1, wait_peer = -1;
  int64_t progress_at = 0;  // last completion, or the post that made inflight 0 -> 1
  // A WRITE_SIGNAL split into write + atomic: the atomic still to post.
  bool deferred = false;
  int32_t deferred_peer = 0;
  uint32_t deferred_slot = 0;
  int64_t deferred_value = 0;
  uint64_t deferred_ticket = 0;
  // A BARRIER in progress.
  bool barrier = false;
  uint64_t barrier_seq = 0, barrier_ticket = 0;
  uint32_t barrier_slot = 0;
  int barrier_next_peer = 0;
  bool barrier_arrived = false;         // own slot showed every arrival
  std::vector<uint64_t> barrier_polls;  // [threads] poll counts when it did
};

}  // namespace uccl::ep::proxy
