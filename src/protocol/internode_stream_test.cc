// The internode network stream (protocol/internode_layout.h) in a CPU model: one stream from
// node 0 to node 1 over many calls whose configs (K rows per chunk, W chunks per ring) change,
// with the Buffer's fixed signal window S. A sender thread writes chunks into its send ring and
// posts WRITE_SIGNALs; a proxy thread with random delays copies them into the receiver's ring
// and adds the chunk signal; the receiver waits for each chunk's signal, checks every row, and
// returns credits through a second proxy. A barrier separates calls, as notify does.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include "protocol/internode_layout.h"

namespace uccl::ep::protocol {
namespace {

constexpr int kKind = 0, kChannel = 1, kSrcNode = 0, kDstNode = 1;
constexpr int64_t kSlotBytes = 8;  // one word per row: the row's tag
constexpr auto kDeadline = std::chrono::seconds(20);

/// A proxy: runs its commands in order, each after a random delay.
class Proxy {
 public:
  explicit Proxy(uint32_t seed) : rng_(seed), thread_([this] { run(); }) {}
  ~Proxy() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  void post(std::function<void()> command) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_.push_back(std::move(command));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    std::uniform_int_distribution<int> delay_us(0, 100);
    for (;;) {
      std::function<void()> command;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !pending_.empty(); });
        if (pending_.empty()) return;
        command = std::move(pending_.front());
        pending_.pop_front();
      }
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng_)));
      command();
    }
  }

  std::mt19937 rng_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> pending_;
  bool stop_ = false;
  std::thread thread_;
};

struct Call {
  int chunk, window, rows;
};

/// Both nodes' memory for the stream: RDMA buffers as words, signal regions.
struct Stream {
  Stream(int64_t buffer_bytes, int64_t signal_slots)
      : send(buffer_bytes / kSlotBytes),
        recv(buffer_bytes / kSlotBytes),
        sender_signals(signal_slots),
        receiver_signals(signal_slots) {
    for (auto* v : {&send, &recv})
      for (auto& w : *v) w.store(0);
    for (auto* v : {&sender_signals, &receiver_signals})
      for (auto& s : *v) s.store(0);
  }
  std::vector<std::atomic<uint64_t>> send, recv;
  std::vector<std::atomic<int64_t>> sender_signals, receiver_signals;
};

uint64_t tag(int call, int row) {
  return (static_cast<uint64_t>(call + 1) << 32) | static_cast<uint32_t>(row);
}

/// Spins until `done()` or the deadline; false at the deadline.
template <typename Done>
bool wait_until(Done&& done) {
  const auto start = std::chrono::steady_clock::now();
  while (!done()) {
    if (std::chrono::steady_clock::now() - start > kDeadline) return false;
    std::this_thread::yield();
  }
  return true;
}

