// The proxy over the fake transport with several ranks in one process, fed by host producers:
// data byte for byte, signals once and after their data, FENCE, BARRIER, flow control, split
// signals, atomic ordering, pause (back-pressure), start/stop.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "protocol/command.h"
#include "proxy/testing/cluster.h"
#include "transport/testing/driver.h"

namespace uccl::ep::proxy {
namespace {

using protocol::Command;
using testing::Cluster;
using testing::ClusterOptions;
using testing::load_signal;
using transport::fake::FakeAction;
using transport::fake::FakeOpInfo;
using transport::testing::fill_pattern;
using transport::testing::first_mismatch;

constexpr uint64_t kSourceBytes = 256 << 10;  // each rank's source area: [0, kSourceBytes)
constexpr uint64_t kMaxWrite = 1024;

// Deterministic pseudo-random delays: reorders operations at the fake fabric.
transport::fake::FakePolicy random_delays(uint64_t max_ticks) {
  return [max_ticks](const FakeOpInfo& op) {
    const uint64_t h = (op.index + 1) * 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(op.rank);
    return FakeAction{FakeAction::Kind::kDeliver, (h >> 40) % (max_ticks + 1)};
  };
}

// Collects failures from several threads; the test asserts in its main thread.
class Failures {
 public:
  void add(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    if (list_.size() < 20) list_.push_back(what);
  }
  std::string all() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    for (const auto& s : list_) out += s + "\n";
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> list_;
};

// A thread whose exceptions become failures (an exception escaping a thread aborts the test).
std::thread guarded(Failures& failures, std::function<void()> body) {
  return std::thread([&failures, body = std::move(body)] {
    try {
      body();
    } catch (const std::exception& e) {
      failures.add(e.what());
    }
  });
}

// Write i of (sender, queue) towards any peer: its source, destination, size, signal slot.
struct WritePlan {
  int num_ranks;
  uint32_t num_queues, per_queue;
  uint64_t src(uint32_t q, uint32_t i) const {
    return (i * 4096ull + q * 512ull) % (kSourceBytes - kMaxWrite);
  }
  uint64_t bytes(uint32_t q, uint32_t i) const { return 16ull * (1 + (i * 7 + q) % 64); }
  uint32_t slot(int sender, uint32_t q, uint32_t i) const {
    return (static_cast<uint32_t>(sender) * num_queues + q) * per_queue + i;
  }
  uint64_t dst(int sender, uint32_t q, uint32_t i) const {
    return kSourceBytes + slot(sender, q, i) * kMaxWrite;
  }
  static bool signalled(uint32_t i) { return i % 3 == 0; }
  static uint32_t value(uint32_t i) { return 1 + i % 200; }
  Command command(int sender, int peer, uint32_t q, uint32_t i) const {
    return signalled(i) ? protocol::encode_write_signal(static_cast<uint32_t>(peer), src(q, i),
                                                        dst(sender, q, i), bytes(q, i),
                                                        slot(sender, q, i), value(i))
                        : protocol::encode_write(static_cast<uint32_t>(peer), src(q, i),
                                                 dst(sender, q, i), bytes(q, i));
  }
};

// Watches rank `r`'s signal slots: a signal may only be visible after all of its data.
void watch_signals(Cluster& c, const WritePlan& plan, int r, const std::atomic<bool>& stop,
                   Failures& failures) {
  std::vector<bool> seen(static_cast<size_t>(plan.num_ranks) * plan.num_queues * plan.per_queue);
  while (!stop.load()) {
    for (int s = 0; s < plan.num_ranks; ++s) {
      if (s == r) continue;
      for (uint32_t q = 0; q < plan.num_queues; ++q) {
        for (uint32_t i = 0; i < plan.per_queue; i += 3) {
          const uint32_t slot = plan.slot(s, q, i);
          if (seen[slot]) continue;
          const int64_t v = load_signal(c.signals(r), slot);
          if (v == 0) continue;
          seen[slot] = true;
          if (v != WritePlan::value(i))
            failures.add(str_cat("rank ", r, " slot ", slot, " = ", v, " (applied twice?)"));
          const int64_t bad = first_mismatch(c.rdma_buffer(r) + plan.dst(s, q, i), plan.bytes(q, i),
                                             static_cast<uint64_t>(s), plan.src(q, i));
          if (bad >= 0)
            failures.add(str_cat("rank ", r, ": signal of write ", i, " from rank ", s, " queue ",
                                 q, " visible before byte ", bad, " of its data"));
        }
      }
    }
    std::this_thread::yield();
  }
}

TEST(Proxy, WritesLandByteForByteAndSignalsOnceAfterTheirData) {
  ClusterOptions o;
  o.num_ranks = 3;
  o.num_threads = 2;
  o.num_queues = 4;
  o.capacity = 64;
  o.policy = random_delays(12);
  Cluster c(o);
  const WritePlan plan{o.num_ranks, o.num_queues, 32};
  for (int r = 0; r < o.num_ranks; ++r)
    fill_pattern(c.rdma_buffer(r), kSourceBytes, static_cast<uint64_t>(r), 0);
  Failures failures;
  std::atomic<bool> stop{false};
  std::vector<std::thread> watchers, producers;
  for (int r = 0; r < o.num_ranks; ++r)
    watchers.emplace_back([&, r] { watch_signals(c, plan, r, stop, failures); });
  for (int r = 0; r < o.num_ranks; ++r) {
    for (uint32_t q = 0; q < o.num_queues; ++q) {
      producers.emplace_back([&, r, q] {
        try {
          queue::HostProducer p = c.producer(r, q);
          for (uint32_t i = 0; i < plan.per_queue; ++i)
            for (int peer = 0; peer < o.num_ranks; ++peer)
              if (peer != r) p.push(plan.command(r, peer, q, i));
          p.push(protocol::encode_fence(1));
          p.wait_fence(1);
        } catch (const std::exception& e) {
          failures.add(str_cat("producer ", r, "/", q, ": ", e.what()));
        }
      });
    }
  }
  for (auto& t : producers) t.join();
  stop.store(true);
  for (auto& t : watchers) t.join();
  // Every fence returned: everything before it completed at its target.
  for (int r = 0; r < o.num_ranks; ++r) {
    for (int s = 0; s < o.num_ranks; ++s) {
      if (s == r) continue;
      for (uint32_t q = 0; q < o.num_queues; ++q) {
        for (uint32_t i = 0; i < plan.per_queue; ++i) {
          const int64_t bad = first_mismatch(c.rdma_buffer(r) + plan.dst(s, q, i), plan.bytes(q, i),
                                             static_cast<uint64_t>(s), plan.src(q, i));
          EXPECT_LT(bad, 0) << "rank " << r << " write " << i << " of rank " << s << " queue " << q;
          EXPECT_EQ(load_signal(c.signals(r), plan.slot(s, q, i)),
                    WritePlan::signalled(i) ? WritePlan::value(i) : 0);
        }
      }
    }
  }
  EXPECT_EQ(failures.all(), "");
  for (const StopResult& r : c.stop()) EXPECT_EQ(r.status, StopStatus::kDrained) << r.message;
  const ThreadStats t = c.proxy(0).total_stats();
  EXPECT_EQ(t.commands, uint64_t{plan.per_queue} * 2 * o.num_queues + o.num_queues);
  EXPECT_EQ(t.posted, t.completed);
  EXPECT_EQ(t.fences, o.num_queues);
}

TEST(Proxy, FenceCompletesOnlyAfterEverythingBeforeIt) {
  ClusterOptions o;
  o.num_ranks = 2;
  o.num_threads = 1;
  o.num_queues = 2;
  o.policy = random_delays(30);
  Cluster c(o);
  fill_pattern(c.rdma_buffer(0), kSourceBytes, 7, 0);
  queue::HostProducer p = c.producer(0, 1);
  for (uint32_t round = 1; round <= 30; ++round) {
    std::vector<uint64_t> dst, size, src;
    for (uint32_t i = 0; i < 8; ++i) {
      const uint64_t n = 16ull * (1 + (round * 13 + i * 5) % 60);
      src.push_back(16ull * ((round * 31 + i) % 1000));
      dst.push_back(kSourceBytes + (round * 8 + i) * kMaxWrite);
      size.push_back(n);
      p.push(protocol::encode_write(1, src.back(), dst.back(), n));
    }
    p.push(protocol::encode_fence(round));
    p.wait_fence(round);
    for (uint32_t i = 0; i < 8; ++i)
      ASSERT_LT(first_mismatch(c.rdma_buffer(1) + dst[i], size[i], 7, src[i]), 0)
          << "round " << round << ": write " << i << " not delivered when its FENCE completed";
  }
  EXPECT_EQ(queue::Consumer(c.session(0).queues().host_view(1)).fence_done(), 30u);
}

TEST(Proxy, BarrierOfAllRanks) {
  ClusterOptions o;
  o.num_ranks = 4;
  o.num_threads = 2;
  o.num_queues = 4;
  o.policy = random_delays(8);
  Cluster c(o);
  constexpr int kRounds = 12;
  std::vector<std::atomic<int>> arrived(kRounds + 1);
  Failures failures;
  std::vector<std::thread> ranks;
  for (int r = 0; r < o.num_ranks; ++r) {
    ranks.emplace_back([&, r] {
      try {
        for (uint32_t k = 1; k <= kRounds; ++k) {
          queue::HostProducer p = c.producer(r, k % o.num_queues);
          arrived[k].fetch_add(1);
          p.push(protocol::encode_barrier(0, k));
          p.wait_barrier(k);
          if (arrived[k].load() != o.num_ranks)
            failures.add(str_cat("rank ", r, " left barrier ", k, " after ", arrived[k].load(),
                                 " arrivals"));
        }
      } catch (const std::exception& e) {
        failures.add(str_cat("rank ", r, ": ", e.what()));
      }
    });
  }
  for (auto& t : ranks) t.join();
  EXPECT_EQ(failures.all(), "");
  uint64_t barriers = 0;
  for (int r = 0; r < o.num_ranks; ++r) barriers += c.proxy(r).total_stats().barriers;
  EXPECT_EQ(barriers, uint64_t{kRounds} * o.num_ranks);
}

struct FlowCase {
  const char* name;
  bool low_latency;
  uint64_t max_bytes;  // per GPU
};

void PrintTo(const FlowCase& c, std::ostream* os) {
  *os << c.name;
}

class FlowControl : public ::testing::TestWithParam<FlowCase> {};

TEST_P(FlowControl, LimitsAreRespectedAtTheTransport) {
  ClusterOptions o;
  o.num_ranks = 2;
  o.num_threads = 2;
  o.num_queues = 4;
  o.capacity = 512;
  o.low_latency_mode = GetParam().low_latency;
  o.max_inflight_normal = 3;
  o.max_inflight_low_latency = 6;
  o.max_inflight_bytes = GetParam().max_bytes;
  o.rdma_buffer_bytes = 2 << 20;
  o.policy = random_delays(40);  // long delays: operations pile up to the limits
  Cluster c(o);
  Failures failures;
  std::vector<std::thread> producers;
  for (uint32_t q = 0; q < o.num_queues; ++q) {
    producers.emplace_back([&, q] {
      try {
        queue::HostProducer p = c.producer(0, q);
        for (uint32_t i = 0; i < 200; ++i)
          p.push(
              protocol::encode_write(1, 16ull * i, kSourceBytes + 1024ull * (q * 200 + i), 1024));
        p.push(protocol::encode_fence(1));
        p.wait_fence(1);
      } catch (const std::exception& e) {
        failures.add(e.what());
      }
    });
  }
  for (auto& t : producers) t.join();
  ASSERT_EQ(failures.all(), "");
  const int64_t limit = o.low_latency_mode ? 6 : 3;
  for (int t = 0; t < 2; ++t) {
    const auto& k = c.counters(0, t);
    EXPECT_LE(k.max_per_pipe.load(), limit) << "thread " << t;
    EXPECT_EQ(k.posted.load(), 400) << "thread " << t;
    if (GetParam().max_bytes != UINT64_MAX) {
      EXPECT_LE(k.max_bytes.load(), static_cast<int64_t>(GetParam().max_bytes / 2))
          << "thread " << t;
    } else {
      EXPECT_EQ(k.max_per_pipe.load(), limit) << "the limit was never reached: weak test";
    }
  }
  EXPECT_GT(c.proxy(0).total_stats().flow_stalls, 0u);
}

INSTANTIATE_TEST_SUITE_P(Modes, FlowControl,
                         ::testing::Values(FlowCase{"normal", false, UINT64_MAX},
                                           FlowCase{"low_latency", true, UINT64_MAX},
                                           FlowCase{"bytes", true, 2 * 2048}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Proxy, SignalBeyondTheFusedRangeIsAWriteThenAnAtomicAfterIt) {
  ClusterOptions o;
  o.num_ranks = 2;
  o.num_threads = 1;
  o.num_queues = 1;
  o.fabric.max_fused_signal_value = 100;
  o.policy = random_delays(20);
  Cluster c(o);
  fill_pattern(c.rdma_buffer(0), kSourceBytes, 3, 0);
  Failures failures;
  std::atomic<bool> stop{false};
  constexpr uint32_t kWrites = 60;
  std::thread watcher([&] {
    std::vector<bool> seen(kWrites);
    while (!stop.load()) {
      for (uint32_t i = 0; i < kWrites; ++i) {
        if (seen[i] || load_signal(c.signals(1), i) == 0) continue;
        seen[i] = true;
        if (first_mismatch(c.rdma_buffer(1) + kSourceBytes + i * kMaxWrite, 512, 3, i * 64) >= 0)
          failures.add(str_cat("split signal ", i, " visible before its data"));
      }
      std::this_thread::yield();
    }
  });
  queue::HostProducer p = c.producer(0, 0);
  for (uint32_t i = 0; i < kWrites; ++i)
    p.push(protocol::encode_write_signal(1, i * 64, kSourceBytes + i * kMaxWrite, 512, i,
                                         i % 2 ? 200 : 50));  // 200 > 100: split
  p.push(protocol::encode_fence(1));
  p.wait_fence(1);
  stop.store(true);
  watcher.join();
  EXPECT_EQ(failures.all(), "");
  for (uint32_t i = 0; i < kWrites; ++i) EXPECT_EQ(load_signal(c.signals(1), i), i % 2 ? 200 : 50);
  EXPECT_EQ(c.proxy(0).total_stats().split_signals, kWrites / 2);
  EXPECT_EQ(c.counters(0, 0).atomics.load(), kWrites / 2);
  EXPECT_EQ(c.counters(0, 0).atomics_behind_writes.load(), 0);
}

class AtomicOrder : public ::testing::TestWithParam<bool> {};

TEST_P(AtomicOrder, AtomicsFollowEarlierWritesOfTheirQueue) {
  ClusterOptions o;
  o.num_ranks = 2;
  o.num_threads = 2;
  o.num_queues = 2;
  o.fabric.ordered_delivery = GetParam();
  o.policy = random_delays(15);
  Cluster c(o);
  fill_pattern(c.rdma_buffer(0), kSourceBytes, 11, 0);
  Failures failures;
  std::vector<std::thread> producers;
  for (uint32_t q = 0; q < o.num_queues; ++q) {
    producers.push_back(guarded(failures, [&, q] {
      queue::HostProducer p = c.producer(0, q);
      for (uint32_t i = 0; i < 50; ++i) {
        p.push(protocol::encode_write(1, 0, kSourceBytes + (q * 50 + i) * kMaxWrite, 1024));
        p.push(protocol::encode_write(1, 1024, kSourceBytes + (q * 50 + i) * kMaxWrite, 512));
        p.push(protocol::encode_atomic_add(1, q, static_cast<int32_t>(i) - 20));
      }
      p.push(protocol::encode_fence(1));
      p.wait_fence(1);
    }));
  }
  for (auto& t : producers) t.join();
  ASSERT_EQ(failures.all(), "");
  int64_t behind = 0;
  for (int t = 0; t < 2; ++t) behind += c.counters(0, t).atomics_behind_writes.load();
  if (!GetParam()) {
    EXPECT_EQ(behind, 0) << "an atomic was posted while earlier writes were in flight on an "
                            "unordered transport";
  }
  const int64_t sum = 50 * 49 / 2 - 50 * 20;
  for (uint32_t q = 0; q < o.num_queues; ++q) EXPECT_EQ(load_signal(c.signals(1), q), sum);
}

INSTANTIATE_TEST_SUITE_P(Transports, AtomicOrder, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "ordered" : "unordered"; });

TEST(Proxy, PausedProxyBackPressuresProducersWithoutLoss) {
  ClusterOptions o;
  o.num_ranks = 2;
  o.num_threads = 1;
  o.num_queues = 1;
  o.capacity = 16;
  Cluster c(o);
  c.proxy(0).pause();
  constexpr uint32_t kCommands = 100;
  std::atomic<uint32_t> pushed{0};
  Failures failures;
  std::thread producer = guarded(failures, [&] {
    queue::HostProducer p = c.producer(0, 0);
    for (uint32_t i = 0; i < kCommands; ++i) {
      p.push(protocol::encode_atomic_add(1, 5, 1));
      pushed.fetch_add(1);
    }
    p.push(protocol::encode_fence(1));
    p.wait_fence(1);
  });
  // The queue fills up and the producer blocks: nothing is executed, nothing overwritten.
  for (int i = 0; i < 2000 && pushed.load() < o.capacity; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(pushed.load(), o.capacity);
  EXPECT_EQ(c.proxy(0).total_stats().commands, 0u);
  c.proxy(0).resume();
  producer.join();
  ASSERT_EQ(failures.all(), "");
  EXPECT_EQ(load_signal(c.signals(1), 5), kCommands);
}

TEST(Proxy, StartAndStopRepeatedly) {
  for (int round = 0; round < 6; ++round) {
    ClusterOptions o;
    o.num_ranks = 2;
    o.num_threads = 1 + round % 3;
    o.num_queues = 3;
    o.start = false;
    Cluster c(o);
    EXPECT_EQ(c.session(0).stop().status, StopStatus::kNotStarted);
    c.start();
    queue::HostProducer p = c.producer(1, round % 3);
    p.push(protocol::encode_atomic_add(0, 0, 1));
    p.push(protocol::encode_fence(1));
    p.wait_fence(1);
    if (round % 2 == 0) {
      const std::vector<StopResult> r = c.stop(StopMode::kDrain);
      EXPECT_EQ(r[0].status, StopStatus::kDrained) << r[0].message;
      EXPECT_EQ(r[1].status, StopStatus::kDrained) << r[1].message;
      EXPECT_EQ(c.session(1).stop().status, StopStatus::kDrained);  // idempotent
    }  // odd rounds: the destructor abandons running proxies
    EXPECT_EQ(load_signal(c.signals(0), 0), 1);
  }
}

TEST(Proxy, AbandonWithQueuedWorkStopsProducersAndSaysWhatWasLeft) {
  ClusterOptions o;
  o.num_ranks = 2;
  o.num_threads = 1;
  o.num_queues = 1;
  o.capacity = 16;
  Cluster c(o);
  c.proxy(0).pause();
  queue::HostProducer p = c.producer(0, 0);
  for (int i = 0; i < 5; ++i) p.push(protocol::encode_atomic_add(1, 0, 1));
  const StopResult r = c.session(0).stop(StopMode::kAbandon);
  EXPECT_EQ(r.status, StopStatus::kAbandoned) << r.message;
  EXPECT_EQ(r.pending_commands, 5u) << r.message;
  EXPECT_NE(r.message.find("5 command(s) queued"), std::string::npos) << r.message;
  EXPECT_EQ(queue::Consumer(c.session(0).queues().host_view(0)).error(),
            static_cast<uint32_t>(ProxyErrorCode::kStopped));
  try {
    p.push(protocol::encode_fence(1));
    p.wait_fence(1);
    ADD_FAILURE() << "a fence completed on an abandoned queue";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kRuntime);
    EXPECT_NE(std::string(e.what()).find("error 5"), std::string::npos) << e.what();
  }
  c.session(0).check();  // abandoning is not a failure
}

}  // namespace
}  // namespace uccl::ep::proxy
