// The fake transport: data byte for byte, signals once and after their data, scripted
// reordering, drops, failures and retries, argument checks. Several ranks run as threads.
#include "transport/fake/fake_transport.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "transport/testing/driver.h"
#include "uccl_ep/error.h"

namespace uccl::ep::transport::fake {
namespace {

using testing::Driver;
using testing::first_mismatch;
using testing::load_signal;

// One rank's memory and transport.
struct Rank {
  std::vector<uint8_t> rdma_buffer;
  std::vector<int64_t> signals;
  std::unique_ptr<Transport> t;
};

// Builds `n` connected ranks on `fabric` (addresses exchanged in-process).
std::vector<Rank> make_ranks(const std::shared_ptr<FakeFabric>& fabric, int n,
                             uint64_t rdma_buffer_bytes, uint32_t slots, int max_inflight = 4096) {
  std::vector<Rank> ranks(n);
  std::vector<std::vector<uint8_t>> addresses;
  for (int r = 0; r < n; ++r) {
    ranks[r].rdma_buffer.assign(rdma_buffer_bytes, 0);
    ranks[r].signals.assign(slots, 0);
    ranks[r].t = make_fake_transport(
        TransportOptions{.rank = r, .num_ranks = n, .num_pipes = 4, .max_inflight = max_inflight},
        fabric);
    ranks[r].t->register_regions({ranks[r].rdma_buffer.data(), rdma_buffer_bytes},
                                 {ranks[r].signals.data(), slots * 8ull});
    addresses.push_back(ranks[r].t->local_address());
  }
  for (Rank& r : ranks) r.t->connect(addresses);
  return ranks;
}

// The traffic plan shared by every rank: write i of source s goes to target (s + 1 + i % (n-1))
// % n, with a size derived from (s, i), into its own area and slot at the target.
struct Plan {
  int n;
  int writes_per_rank;
  static constexpr uint64_t kArea = 4096;
  int target(int s, int i) const { return (s + 1 + i % (n - 1)) % n; }
  uint64_t size(int s, int i) const { return (uint64_t(s) * 7919 + uint64_t(i) * 104729) % kArea; }
  uint32_t slot(int s, int i) const { return static_cast<uint32_t>(s * writes_per_rank + i); }
  // Incoming areas follow this rank's own source areas [0, writes_per_rank * kArea).
  uint64_t dst_offset(int s, int i) const { return (writes_per_rank + slot(s, i)) * kArea; }
  uint64_t src_offset(int s, int i) const { return uint64_t(i) * kArea; }
  int64_t value(int s, int i) const { return 1 + (s + i) % 255; }
  uint64_t seed(int s) const { return 1000 + s; }
};

// Runs rank `me` of the plan: posts every write with its signal while checking, for every
// incoming write, that its signal is applied once and only when its data is complete.
void run_rank(const Plan& plan, Rank& rank, int me, std::atomic<int>& failures,
              std::string& error) {
  try {
    Driver d(*rank.t, me, plan.n, 20.0);
    std::vector<std::pair<int, int>> unseen;  // incoming (source, index) not signalled yet
    for (int s = 0; s < plan.n; ++s)
      for (int i = 0; i < plan.writes_per_rank; ++i)
        if (s != me && plan.target(s, i) == me) unseen.emplace_back(s, i);
    auto check_incoming = [&] {
      size_t keep = 0;
      for (const auto& [s, i] : unseen) {
        const int64_t v = load_signal(rank.signals.data(), plan.slot(s, i));
        if (v == 0) {
          unseen[keep++] = {s, i};
          continue;
        }
        if (v != plan.value(s, i))
          throw Error(ErrorKind::kRuntime, str_cat("slot ", plan.slot(s, i), " holds ", v,
                                                   ", expected ", plan.value(s, i)));
        const int64_t bad = first_mismatch(rank.rdma_buffer.data() + plan.dst_offset(s, i),
                                           plan.size(s, i), plan.seed(s), plan.src_offset(s, i));
        if (bad >= 0)
          throw Error(ErrorKind::kRuntime, str_cat("signal of write ", i, " from rank ", s,
                                                   " seen before byte ", bad, " of its data"));
      }
      unseen.resize(keep);
    };
    for (int i = 0; i < plan.writes_per_rank; ++i) {
      const Signal sig{plan.slot(me, i), plan.value(me, i)};
      d.write(i % 4, plan.target(me, i), plan.src_offset(me, i), plan.dst_offset(me, i),
              plan.size(me, i), &sig);
      d.progress();
      check_incoming();
    }
    d.wait_until(
        [&] {
          check_incoming();
          return unseen.empty() && d.completed() == d.posted();
        },
        [&] { return str_cat("for ", unseen.size(), " incoming signals"); });
  } catch (const std::exception& e) {
    ++failures;
    error = e.what();
  }
}

void run_plan(const std::shared_ptr<FakeFabric>& fabric, const Plan& plan) {
  std::vector<Rank> ranks =
      make_ranks(fabric, plan.n, uint64_t(plan.n + 1) * plan.writes_per_rank * Plan::kArea,
                 static_cast<uint32_t>(plan.n * plan.writes_per_rank));
  for (int r = 0; r < plan.n; ++r)
    testing::fill_pattern(ranks[r].rdma_buffer.data(), uint64_t(plan.writes_per_rank) * Plan::kArea,
                          plan.seed(r), 0);
  std::atomic<int> failures{0};
  std::vector<std::string> errors(plan.n);
  std::vector<std::thread> threads;
  for (int r = 0; r < plan.n; ++r)
    threads.emplace_back(run_rank, std::cref(plan), std::ref(ranks[r]), r, std::ref(failures),
                         std::ref(errors[r]));
  for (auto& t : threads) t.join();
  for (int r = 0; r < plan.n; ++r)
    EXPECT_TRUE(errors[r].empty()) << "rank " << r << ": " << errors[r];
  // Exactly once: after everything completed, no slot was applied twice.
  for (int s = 0; s < plan.n; ++s)
    for (int i = 0; i < plan.writes_per_rank; ++i)
      EXPECT_EQ(ranks[plan.target(s, i)].signals[plan.slot(s, i)], plan.value(s, i));
}

TEST(FakeTransport, WritesLandByteForByteAndSignalsFollowTheirData) {
  auto fabric = std::make_shared<FakeFabric>(4);
  run_plan(fabric, Plan{.n = 4, .writes_per_rank = 150});
  EXPECT_EQ(fabric->stats().landed, 600u);
}

TEST(FakeTransport, RandomDelaysReorderButNeverBreakDataBeforeSignal) {
  auto fabric = std::make_shared<FakeFabric>(3);
  fabric->set_policy([](const FakeOpInfo& op) {
    return FakeAction{.delay_ticks = (op.index * 2654435761u + op.rank) % 13};
  });
  run_plan(fabric, Plan{.n = 3, .writes_per_rank = 200});
}

TEST(FakeTransport, ReorderingFollowsTheScript) {
  auto fabric = std::make_shared<FakeFabric>(2);
  fabric->set_policy([](const FakeOpInfo& op) {
    return FakeAction{.delay_ticks = op.index == 0 ? 5u : 0u};  // the first write is late
  });
  std::vector<Rank> r = make_ranks(fabric, 2, 1024, 4);
  const Signal a{0, 1}, b{1, 1};
  ASSERT_EQ(r[0].t->post_write(0, 1, 0, 0, 16, &a, 100), PostStatus::kPosted);
  ASSERT_EQ(r[0].t->post_write(0, 1, 16, 16, 16, &b, 101), PostStatus::kPosted);
  Completion c[4];
  EXPECT_EQ(r[1].t->poll(c, 4), 0);  // target progress: the second write lands first
  EXPECT_EQ(r[1].signals[0], 0);
  EXPECT_EQ(r[1].signals[1], 1);
  ASSERT_EQ(r[0].t->poll(c, 4), 1);
  EXPECT_EQ(c[0].id, 101u);
  for (int i = 0; i < 5; ++i) r[1].t->poll(c, 4);
  EXPECT_EQ(r[1].signals[0], 1);
  ASSERT_EQ(r[0].t->poll(c, 4), 1);
  EXPECT_EQ(c[0].id, 100u);
}

TEST(FakeTransport, OrderedDeliveryHoldsLaterOperationsBack) {
  auto fabric = std::make_shared<FakeFabric>(2, FakeFabricOptions{.ordered_delivery = true});
  fabric->set_policy(
      [](const FakeOpInfo& op) { return FakeAction{.delay_ticks = op.index == 0 ? 4u : 0u}; });
  std::vector<Rank> r = make_ranks(fabric, 2, 1024, 4);
  EXPECT_TRUE(r[0].t->capabilities().ordered_delivery);
  const Signal a{0, 1};
  ASSERT_EQ(r[0].t->post_write(0, 1, 0, 0, 16, &a, 1), PostStatus::kPosted);
  ASSERT_EQ(r[0].t->post_atomic_add(0, 1, 1, 5, 2), PostStatus::kPosted);
  Completion c[4];
  r[1].t->poll(c, 4);
  EXPECT_EQ(r[1].signals[1], 0);  // the atomic waits for the earlier write
  for (int i = 0; i < 4; ++i) r[1].t->poll(c, 4);
  EXPECT_EQ(r[1].signals[0], 1);
  EXPECT_EQ(r[1].signals[1], 5);
}

TEST(FakeTransport, TargetProgressIsNeededForDataToLand) {
  auto fabric = std::make_shared<FakeFabric>(2);
  std::vector<Rank> r = make_ranks(fabric, 2, 1024, 4);
  EXPECT_TRUE(r[0].t->capabilities().target_progress);
  ASSERT_EQ(r[0].t->post_atomic_add(0, 1, 2, 7, 9), PostStatus::kPosted);
  Completion c[2];
  for (int i = 0; i < 10; ++i) EXPECT_EQ(r[0].t->poll(c, 2), 0);
  EXPECT_EQ(r[1].signals[2], 0);
  r[1].t->poll(c, 2);
  EXPECT_EQ(r[1].signals[2], 7);
  ASSERT_EQ(r[0].t->poll(c, 2), 1);
  EXPECT_TRUE(c[0].ok);
  EXPECT_EQ(c[0].id, 9u);
}

TEST(FakeTransport, DroppedOperationNeverCompletesAndTheDeadlineSaysSo) {
  auto fabric = std::make_shared<FakeFabric>(2);
  fabric->set_policy([](const FakeOpInfo& op) {
    return FakeAction{.kind = op.index == 1 ? FakeAction::Kind::kDrop : FakeAction::Kind::kDeliver};
  });
  std::vector<Rank> r = make_ranks(fabric, 2, 1024, 4);
  std::fill(r[0].rdma_buffer.begin(), r[0].rdma_buffer.end(), 0xab);
  Driver d(*r[0].t, 0, 2, 0.2);
  const Signal s{1, 1};
  d.write(0, 1, 0, 0, 64);
  d.write(0, 1, 64, 64, 64, &s);  // dropped
  d.atomic_add(0, 1, 2, 3);
  Completion c[4];
  r[1].t->poll(c, 4);
  try {
    d.wait_all("drop test");
    FAIL() << "no timeout";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kTimeout);
    const std::string m = e.what();
    for (const char* part : {"rank 0", "posted 3", "completed 2", "peer 1: 1 of 3 outstanding"})
      EXPECT_NE(m.find(part), std::string::npos) << part << " missing in: " << m;
  }
  EXPECT_EQ(r[1].signals[1], 0);
  EXPECT_EQ(r[1].rdma_buffer[64], 0);
  EXPECT_EQ(r[1].signals[2], 3);
  EXPECT_EQ(fabric->stats().dropped, 1u);
  EXPECT_EQ(fabric->inflight(0), 1u);
}

TEST(FakeTransport, InjectedFailuresCompleteWithErrorsOrThrow) {
  auto fabric = std::make_shared<FakeFabric>(2);
  fabric->set_policy([](const FakeOpInfo& op) {
    if (op.index == 0)
      return FakeAction{.kind = FakeAction::Kind::kFailCompletion, .delay_ticks = 2};
    if (op.index == 1 && op.attempt < 2) return FakeAction{.kind = FakeAction::Kind::kRetry};
    if (op.index == 2) return FakeAction{.kind = FakeAction::Kind::kThrowOnPost};
    return FakeAction{};
  });
  std::vector<Rank> r = make_ranks(fabric, 2, 1024, 4);
  const Signal s{0, 1};
  ASSERT_EQ(r[0].t->post_write(1, 1, 0, 0, 32, &s, 7), PostStatus::kPosted);
  EXPECT_EQ(r[0].t->post_atomic_add(0, 1, 1, 1, 8), PostStatus::kRetry);
  EXPECT_EQ(r[0].t->post_atomic_add(0, 1, 1, 1, 8), PostStatus::kRetry);
  EXPECT_EQ(r[0].t->post_atomic_add(0, 1, 1, 1, 8), PostStatus::kPosted);
  try {
    r[0].t->post_atomic_add(0, 1, 1, 1, 9);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kRuntime);
    EXPECT_NE(std::string(e.what()).find("injected failure posting atomic_add #2"),
              std::string::npos)
        << e.what();
  }
  Completion c[4];
  int got = 0;
  bool saw_failure = false;
  for (int i = 0; i < 5; ++i) {
    r[1].t->poll(c, 4);
    const int n = r[0].t->poll(c, 4);
    for (int k = 0; k < n; ++k) {
      ++got;
      if (c[k].id == 7) {
        saw_failure = true;
        EXPECT_FALSE(c[k].ok);
        EXPECT_NE(c[k].error.find("to peer 1 on pipe 1"), std::string::npos) << c[k].error;
      } else {
        EXPECT_TRUE(c[k].ok);
      }
    }
  }
  EXPECT_EQ(got, 2);
  EXPECT_TRUE(saw_failure);
  EXPECT_EQ(r[1].signals[0], 0);  // the failed write's signal never applies
  EXPECT_EQ(r[1].signals[1], 1);
  const FakeStats st = fabric->stats();
  EXPECT_EQ(st.retried, 2u);
  EXPECT_EQ(st.thrown, 1u);
  EXPECT_EQ(st.failed, 1u);
}

