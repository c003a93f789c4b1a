// Tests of the command queue with host producers: memory layout, consumer semantics, many
// producers and queues (order, loss, duplicates, checksums), wrap-around, back-pressure,
// deadlines, fence / barrier / error words. Also run under ThreadSanitizer.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "protocol/command.h"
#include "queue/consumer.h"
#include "queue/host_producer.h"
#include "queue/queue_memory.h"

namespace uccl::ep::queue {
namespace {

using namespace std::chrono_literals;
using protocol::Command;

QueueSet make_set(uint32_t num_queues, uint32_t capacity) {
  return QueueSet(num_queues, capacity, make_host_queue_allocator());
}

// word0 carries the producer and a check value of the sequence, word1 the sequence itself: a
// slot whose two words come from different pushes fails the check.
uint32_t check_value(uint32_t producer, uint64_t seq) {
  return static_cast<uint32_t>((seq * 0x9e3779b97f4a7c15ull) >> 32) ^ (producer * 0x85ebca6bu);
}

Command make_command(uint32_t producer, uint64_t seq) {
  return protocol::encode_write(producer, seq << 4, uint64_t{check_value(producer, seq)} << 4,
                                ((seq * 7) & 0xffff) << 4);
}

template <typename Fn>
void expect_error(Fn&& fn, ErrorKind kind, std::initializer_list<const char*> needles) {
  try {
    fn();
    ADD_FAILURE() << "no error was raised";
  } catch (const Error& e) {
    EXPECT_EQ(static_cast<int>(e.kind()), static_cast<int>(kind)) << e.what();
    for (const char* needle : needles)
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
          << "message lacks '" << needle << "': " << e.what();
  }
}

// What a consumer saw of one producer's stream.
struct ProducerLog {
  uint64_t next_seq = 0;
  uint64_t sum = 0;
};

// Drains `consumers` until `expected` commands were consumed in total, checking each
// producer's order and every command's integrity. Returns "" or the first failure.
std::string drain(const std::vector<Consumer*>& consumers, uint64_t expected,
                  std::vector<ProducerLog>& logs, std::chrono::seconds limit = 60s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  std::vector<Command> batch(64);
  uint64_t consumed = 0;
  for (uint64_t iter = 0; consumed < expected; ++iter) {
    bool any = false;
    for (Consumer* c : consumers) {
      const int n = c->peek(batch.data(), static_cast<int>(batch.size()));
      for (int i = 0; i < n; ++i) {
        const protocol::CommandFields f = protocol::decode(batch[i]);
        const uint64_t seq = f.local_offset >> 4;
        if (f.opcode != protocol::Opcode::kWrite || f.peer >= logs.size())
          return str_cat("queue ", c->index(), ": bad command at ticket ", c->head() + i);
        if ((f.remote_offset >> 4) != check_value(f.peer, seq) ||
            (f.bytes >> 4) != ((seq * 7) & 0xffff))
          return str_cat("queue ", c->index(), ": torn command at ticket ", c->head() + i);
        ProducerLog& log = logs[f.peer];
        if (seq != log.next_seq)
          return str_cat("producer ", f.peer, ": sequence ", seq, " where ", log.next_seq,
                         " was due (loss, duplicate or reorder)");
        ++log.next_seq;
        log.sum += seq + 1;
      }
      c->release(n);
      consumed += static_cast<uint64_t>(n);
      any = any || n > 0;
    }
    if (!any) {
      std::this_thread::yield();
      if ((iter & 255) == 0 && std::chrono::steady_clock::now() > deadline)
        return str_cat("drain timed out with ", consumed, " of ", expected, " commands");
    }
  }
  return "";
}

// ---- QueueSet

TEST(QueueSet, RejectsBadShapes) {
  for (uint32_t capacity : {0u, 3u, 6u, 1000u, kMaxCapacity * 2})
    expect_error([&] { make_set(1, capacity); }, ErrorKind::kValue, {"capacity"});
  expect_error([] { make_set(0, 8); }, ErrorKind::kValue, {"num_queues"});
  expect_error([] { make_set(kMaxQueues + 1, 8); }, ErrorKind::kValue, {"num_queues"});
  expect_error([] { QueueSet(1, 8, nullptr); }, ErrorKind::kValue, {"allocator"});
}

TEST(QueueSet, LayoutIsAlignedDisjointAndFree) {
  for (uint32_t capacity : {1u, 2u, 8u, 64u}) {
    QueueSet set = make_set(3, capacity);
    EXPECT_EQ(set.layout().shared_bytes(),
              3 * sizeof(QueueControl) + 3 * std::max<size_t>(128, capacity * sizeof(Command)));
    std::vector<std::pair<uintptr_t, uintptr_t>> ranges;
    for (uint32_t q = 0; q < 3; ++q) {
      const QueueHostView v = set.host_view(q);
      const QueueDeviceHandle h = set.device_handle(q);
      EXPECT_EQ(v.index, q);
      EXPECT_EQ(h.index, q);
      EXPECT_EQ(h.capacity, capacity);
      EXPECT_EQ(h.slots, v.slots);  // host memory: one address for both sides
      EXPECT_EQ(reinterpret_cast<uintptr_t>(v.slots) % 128, 0u);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(v.control) % 128, 0u);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(h.producer) % 128, 0u);
      EXPECT_TRUE(std::all_of(v.slots, v.slots + capacity, [](const Command& c) {
        return c.word0 == 0 && c.word1 == protocol::kEmptyWord1;  // every slot starts free
      }));
      EXPECT_EQ(v.control->tail + v.control->fence_done + v.control->error, 0u);
      EXPECT_EQ(h.producer->ticket + h.producer->cached_tail, 0u);
      const auto s = reinterpret_cast<uintptr_t>(v.slots);
      const auto c = reinterpret_cast<uintptr_t>(v.control);
      ranges.push_back({s, s + capacity * sizeof(Command)});
      ranges.push_back({c, c + sizeof(QueueControl)});
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i) EXPECT_LE(ranges[i - 1].second, ranges[i].first);
    EXPECT_EQ(set.device_handles().size(), 3u);
    expect_error([&] { set.device_handle(3); }, ErrorKind::kValue, {"queue index 3"});
  }
}

