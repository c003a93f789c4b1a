// The proxy under faults (fake transport): dropped operations, failed completions, throwing
// posts, bad commands and missing barrier peers end in an error with context that reaches
// Proxy::check(), every queue's error word and blocked producers within the deadline.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <ostream>
#include <string>
#include <thread>

#include "common/error.h"
#include "protocol/command.h"
#include "proxy/testing/cluster.h"

namespace uccl::ep::proxy {
namespace {

using Clock = std::chrono::steady_clock;
using testing::Cluster;
using testing::ClusterOptions;
using transport::fake::FakeAction;
using transport::fake::FakeOpInfo;

constexpr double kTimeout = 1.0;  // proxy deadline in these tests
constexpr double kSlack = 4.0;    // scheduling slack on loaded CI machines (TSan, 2 cores)

// Rank 0's operation number `index` gets `kind`; everything else is delivered.
transport::fake::FakePolicy fault_at(uint64_t index, FakeAction::Kind kind) {
  return [index, kind](const FakeOpInfo& op) {
    if (op.rank == 0 && op.index == index) return FakeAction{kind, 0};
    return FakeAction{};
  };
}

ClusterOptions two_ranks(transport::fake::FakePolicy policy) {
  ClusterOptions o;
  o.num_ranks = 2;
  o.num_threads = 2;
  o.num_queues = 2;
  o.capacity = 16;
  o.timeout_secs = kTimeout;
  o.policy = std::move(policy);
  return o;
}

// Runs `f`, expects uccl::ep::Error of `kind`, returns its message.
std::string error_of(const std::function<void()>& f, ErrorKind kind) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(static_cast<int>(e.kind()), static_cast<int>(kind)) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

void expect_contains(const std::string& text, std::initializer_list<const char*> parts) {
  for (const char* p : parts) EXPECT_NE(text.find(p), std::string::npos) << p << " in: " << text;
}

void expect_every_queue_failed(Cluster& c, int rank, ProxyErrorCode code) {
  for (uint32_t q = 0; q < c.options().num_queues; ++q)
    EXPECT_EQ(queue::Consumer(c.session(rank).queues().host_view(q)).error(),
              static_cast<uint32_t>(code))
        << "queue " << q;
}

TEST(ProxyFaults, DroppedWriteFailsTheFenceWithinTheDeadline) {
  Cluster c(two_ranks(fault_at(4, FakeAction::Kind::kDrop)));
  queue::HostProducer p = c.producer(0, 1);
  for (int i = 0; i < 8; ++i) p.push(protocol::encode_write(1, 0, 4096ull * i, 1024));
  p.push(protocol::encode_fence(1));
  const auto start = Clock::now();
  const std::string waited = error_of([&] { p.wait_fence(1); }, ErrorKind::kRuntime);
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_LT(secs, kTimeout + kSlack);
  expect_contains(waited, {"queue 1", "error 2"});
  const std::string e = error_of([&] { c.proxy(0).check(); }, ErrorKind::kRuntime);
  expect_contains(e, {"rank 0", "thread 1", "queue 1", "ticket 4", "WRITE", "peer 1",
                      "proxy timeout", "in flight", "posted 8", "completed 7"});
  expect_every_queue_failed(c, 0, ProxyErrorCode::kTimeout);
  c.proxy(1).check();  // the other rank is healthy
  const StopResult r = c.session(0).stop();
  EXPECT_EQ(r.status, StopStatus::kFailed);
  EXPECT_EQ(r.message, e);
}

TEST(ProxyFaults, FailedCompletionCarriesTheTransportMessage) {
  Cluster c(two_ranks(fault_at(3, FakeAction::Kind::kFailCompletion)));
  queue::HostProducer p = c.producer(0, 0);
  for (int i = 0; i < 6; ++i)
    p.push(protocol::encode_write_signal(1, 0, 4096ull * i, 256, static_cast<uint32_t>(i), 1));
  p.push(protocol::encode_fence(1));
  error_of([&] { p.wait_fence(1); }, ErrorKind::kRuntime);
  const std::string e = error_of([&] { c.session(0).check(); }, ErrorKind::kRuntime);
  expect_contains(e, {"rank 0", "queue 0", "ticket 3", "WRITE_SIGNAL", "peer 1",
                      "transport failure", "injected failure"});
  expect_every_queue_failed(c, 0, ProxyErrorCode::kTransport);
}

TEST(ProxyFaults, ThrowingPostIsRecordedNotPropagatedAcrossTheThread) {
  Cluster c(two_ranks(fault_at(0, FakeAction::Kind::kThrowOnPost)));
  queue::HostProducer p = c.producer(0, 1);
  p.push(protocol::encode_atomic_add(1, 3, 9));
  p.push(protocol::encode_fence(1));
  error_of([&] { p.wait_fence(1); }, ErrorKind::kRuntime);
  const std::string e = error_of([&] { c.proxy(0).check(); }, ErrorKind::kRuntime);
  expect_contains(e, {"ATOMIC_ADD", "peer 1", "ticket 0", "atomic add of 9 to slot 3",
                      "injected failure posting"});
}

TEST(ProxyFaults, BlockedProducerIsReleasedByTheProxyError) {
  // Everything rank 0 sends is dropped: the in-flight limit fills, the proxy stops draining,
  // the queue fills and the producer blocks; the proxy's deadline must release it with the
  // proxy's error well before the producer's own (3x longer) deadline.
  ClusterOptions o = two_ranks([](const FakeOpInfo& op) {
    return FakeAction{op.rank == 0 ? FakeAction::Kind::kDrop : FakeAction::Kind::kDeliver, 0};
  });
  o.max_inflight_normal = 2;
  Cluster c(o);
  queue::HostProducer p = c.producer(0, 0);
  const auto start = Clock::now();
  const std::string e = error_of(
      [&] {
        for (int i = 0; i < 100; ++i) p.push(protocol::encode_write(1, 0, 0, 64));
      },
      ErrorKind::kRuntime);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), kTimeout + kSlack);
  expect_contains(e, {"waiting for room", "error 2"});
}