TEST(FakeTransport, AtomicsFromManyThreadsAreExact) {
  constexpr int kRanks = 4, kAdds = 2000;
  auto fabric = std::make_shared<FakeFabric>(kRanks);
  std::vector<Rank> r = make_ranks(fabric, kRanks, 64, 8, 64);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int me = 1; me < kRanks; ++me) {
    threads.emplace_back([&, me] {
      try {
        Driver d(*r[me].t, me, kRanks, 20.0);
        std::mt19937_64 rng(me);
        for (int i = 0; i < kAdds; ++i)
          d.atomic_add(i % 4, 0, static_cast<uint32_t>(i % 8), static_cast<int32_t>(rng()));
        d.wait_until([&] { return d.completed() == d.posted(); }, [] { return "atomics"; });
      } catch (...) {
        ++failures;
      }
    });
  }
  // Rank 0 only provides target progress.
  std::atomic<bool> stop{false};
  std::thread target([&] {
    Completion c[4];
    while (!stop.load()) r[0].t->poll(c, 4);
  });
  for (auto& t : threads) t.join();
  stop = true;
  target.join();
  ASSERT_EQ(failures.load(), 0);
  std::vector<int64_t> expected(8, 0);
  for (int me = 1; me < kRanks; ++me) {
    std::mt19937_64 rng(me);
    for (int i = 0; i < kAdds; ++i) expected[i % 8] += static_cast<int32_t>(rng());
  }
  for (int s = 0; s < 8; ++s) EXPECT_EQ(r[0].signals[s], expected[s]) << "slot " << s;
}