// Wraps host memory and records calls; producer state counts as device memory.
class RecordingAllocator final : public QueueAllocator {
 public:
  struct Counts {
    int shared = 0, producer = 0, freed_shared = 0, freed_producer = 0;
    size_t shared_bytes = 0, producer_bytes = 0;
  };
  RecordingAllocator(Counts* counts, bool fail_producer)
      : counts_(counts), fail_producer_(fail_producer) {}
  SharedBlock allocate_shared(size_t bytes) override {
    ++counts_->shared;
    counts_->shared_bytes = bytes;
    return inner_->allocate_shared(bytes);
  }
  void free_shared(const SharedBlock& b) noexcept override {
    ++counts_->freed_shared;
    inner_->free_shared(b);
  }
  void* allocate_producer(size_t bytes) override {
    if (fail_producer_) throw Error(ErrorKind::kRuntime, "injected producer allocation failure");
    ++counts_->producer;
    counts_->producer_bytes = bytes;
    return inner_->allocate_producer(bytes);
  }
  void free_producer(void* p) noexcept override {
    ++counts_->freed_producer;
    inner_->free_producer(p);
  }
  bool producer_memory_on_host() const override { return false; }
  const char* name() const override { return "recording"; }

 private:
  std::unique_ptr<QueueAllocator> inner_ = make_host_queue_allocator();
  Counts* counts_;
  bool fail_producer_;
};

TEST(QueueSet, UsesTheInjectedAllocatorOnce) {
  RecordingAllocator::Counts counts;
  {
    QueueSet set(4, 16, std::make_unique<RecordingAllocator>(&counts, false));
    EXPECT_EQ(counts.shared, 1);
    EXPECT_EQ(counts.producer, 1);
    EXPECT_EQ(counts.shared_bytes, set.layout().shared_bytes());
    EXPECT_EQ(counts.producer_bytes, 4 * sizeof(ProducerState));
    EXPECT_STREQ(set.allocator_name(), "recording");
    expect_error([&] { set.host_producer_handle(0); }, ErrorKind::kValue,
                 {"recording", "device memory"});
    QueueSet moved(std::move(set));  // ownership moves, nothing is freed twice
    EXPECT_EQ(moved.num_queues(), 4u);
    EXPECT_EQ(counts.freed_shared, 0);
  }
  EXPECT_EQ(counts.freed_shared, 1);
  EXPECT_EQ(counts.freed_producer, 1);
}