/// Runs `calls` over one stream with signal window `signal_window`; returns the number of rows
/// the receiver found wrong, or -1 when a wait passed its deadline.
int64_t run_stream(const std::vector<Call>& calls, int signal_window) {
  int64_t buffer_bytes = 0;
  auto layout_of = [&](const Call& c) {
    return InternodeRdmaLayout(2, 2, 2, c.chunk, c.window, signal_window, kSlotBytes);
  };
  for (const Call& c : calls) buffer_bytes = std::max(buffer_bytes, layout_of(c).total_bytes());
  const InternodeRdmaLayout any = layout_of(calls[0]);
  Stream s(buffer_bytes, any.signal_end());
  Proxy writes(7), credits(11);
  std::atomic<int> ready[2] = {0, 0};  // calls each side has finished (the barrier)
  std::atomic<bool> failed{false};
  std::atomic<int64_t> wrong{0};

  auto barrier = [&](int side, int call) {
    ready[side].store(call);
    return wait_until([&] { return ready[1 - side].load() >= call || failed.load(); });
  };
  // One side's run: the calls in order, a barrier before each, then `chunk(call index, call,
  // layout, chunk g, first row, rows)` per chunk; false from it stops the run (a deadline).
  auto run_side = [&](int side, const auto& chunk) {
    int64_t done = 0;  // chunks of the earlier calls
    for (size_t ci = 0; ci < calls.size() && !failed; ++ci) {
      if (!barrier(side, static_cast<int>(ci))) return failed.store(true);
      const Call& c = calls[ci];
      const InternodeRdmaLayout l = layout_of(c);
      const int chunks = (c.rows + c.chunk - 1) / c.chunk;
      for (int i = 0; i < chunks; ++i) {
        const int first = i * c.chunk, rows = std::min(c.rows, first + c.chunk) - first;
        if (!chunk(static_cast<int>(ci), c, l, done + i, first, rows)) return failed.store(true);
      }
      done += chunks;
    }
    ready[side].store(static_cast<int>(calls.size()));
  };
  std::thread sender([&] {
    run_side(0, [&](int ci, const Call& c, const InternodeRdmaLayout& l, int64_t g, int first,
                    int rows) {
      const int64_t needed = g - l.window + 1;
      auto& credit = s.sender_signals[l.credit_signal(kKind, kChannel, kDstNode)];
      if (needed > 0 && !wait_until([&] { return credit.load() >= needed || failed; }))
        return false;
      for (int k = 0; k < rows; ++k)
        s.send[l.send_slot(kChannel, kDstNode, g * c.chunk + k) / kSlotBytes].store(
            tag(ci, first + k));
      const int64_t from = l.send_slot(kChannel, kDstNode, g * c.chunk) / kSlotBytes;
      const int64_t to = l.recv_slot(kChannel, kSrcNode, g * c.chunk) / kSlotBytes;
      const uint32_t slot = l.chunk_signal(kKind, kChannel, kSrcNode, g);
      writes.post([&s, from, to, rows, slot] {
        for (int k = 0; k < rows; ++k) s.recv[to + k].store(s.send[from + k].load());
        s.receiver_signals[slot].fetch_add(1, std::memory_order_release);
      });
      return true;
    });
  });
  std::thread receiver([&] {
    run_side(1, [&](int ci, const Call& c, const InternodeRdmaLayout& l, int64_t g, int first,
                    int rows) {
      auto& signal = s.receiver_signals[l.chunk_signal(kKind, kChannel, kSrcNode, g)];
      const int64_t want = l.chunk_signal_value(g);
      if (!wait_until([&] { return signal.load(std::memory_order_acquire) >= want || failed; }))
        return false;
      for (int k = 0; k < rows; ++k) {
        const uint64_t got =
            s.recv[l.recv_slot(kChannel, kSrcNode, g * c.chunk + k) / kSlotBytes].load();
        if (got != tag(ci, first + k)) wrong.fetch_add(1);
      }
      const uint32_t slot = l.credit_signal(kKind, kChannel, kDstNode);
      credits.post([&s, slot] { s.sender_signals[slot].fetch_add(1); });
      return true;
    });
  });
  sender.join();
  receiver.join();
  return failed ? -1 : wrong.load();
}

TEST(InternodeStream, ChunksArriveIntactAcrossCallsWhoseConfigsDiffer) {
  // A small signal window (5) wraps many times; windows up to 5 chunks, chunks of 1 to 6 rows.
  constexpr int kSignalWindow = 5;
  const std::vector<std::pair<int, int>> configs = {{3, 2}, {6, 5}, {1, 4}, {4, 3}, {2, 5}};
  std::mt19937 rng(3);
  std::vector<Call> calls;
  for (int i = 0; i < 60; ++i) {
    const auto& [k, w] = configs[rng() % configs.size()];
    calls.push_back({k, w, static_cast<int>(rng() % 40)});
  }
  EXPECT_EQ(run_stream(calls, kSignalWindow), 0);
}

TEST(InternodeStream, OneConfigLongRunWrapsTheRingAndTheSignalSlots) {
  EXPECT_EQ(run_stream({{4, 3, 500}, {4, 3, 333}, {4, 3, 0}, {4, 3, 77}}, 3), 0);
}

/// Chunk g's signal slot must hold exactly chunk_signal_value(g) - 1 when g is sent: more and
/// its wait would end before its data (early), less and it would never end. With S fixed, the
/// slot holds the g / S earlier chunks g - S, g - 2S, ... of the same slot.
int count_slot_mismatches(const std::vector<Call>& calls,
                          const std::function<int(const Call&)>& window_of_signals) {
  std::unordered_map<uint32_t, int64_t> slots;
  int64_t sent = 0;
  int mismatches = 0;
  for (const Call& c : calls) {
    const InternodeRdmaLayout l(2, 2, 2, c.chunk, c.window, window_of_signals(c), kSlotBytes);
    const int chunks = (c.rows + c.chunk - 1) / c.chunk;
    for (int i = 0; i < chunks; ++i) {
      const int64_t g = sent + i;
      int64_t& slot = slots[l.chunk_signal(kKind, kChannel, kSrcNode, g)];
      mismatches += slot != l.chunk_signal_value(g) - 1 ? 1 : 0;
      ++slot;
    }
    sent += chunks;
  }
  return mismatches;
}

TEST(InternodeStream, TheSignalWindowMustNotFollowTheCallsConfig) {
  const std::vector<Call> calls = {{4, 4, 40}, {2, 7, 30}, {8, 3, 50}, {4, 4, 40}, {2, 7, 30}};
  EXPECT_EQ(count_slot_mismatches(calls, [](const Call&) { return 7; }), 0);
  // A window taken from each call's config moves the slots between calls: chunks of later
  // calls find their slots ahead of or behind their values.
  EXPECT_GT(count_slot_mismatches(calls, [](const Call& c) { return c.window; }), 0);
}

}  // namespace
}  // namespace uccl::ep::protocol