TEST(FakeTransport, InflightLimitAnswersRetry) {
  auto fabric = std::make_shared<FakeFabric>(2);
  std::vector<Rank> r = make_ranks(fabric, 2, 64, 2, /*max_inflight=*/2);
  EXPECT_EQ(r[0].t->post_atomic_add(0, 1, 0, 1, 1), PostStatus::kPosted);
  EXPECT_EQ(r[0].t->post_atomic_add(0, 1, 0, 1, 2), PostStatus::kPosted);
  EXPECT_EQ(r[0].t->post_atomic_add(0, 1, 0, 1, 3), PostStatus::kRetry);
  Completion c[4];
  r[1].t->poll(c, 4);
  EXPECT_EQ(r[0].t->poll(c, 1), 1);  // at most `max` completions per poll
  EXPECT_EQ(r[0].t->post_atomic_add(0, 1, 0, 1, 3), PostStatus::kPosted);
}

TEST(FakeTransport, RejectsBadArguments) {
  auto fabric = std::make_shared<FakeFabric>(2);
  std::vector<Rank> r = make_ranks(fabric, 2, 256, 4);
  Transport& t = *r[0].t;
  const Signal big{0, 9000}, zero{0, 0}, far{4, 1};
  auto expect_value_error = [](auto&& f, const char* what) {
    try {
      f();
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kValue) << what << ": " << e.what();
    }
  };
  expect_value_error([&] { t.post_write(4, 1, 0, 0, 16, nullptr, 0); }, "pipe");
  expect_value_error([&] { t.post_write(0, 2, 0, 0, 16, nullptr, 0); }, "peer");
  expect_value_error([&] { t.post_write(0, 0, 0, 0, 16, nullptr, 0); }, "self");
  expect_value_error([&] { t.post_write(0, 1, 250, 0, 16, nullptr, 0); }, "local range");
  expect_value_error([&] { t.post_write(0, 1, 0, 241, 16, nullptr, 0); }, "remote range");
  expect_value_error([&] { t.post_write(0, 1, 0, 0, 16, &big, 0); }, "signal value");
  expect_value_error([&] { t.post_write(0, 1, 0, 0, 16, &zero, 0); }, "zero signal");
  expect_value_error([&] { t.post_write(0, 1, 0, 0, 16, &far, 0); }, "signal slot");
  expect_value_error([&] { t.post_atomic_add(0, 1, 4, 1, 0); }, "atomic slot");
  Completion c;
  expect_value_error([&] { t.poll(&c, 0); }, "poll max");
  auto lone = make_fake_transport({.rank = 0, .num_ranks = 2}, std::make_shared<FakeFabric>(2));
  expect_value_error([&] { lone->post_atomic_add(0, 1, 0, 1, 0); }, "before connect");
}