TEST(QueueSet, FreesSharedMemoryWhenProducerAllocationFails) {
  RecordingAllocator::Counts counts;
  expect_error([&] { QueueSet(2, 8, std::make_unique<RecordingAllocator>(&counts, true)); },
               ErrorKind::kRuntime, {"injected"});
  EXPECT_EQ(counts.shared, 1);
  EXPECT_EQ(counts.freed_shared, 1);
}

// ---- Consumer

TEST(Consumer, PeekIsRepeatableAndReleasePublishesTheTail) {
  QueueSet set = make_set(1, 8);
  Consumer consumer(set.host_view(0));
  HostProducer producer(set.host_producer_handle(0), 10s);
  Command out[8];
  EXPECT_EQ(consumer.peek(out, 8), 0);
  for (uint64_t s = 0; s < 3; ++s) EXPECT_EQ(producer.push(make_command(0, s)), s);
  EXPECT_EQ(consumer.peek(out, 2), 2);  // bounded by max
  EXPECT_EQ(consumer.peek(out, 8), 3);
  EXPECT_EQ(consumer.peek(out, 8), 3);  // peek does not consume
  for (int i = 0; i < 3; ++i) EXPECT_EQ(protocol::decode(out[i]).local_offset >> 4, uint64_t(i));
  consumer.release(2);
  EXPECT_EQ(consumer.head(), 2u);
  EXPECT_EQ(set.host_view(0).control->tail, 2u);
  EXPECT_EQ(set.host_view(0).slots[0].word0, 0u);  // released slots are free again
  EXPECT_EQ(set.host_view(0).slots[1].word0, 0u);
  EXPECT_EQ(set.host_view(0).slots[0].word1, protocol::kEmptyWord1);
  EXPECT_EQ(set.host_view(0).slots[1].word1, protocol::kEmptyWord1);
  EXPECT_NE(set.host_view(0).slots[2].word0, 0u);
  EXPECT_EQ(consumer.peek(out, 8), 1);
  EXPECT_EQ(protocol::decode(out[0]).local_offset >> 4, 2u);
  expect_error([&] { consumer.release(2); }, ErrorKind::kValue, {"release(2)", "ticket 2"});
  consumer.release(1);
  EXPECT_EQ(consumer.peek(out, 8), 0);
  consumer.release(0);                               // no-op
  EXPECT_EQ(Consumer(set.host_view(0)).head(), 3u);  // a new consumer resumes at the tail
}

TEST(Consumer, StopsAtTheFirstEmptySlot) {
  QueueSet set = make_set(1, 4);
  const QueueHostView view = set.host_view(0);
  Consumer consumer(view);
  Command out[4];
  // Ticket 1 written before ticket 0 (two producers racing): nothing is ready yet.
  view.slots[1] = make_command(0, 1);
  EXPECT_EQ(consumer.peek(out, 4), 0);
  view.slots[0] = make_command(0, 0);
  EXPECT_EQ(consumer.peek(out, 4), 2);
  EXPECT_EQ(out[1].word1, make_command(0, 1).word1);
}

// A 16-byte store that reaches host memory as two halves: the slot is taken only once both
// halves are there, whichever arrives first.
TEST(Consumer, TakesASlotOnlyWhenBothHalvesArrived) {
  QueueSet set = make_set(1, 4);
  const QueueHostView view = set.host_view(0);
  Consumer consumer(view);
  Command out[4];
  const Command c0 = make_command(0, 0), c1 = make_command(0, 1);
  view.slots[0].word0 = c0.word0;  // word0 first
  EXPECT_EQ(consumer.peek(out, 4), 0);
  view.slots[0].word1 = c0.word1;
  view.slots[1].word1 = c1.word1;  // word1 first
  EXPECT_EQ(consumer.peek(out, 4), 1);
  view.slots[1].word0 = c1.word0;
  ASSERT_EQ(consumer.peek(out, 4), 2);
  EXPECT_EQ(out[0].word0, c0.word0);
  EXPECT_EQ(out[0].word1, c0.word1);
  EXPECT_EQ(out[1].word0, c1.word0);
  EXPECT_EQ(out[1].word1, c1.word1);
  consumer.release(2);
  // A FENCE (word1 == 0) is a valid second half: 0 is not the free marker.
  view.slots[2] = protocol::encode_fence(7);
  ASSERT_EQ(consumer.peek(out, 4), 1);
  EXPECT_EQ(protocol::decode(out[0]).sequence, 7u);
}

