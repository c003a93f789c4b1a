// uccl_ep_queue_gpu_bench: consumer threads (see queue_gpu_consumers.h).
#include "queue_gpu_consumers.h"

#include <algorithm>
#include <chrono>

#include "common/error.h"

namespace uccl::ep::bench::queue_gpu {
namespace {

using Clock = std::chrono::steady_clock;
const Clock::time_point kEpoch = Clock::now();

uint64_t mix(uint64_t q, uint64_t producer, uint64_t seq) {
  uint64_t x = (q << 44) ^ (producer << 32) ^ seq;
  x ^= x >> 31;
  x *= 0x7fb5d329728ea185ull;
  return x ^ (x >> 27);
}

}  // namespace

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - kEpoch).count());
}

uint32_t producers_per_queue(const Scenario& s) {
  return s.warps_per_queue * (s.mode == Mode::kWarp ? 32 : 1);
}

uint32_t commands_of(const Scenario& s, uint32_t producer) {
  if (s.mode != Mode::kWarp) return s.iterations;
  uint32_t n = 0;
  for (uint32_t it = 0; it < s.iterations; ++it) n += lane_active(it, producer % 32) ? 1 : 0;
  return n;
}

ConsumerPool::ConsumerPool(const queue::QueueSet& set, const Scenario& s)
    : s_(s), producers_(producers_per_queue(s)), threads_(s.cpu_threads) {
  for (uint32_t q = 0; q < s.queues; ++q) consumers_.emplace_back(set.host_view(q));
  next_seq_.assign(size_t{s.queues} * producers_, 0);
  fences_.assign(s.queues, 0);
  for (uint32_t p = 0; p < producers_; ++p) per_queue_ += commands_of(s, p);
}

void ConsumerPool::start() {
  for (uint32_t t = 0; t < threads_.size(); ++t) workers_.emplace_back([this, t] { run(t); });
}

void ConsumerPool::stop() {
  stop_.store(true);
  for (std::thread& w : workers_) w.join();
  workers_.clear();
}

bool ConsumerPool::wait_done(double secs) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(secs);
  while (consumed() < per_queue_ * s_.queues && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  return consumed() == per_queue_ * s_.queues;
}

uint64_t ConsumerPool::consumed() const {
  uint64_t n = 0;
  for (const Worker& w : threads_) n += w.consumed.load(std::memory_order_relaxed);
  return n;
}

// Null execution of one command: checks and counts a WRITE (returns true), completes a FENCE.
bool ConsumerPool::handle(Worker& w, queue::Consumer& c, const protocol::Command& cmd, uint64_t now,
                          uint64_t index) {
  const protocol::CommandFields f = protocol::decode(cmd);
  if (f.opcode == protocol::Opcode::kFence) {
    c.publish_fence_done(queue::widen_sequence(c.fence_done(), f.sequence));
    ++fences_[c.index()];
    return false;
  }
  const uint32_t seq = static_cast<uint32_t>(f.remote_offset >> 4);
  if (f.opcode != protocol::Opcode::kWrite || f.peer >= producers_) {
    if (w.error.empty()) w.error = str_cat("queue ", c.index(), ": unexpected command");
    return false;
  }
  uint32_t& next = next_seq_[size_t{c.index()} * producers_ + f.peer];
  if (seq != next && w.error.empty())
    w.error = str_cat("queue ", c.index(), " producer ", f.peer, ": sequence ", seq, " where ",
                      next, " was due (loss, duplicate or reorder)");
  next = seq + 1;
  w.checksum += mix(c.index(), f.peer, seq);
  if ((index & 15) == 0 && w.samples.size() < w.samples.capacity())
    w.samples.push_back({now, (f.local_offset >> 4) | ((f.bytes >> 4) << 32)});
  return true;
}

void ConsumerPool::run(uint32_t t) {
  Worker& w = threads_[t];
  w.samples.reserve(1 << 18);
  protocol::Command batch[256];
  uint64_t index = 0;
  uint32_t idle = 0;
  while (!stop_.load(std::memory_order_relaxed)) {
    bool any = false;
    for (size_t q = t; q < consumers_.size(); q += threads_.size()) {
      queue::Consumer& c = consumers_[q];
      const int n = c.peek(batch, 256);
      if (n == 0) continue;
      const uint64_t now = now_ns();
      uint64_t writes = 0;
      for (int i = 0; i < n; ++i) writes += handle(w, c, batch[i], now, index++) ? 1 : 0;
      c.release(n);
      w.last_ns = now;
      w.consumed.fetch_add(writes, std::memory_order_relaxed);
      any = true;
    }
    // Yield only after a long idle stretch (~a millisecond): a yield between two paced pushes
    // (latency scenario, 5 us apart) would add a system call to their latency.
    idle = any ? 0 : idle + 1;
    if (idle > (1u << 16)) std::this_thread::yield();
  }
}

std::string ConsumerPool::verify(std::vector<testing::StampSample>& samples,
                                 uint64_t& last_ns) const {
  uint64_t checksum = 0, expected = 0;
  last_ns = 0;
  for (const Worker& w : threads_) {
    if (!w.error.empty()) return w.error;
    checksum += w.checksum;
    last_ns = std::max(last_ns, w.last_ns);
    samples.insert(samples.end(), w.samples.begin(), w.samples.end());
  }
  for (uint32_t q = 0; q < s_.queues; ++q) {
    for (uint32_t p = 0; p < producers_; ++p) {
      const uint32_t n = commands_of(s_, p);
      if (next_seq_[size_t{q} * producers_ + p] != n)
        return str_cat("queue ", q, " producer ", p, ": ", next_seq_[size_t{q} * producers_ + p],
                       " of ", n, " commands consumed");
      for (uint32_t seq = 0; seq < n; ++seq) expected += mix(q, p, seq);
    }
    if (consumers_[q].head() != per_queue_ + fences_[q])
      return str_cat("queue ", q, ": head ", consumers_[q].head(), ", expected ",
                     per_queue_ + fences_[q]);
  }
  return checksum == expected ? "" : "checksum mismatch";
}

}  // namespace uccl::ep::bench::queue_gpu