TEST(FakeTransport, AddressesAreChecked) {
  auto fabric = std::make_shared<FakeFabric>(2);
  std::vector<uint8_t> d0(64), d1(64);
  std::vector<int64_t> s0(2), s1(2);
  auto t0 = make_fake_transport({.rank = 0, .num_ranks = 2}, fabric);
  auto t1 = make_fake_transport({.rank = 1, .num_ranks = 2}, fabric);
  t0->register_regions({d0.data(), 64}, {s0.data(), 16});
  std::vector<uint8_t> a0 = t0->local_address();
  // Peer 1 never registered.
  EXPECT_THROW(t0->connect({a0, a0}), Error);
  t1->register_regions({d1.data(), 64}, {s1.data(), 16});
  std::vector<uint8_t> a1 = t1->local_address();
  std::vector<uint8_t> truncated(a1.begin(), a1.begin() + 5);
  EXPECT_THROW(t0->connect({a0, truncated}), Error);
  std::vector<uint8_t> bad_magic = a1;
  bad_magic[0] ^= 0xff;
  try {
    t0->connect({a0, bad_magic});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad magic"), std::string::npos) << e.what();
  }
  t0->connect({a0, a1});
}

TEST(FakeTransport, FactoryChecksOptionsAndFabric) {
  auto kind_and_message = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.kind() == ErrorKind::kValue ? e.what() : std::string("not kValue: ") + e.what();
    }
    return "no error";
  };
  auto fabric = std::make_shared<FakeFabric>(2);
  EXPECT_EQ(make_fake_transport({.rank = 1, .num_ranks = 2}, fabric)->capabilities().name, "fake");
  EXPECT_NE(kind_and_message([&] {
              make_fake_transport({.rank = 2, .num_ranks = 2}, fabric);
            }).find("rank=2"),
            std::string::npos);
  EXPECT_NE(kind_and_message([&] {
              make_fake_transport({.num_ranks = 2, .num_pipes = 0}, fabric);
            }).find("num_pipes=0"),
            std::string::npos);
  EXPECT_NE(
      kind_and_message([&] { make_fake_transport({.num_ranks = 2}, nullptr); }).find("no fabric"),
      std::string::npos);
  EXPECT_NE(kind_and_message([&] {
              make_fake_transport({.num_ranks = 3}, fabric);
            }).find("the fabric has 2 ranks"),
            std::string::npos);
}

TEST(FakeTransport, SharedFabricsMeetByKeyAndPlane) {
  auto a = shared_fabric("fake-test-key", 0, 2);
  EXPECT_EQ(shared_fabric("fake-test-key", 0, 2), a);
  EXPECT_NE(shared_fabric("fake-test-key", 1, 2), a);
  EXPECT_NE(shared_fabric("fake-test-other", 0, 2), a);
  EXPECT_THROW(shared_fabric("fake-test-key", 0, 3), Error);
  std::weak_ptr<FakeFabric> gone = a;
  a.reset();
  EXPECT_TRUE(gone.expired());  // kept only while someone holds it
  EXPECT_EQ(shared_fabric("fake-test-key", 0, 3)->num_ranks(), 3);
}

}  // namespace
}  // namespace uccl::ep::transport::fake