TEST(Consumer, RejectsBadViews) {
  expect_error([] { Consumer(QueueHostView{}); }, ErrorKind::kValue, {"null"});
  QueueSet set = make_set(1, 8);
  QueueHostView view = set.host_view(0);
  view.capacity = 6;
  expect_error([&] { Consumer{view}; }, ErrorKind::kValue, {"capacity=6"});
}

TEST(Consumer, WidenSequence) {
  EXPECT_EQ(widen_sequence(0, 5), 5u);
  EXPECT_EQ(widen_sequence(7, 7), 7u);
  EXPECT_EQ(widen_sequence(0xfffffff0u, 2), 0x100000002ull);
  EXPECT_EQ(widen_sequence(0x300000010ull, 0x20), 0x300000020ull);
}

// ---- Producers and consumers together

TEST(HostProducer, RejectsEmptyCommandsAndOversizedBatches) {
  QueueSet set = make_set(1, 4);
  HostProducer producer(set.host_producer_handle(0), 1s);
  expect_error([&] { producer.push(Command{0, 42}); }, ErrorKind::kValue, {"empty"});
  std::vector<Command> five(5, make_command(0, 0));
  expect_error([&] { producer.push_batch(five.data(), 5); }, ErrorKind::kValue, {"capacity=4"});
  expect_error([&] { producer.push_batch(five.data(), 0); }, ErrorKind::kValue, {"batch"});
  EXPECT_EQ(set.host_producer_handle(0).producer->ticket, 0u);  // nothing was reserved
}

// P producer threads over Q queues (producer p pushes into queue p % Q), C consumer threads
// (consumer c drains the queues q with q % C == c); batches of 1..max_batch commands.
struct StressShape {
  uint32_t producers, queues, consumers, capacity, max_batch;
  uint64_t per_producer;
};