struct BadCommand {
  const char* name;
  protocol::Command command;
  const char* message;
};

void PrintTo(const BadCommand& c, std::ostream* os) {
  *os << c.name;
}

class ProxyBadCommands : public ::testing::TestWithParam<BadCommand> {};

TEST_P(ProxyBadCommands, AreReportedWithTheirContext) {
  Cluster c(two_ranks({}));
  queue::HostProducer p = c.producer(0, 0);
  p.push(protocol::encode_write(1, 0, 0, 16));  // a good one first
  p.push(GetParam().command);
  p.push(protocol::encode_fence(1));
  error_of([&] { p.wait_fence(1); }, ErrorKind::kRuntime);
  const std::string e = error_of([&] { c.proxy(0).check(); }, ErrorKind::kRuntime);
  expect_contains(e, {"rank 0", "queue 0", "ticket 1", "bad command", GetParam().message});
  expect_every_queue_failed(c, 0, ProxyErrorCode::kBadCommand);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ProxyBadCommands,
    ::testing::Values(
        BadCommand{"peer_out_of_range", protocol::encode_write(7, 0, 0, 16), "out of range [0, 2)"},
        BadCommand{"self", protocol::encode_atomic_add(0, 1, 1), "is this rank"},
        BadCommand{"beyond_region", protocol::encode_write(1, 0, 1 << 20, 16),
                   "exceeds its RDMA buffer"},
        BadCommand{"slot_out_of_range", protocol::encode_atomic_add(1, 5000, 1),
                   "signal slot 5000"},
        BadCommand{"barrier_group", protocol::encode_barrier(9, 1), "barrier group 9"},
        BadCommand{"opcode", protocol::Command{0x7, 0}, "unknown opcode 7"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(ProxyFaults, MissingBarrierPeerTimesOutNamingTheArrivals) {
  ClusterOptions o = two_ranks({});
  o.num_ranks = 3;
  Cluster c(o);
  std::thread rank1([&] {
    queue::HostProducer p = c.producer(1, 0);
    p.push(protocol::encode_barrier(0, 1));
    try {
      p.wait_barrier(1);
    } catch (const Error&) {  // rank 1 times out too (rank 2 never arrives)
    }
  });
  queue::HostProducer p = c.producer(0, 0);
  p.push(protocol::encode_barrier(0, 1));
  error_of([&] { p.wait_barrier(1); }, ErrorKind::kRuntime);
  rank1.join();
  const std::string e = error_of([&] { c.proxy(0).check(); }, ErrorKind::kRuntime);
  expect_contains(
      e, {"rank 0", "queue 0", "BARRIER sequence 1", "expected 2", "observed 1", "proxy timeout"});
}

TEST(ProxyFaults, AbandonWithOperationsInFlightReturnsPromptly) {
  Cluster c(two_ranks([](const FakeOpInfo& op) {
    return FakeAction{op.rank == 0 ? FakeAction::Kind::kDrop : FakeAction::Kind::kDeliver, 0};
  }));
  queue::HostProducer p = c.producer(0, 0);
  for (int i = 0; i < 3; ++i) p.push(protocol::encode_write(1, 0, 0, 64));
  while (c.proxy(0).total_stats().posted < 3) std::this_thread::yield();
  const auto start = Clock::now();
  const StopResult r = c.session(0).stop(StopMode::kAbandon);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), kSlack);
  EXPECT_EQ(r.status, StopStatus::kAbandoned) << r.message;
  EXPECT_EQ(r.inflight_ops, 3u);
  expect_contains(r.message, {"3 operation(s) in flight"});
}

}  // namespace
}  // namespace uccl::ep::proxy