void run_stress(const StressShape& s) {
  QueueSet set = make_set(s.queues, s.capacity);
  std::vector<Consumer> consumers;
  for (uint32_t q = 0; q < s.queues; ++q) consumers.emplace_back(set.host_view(q));
  std::vector<std::vector<ProducerLog>> logs(s.consumers, std::vector<ProducerLog>(s.producers));
  std::vector<std::string> failures(s.consumers + s.producers);
  std::vector<std::thread> threads;
  for (uint32_t c = 0; c < s.consumers; ++c) {
    std::vector<Consumer*> mine;
    uint64_t expected = 0;
    for (uint32_t q = c; q < s.queues; q += s.consumers) mine.push_back(&consumers[q]);
    for (uint32_t p = 0; p < s.producers; ++p)
      if ((p % s.queues) % s.consumers == c) expected += s.per_producer;
    threads.emplace_back([&, c, mine, expected] { failures[c] = drain(mine, expected, logs[c]); });
  }
  for (uint32_t p = 0; p < s.producers; ++p) {
    threads.emplace_back([&, p] {
      try {
        HostProducer producer(set.host_producer_handle(p % s.queues), 20s);
        std::mt19937 rng(p);
        std::vector<Command> batch(s.max_batch);
        for (uint64_t seq = 0; seq < s.per_producer;) {
          const uint32_t n = static_cast<uint32_t>(
              std::min<uint64_t>(1 + rng() % s.max_batch, s.per_producer - seq));
          for (uint32_t i = 0; i < n; ++i) batch[i] = make_command(p, seq + i);
          producer.push_batch(batch.data(), n);
          seq += n;
        }
      } catch (const std::exception& e) {
        failures[s.consumers + p] = e.what();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const std::string& f : failures) EXPECT_EQ(f, "");
  const uint64_t n = s.per_producer;
  for (uint32_t p = 0; p < s.producers; ++p) {
    const uint32_t owner = (p % s.queues) % s.consumers;
    for (uint32_t c = 0; c < s.consumers; ++c) {
      EXPECT_EQ(logs[c][p].next_seq, c == owner ? n : 0) << "producer " << p;
      EXPECT_EQ(logs[c][p].sum, c == owner ? n * (n + 1) / 2 : 0) << "producer " << p;
    }
  }
  for (uint32_t q = 0; q < s.queues; ++q) {
    uint64_t pushed = 0;
    for (uint32_t p = q; p < s.producers; p += s.queues) pushed += n;
    EXPECT_EQ(consumers[q].head(), pushed);
    EXPECT_EQ(set.host_view(q).control->tail, pushed);
    EXPECT_EQ(set.host_producer_handle(q).producer->ticket, pushed);
    EXPECT_LE(set.host_producer_handle(q).producer->cached_tail, pushed);
  }
}

TEST(QueueStress, ManyProducersQueuesAndConsumersWithBatches) {
  run_stress({.producers = 6,
              .queues = 3,
              .consumers = 2,
              .capacity = 16,
              .max_batch = 8,
              .per_producer = 20000});
}

TEST(QueueStress, ManyProducersShareOneQueue) {
  run_stress({.producers = 4,
              .queues = 1,
              .consumers = 1,
              .capacity = 8,
              .max_batch = 1,
              .per_producer = 20000});
}

TEST(QueueStress, BatchesAsLargeAsTheQueue) {
  run_stress({.producers = 2,
              .queues = 1,
              .consumers = 1,
              .capacity = 4,
              .max_batch = 4,
              .per_producer = 20000});
}

class QueueWrap : public testing::TestWithParam<uint32_t> {};

TEST_P(QueueWrap, WrapsAroundManyTimes) {
  // 30000 commands through `capacity` slots: each slot is reused 30000 / capacity times.
  run_stress({.producers = 1,
              .queues = 1,
              .consumers = 1,
              .capacity = GetParam(),
              .max_batch = GetParam(),
              .per_producer = 30000});
}

INSTANTIATE_TEST_SUITE_P(Capacities, QueueWrap, testing::Values(1u, 2u, 4u));

// ---- Back-pressure and deadlines

// Polls `cond` for up to 10 s.
template <typename Cond>
bool eventually(Cond&& cond) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(QueueBackPressure, FullQueueBlocksAndNeverOverwrites) {
  QueueSet set = make_set(1, 8);
  Consumer consumer(set.host_view(0));
  HostProducer early(set.host_producer_handle(0), 30s);
  for (uint64_t s = 0; s < 8; ++s) early.push(make_command(0, s));
  std::atomic<int> pushed{0};
  std::string failure;
  std::thread late([&] {
    try {
      HostProducer producer(set.host_producer_handle(0), 30s);
      for (uint64_t s = 8; s < 12; ++s) {
        producer.push(make_command(0, s));
        pushed.fetch_add(1);
      }
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(pushed.load(), 0) << "a push into a full queue returned";
  Command out[16] = {};
  EXPECT_EQ(consumer.peek(out, 16), 8);
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(out[i].word1, make_command(0, i).word1) << "slot overwritten at ticket " << i;
  consumer.release(1);  // room for exactly one more
  EXPECT_TRUE(eventually([&] { return pushed.load() == 1; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(pushed.load(), 1);
  std::vector<ProducerLog> logs(1);
  logs[0].next_seq = 1;
  std::vector<Consumer*> mine{&consumer};
  EXPECT_EQ(drain(mine, 11, logs), "");
  late.join();
  EXPECT_EQ(failure, "");
  EXPECT_EQ(logs[0].next_seq, 12u);
  EXPECT_EQ(pushed.load(), 4);
}

TEST(QueueBackPressure, DeadlineWithoutConsumerNamesQueueTicketTailAndCapacity) {
  QueueSet set = make_set(3, 4);
  HostProducer producer(set.host_producer_handle(2), 50ms);
  for (uint64_t s = 0; s < 4; ++s) producer.push(make_command(0, s));
  const auto start = std::chrono::steady_clock::now();
  expect_error([&] { producer.push(make_command(0, 4)); }, ErrorKind::kTimeout,
               {"queue 2", "ticket 4", "tail 0", "capacity 4"});
  EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms);
  Consumer consumer(set.host_view(2));
  Command out[4];
  ASSERT_EQ(consumer.peek(out, 4), 4);  // nothing was overwritten
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i].word1, make_command(0, i).word1);
}

// ---- Control words

TEST(QueueControlWords, ErrorWordStopsABlockedProducerAndTheFirstErrorStays) {
  QueueSet set = make_set(1, 2);
  Consumer consumer(set.host_view(0));
  HostProducer producer(set.host_producer_handle(0), 30s);
  producer.push(make_command(0, 0));
  producer.push(make_command(0, 1));
  std::thread blocked([&] {
    expect_error([&] { producer.push(make_command(0, 2)); }, ErrorKind::kRuntime,
                 {"queue 0", "error 7"});
  });
  std::this_thread::sleep_for(30ms);
  consumer.set_error(7);
  blocked.join();
  consumer.set_error(9);
  EXPECT_EQ(consumer.error(), 7u);
  expect_error([&] { consumer.set_error(0); }, ErrorKind::kValue, {"non-zero"});
}

TEST(QueueControlWords, FenceAndBarrierWaitForThePublishedSequence) {
  QueueSet set = make_set(1, 8);
  Consumer consumer(set.host_view(0));
  std::atomic<int> stage{0};
  std::string failure;
  std::thread waiter([&] {
    try {
      HostProducer producer(set.host_producer_handle(0), 30s);
      producer.wait_fence(5);
      stage.store(1);
      producer.wait_barrier(2);
      stage.store(2);
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(stage.load(), 0);
  consumer.publish_fence_done(3);
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(stage.load(), 0) << "wait_fence(5) returned at fence_done 3";
  consumer.publish_fence_done(5);
  EXPECT_TRUE(eventually([&] { return stage.load() == 1; }));
  EXPECT_EQ(consumer.fence_done(), 5u);
  consumer.publish_barrier_done(2);
  waiter.join();
  EXPECT_EQ(failure, "");
  EXPECT_EQ(stage.load(), 2);
  EXPECT_EQ(consumer.barrier_done(), 2u);
  expect_error([&] { consumer.publish_fence_done(4); }, ErrorKind::kValue, {"fence_done", "5"});
  expect_error([&] { consumer.publish_barrier_done(1); }, ErrorKind::kValue, {"barrier_done"});
}

TEST(QueueControlWords, FenceDeadlineAndProxyError) {
  QueueSet set = make_set(2, 8);
  Consumer consumer(set.host_view(1));
  HostProducer producer(set.host_producer_handle(1), 30ms);
  consumer.publish_fence_done(5);
  EXPECT_NO_THROW(producer.wait_fence(5));
  expect_error([&] { producer.wait_fence(9); }, ErrorKind::kTimeout,
               {"queue 1", "fence_done >= 9", "fence_done 5"});
  expect_error([&] { producer.wait_barrier(1); }, ErrorKind::kTimeout, {"barrier_done >= 1"});
  consumer.set_error(3);
  expect_error([&] { producer.wait_fence(9); }, ErrorKind::kRuntime, {"error 3", "fence_done"});
}

// A miniature proxy: executes WRITEs into plain memory and completes each FENCE after the
// writes before it. The producer reads that memory after wait_fence: the fence_done release /
// acquire pair must make the proxy's work visible (ThreadSanitizer checks the chain).
TEST(QueueControlWords, FenceCompletionPublishesTheProxysWork) {
  QueueSet set = make_set(1, 4);
  uint64_t executed_sum = 0;  // plain memory, written by the proxy thread only
  std::atomic<bool> stop{false};
  std::thread proxy([&] {
    Consumer consumer(set.host_view(0));
    Command batch[4];
    while (!stop.load(std::memory_order_relaxed)) {
      const int n = consumer.peek(batch, 4);
      for (int i = 0; i < n; ++i) {
        const protocol::CommandFields f = protocol::decode(batch[i]);
        if (f.opcode == protocol::Opcode::kWrite) executed_sum += (f.local_offset >> 4) + 1;
        if (f.opcode == protocol::Opcode::kFence)
          consumer.publish_fence_done(widen_sequence(consumer.fence_done(), f.sequence));
      }
      consumer.release(n);
      if (n == 0) std::this_thread::yield();
    }
  });
  struct StopAndJoin {  // also when the test body throws
    std::atomic<bool>& stop;
    std::thread& thread;
    ~StopAndJoin() {
      stop.store(true);
      thread.join();
    }
  } stop_and_join{stop, proxy};
  HostProducer producer(set.host_producer_handle(0), 30s);
  uint64_t expected = 0, seq = 0;
  for (uint32_t round = 1; round <= 200; ++round) {
    for (int i = 0; i < 5; ++i, ++seq) {
      producer.push(make_command(0, seq));
      expected += seq + 1;
    }
    producer.push(protocol::encode_fence(round));
    producer.wait_fence(round);
    if (executed_sum != expected) {
      ADD_FAILURE() << "round " << round << ": proxy executed " << executed_sum << ", expected "
                    << expected << " when the fence completed";
      break;
    }
  }
}

}  // namespace
}  // namespace uccl::ep::queue
