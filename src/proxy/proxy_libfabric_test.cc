// The proxy over libfabric between two processes on loopback (this binary re-executes itself
// as rank 1): host producers on both ranks push WRITE, WRITE_SIGNAL, ATOMIC_ADD, FENCE and
// BARRIER; every byte and signal is checked at the target (a signal never before its data),
// and a peer killed mid-stream ends in the proxy's error on the survivor within the deadline.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bootstrap/tcp_bootstrap.h"
#include "bootstrap/testing/child_process.h"
#include "common/error.h"
#include "protocol/command.h"
#include "proxy/session.h"
#include "queue/host_producer.h"
#include "transport/libfabric/libfabric_transport.h"

namespace uccl::ep::proxy {
namespace {

using bootstrap::TcpBootstrap;
using bootstrap::TcpListener;
using Clock = std::chrono::steady_clock;

constexpr double kTimeout = 20;
constexpr uint32_t kQueues = 4;
constexpr uint32_t kPerQueue = 120;        // commands per queue (plus FENCE)
constexpr uint64_t kSrcBytes = 256 << 10;  // source area
constexpr uint64_t kSlotBytes = 8 << 10;   // destination area of one write
constexpr uint32_t kAtomicBase = 1000;     // ATOMIC_ADD slots: kAtomicBase + queue
constexpr uint64_t kRdmaBufferBytes = kSrcBytes + 2ull * kQueues * kPerQueue * kSlotBytes;

uint8_t pattern(int rank, uint64_t offset) {
  return static_cast<uint8_t>((offset * 131 + static_cast<uint64_t>(rank) * 977 + 7) >> 3);
}
uint64_t src_of(uint32_t q, uint32_t i) {
  return ((q * 7919ull + i * 104729ull) % 4000) * 16;
}
uint64_t size_of(uint32_t q, uint32_t i) {
  return 16 * (1 + (q * 31 + i * 17) % 500);
}
uint32_t slot_of(int sender, uint32_t q, uint32_t i) {
  return (static_cast<uint32_t>(sender) * kQueues + q) * kPerQueue + i;  // < kAtomicBase
}
uint64_t dst_of(int sender, uint32_t q, uint32_t i) {
  return kSrcBytes + uint64_t{slot_of(sender, q, i)} * kSlotBytes;
}
bool signalled(uint32_t i) {
  return i % 2 == 0;
}
int32_t atomic_value(uint32_t q, uint32_t i) {
  return static_cast<int32_t>(q * 1000 + i) - 50;
}

// One rank: bootstrap, RDMA buffer, session over libfabric.
struct Rank {
  int rank = 0;
  std::unique_ptr<TcpBootstrap> boot;
  std::vector<uint8_t> rdma_buffer;
  std::unique_ptr<ProxySession> session;
  int peer() const { return 1 - rank; }
  int64_t signal(uint32_t slot) const {
    return std::atomic_ref<int64_t>(session->signals()[slot]).load(std::memory_order_acquire);
  }
  queue::HostProducer producer(uint32_t q, double secs) const {
    return queue::HostProducer(session->queues().host_producer_handle(q),
                               std::chrono::nanoseconds(static_cast<int64_t>(secs * 1e9)));
  }
};

std::unique_ptr<Rank> open_rank(int rank, uint16_t port, TcpListener listener,
                                const std::string& provider, double timeout) {
  auto r = std::make_unique<Rank>();
  r->rank = rank;
  r->boot = std::make_unique<TcpBootstrap>(
      bootstrap::TcpBootstrapOptions{
          .rank = rank, .num_ranks = 2, .port = port, .timeout_secs = kTimeout},
      std::move(listener));
  r->rdma_buffer.assign(kRdmaBufferBytes, 0);
  for (uint64_t i = 0; i < kSrcBytes; ++i) r->rdma_buffer[i] = pattern(rank, i);
  SessionOptions s;
  s.proxy.rank = rank;
  s.proxy.num_ranks = 2;
  s.proxy.num_threads = 2;
  s.proxy.timeout_secs = timeout;
  s.proxy.pin_threads = false;
  s.proxy.idle_spins_before_yield = 256;
  s.transport = "libfabric";
  s.fi_provider = provider;
  s.num_queues = kQueues;
  s.queue_capacity = 64;
  s.rdma_buffer = transport::Region{r->rdma_buffer.data(), kRdmaBufferBytes, false, ""};
  s.num_signal_slots = 2048;
  r->session = std::make_unique<ProxySession>(s, queue::make_host_queue_allocator());
  r->session->connect(*r->boot);
  r->session->start();
  return r;
}

// Checks the writes `sender` made into this rank that are not in `done` yet; returns how many
// signalled ones are verified (a visible signal must come with all of its bytes). `final`:
// everything must have landed.
uint32_t check_incoming(const Rank& r, int sender, bool final, std::vector<bool>& done) {
  uint32_t seen = 0;
  for (uint32_t q = 0; q < kQueues; ++q) {
    for (uint32_t i = 0; i < kPerQueue; ++i) {
      const uint32_t slot = slot_of(sender, q, i);
      if (done[slot]) {
        seen += signalled(i) ? 1 : 0;
        continue;
      }
      const int64_t v = r.signal(slot);
      if (!final && (!signalled(i) || v == 0)) continue;
      UCCL_EP_CHECK_RUNTIME(v == (signalled(i) ? int64_t{1 + i % 200} : 0), "rank ", r.rank,
                            ": slot of write ", i, " queue ", q, " holds ", v);
      const uint64_t dst = dst_of(sender, q, i), src = src_of(q, i);
      for (uint64_t k = 0; k < size_of(q, i); ++k)
        UCCL_EP_CHECK_RUNTIME(
            r.rdma_buffer[dst + k] == pattern(sender, src + k), "rank ", r.rank, ": write ", i,
            " of queue ", q, ": byte ", k,
            signalled(i) ? " missing although its signal is visible" : " wrong after the fence");
      done[slot] = true;
      if (signalled(i)) ++seen;
    }
  }
  return seen;
}

void traffic(Rank& r) {
  std::vector<std::thread> producers;
  std::vector<std::string> errors(kQueues);
  for (uint32_t q = 0; q < kQueues; ++q) {
    producers.emplace_back([&, q] {
      try {
        queue::HostProducer p = r.producer(q, kTimeout);
        const uint32_t peer = static_cast<uint32_t>(r.peer());
        for (uint32_t i = 0; i < kPerQueue; ++i) {
          const uint64_t dst = dst_of(r.rank, q, i);
          p.push(signalled(i)
                     ? protocol::encode_write_signal(peer, src_of(q, i), dst, size_of(q, i),
                                                     slot_of(r.rank, q, i), 1 + i % 200)
                     : protocol::encode_write(peer, src_of(q, i), dst, size_of(q, i)));
          if (i % 10 == 9)
            p.push(protocol::encode_atomic_add(peer, kAtomicBase + q, atomic_value(q, i)));
        }
        p.push(protocol::encode_fence(1));
        p.wait_fence(1);
      } catch (const std::exception& e) {
        errors[q] = e.what();
      }
    });
  }
  // While the peer's traffic arrives: signals only after their data.
  const uint32_t expected = kQueues * (kPerQueue / 2);
  const auto deadline = Clock::now() + std::chrono::duration<double>(kTimeout);
  std::vector<bool> done(kAtomicBase, false);
  while (check_incoming(r, r.peer(), false, done) < expected) {
    r.session->check();
    UCCL_EP_CHECK(Clock::now() < deadline, ErrorKind::kTimeout, "rank ", r.rank,
                  ": incoming signals incomplete");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (auto& t : producers) t.join();
  for (const std::string& e : errors) UCCL_EP_CHECK_RUNTIME(e.empty(), "rank ", r.rank, ": ", e);
  // Both ranks' fences completed once both pass this BARRIER: everything has landed.
  queue::HostProducer p = r.producer(1, kTimeout);
  p.push(protocol::encode_barrier(0, 1));
  p.wait_barrier(1);
  check_incoming(r, r.peer(), true, done);
  for (uint32_t q = 0; q < kQueues; ++q) {
    int64_t sum = 0;
    for (uint32_t i = 9; i < kPerQueue; i += 10) sum += atomic_value(q, i);
    UCCL_EP_CHECK_RUNTIME(r.signal(kAtomicBase + q) == sum, "rank ", r.rank, ": atomic slot ", q,
                          " = ", r.signal(kAtomicBase + q), ", expected ", sum);
  }
  r.boot->barrier();  // nobody stops its proxy while the peer may still need its progress
  const StopResult s = r.session->stop(StopMode::kDrain);
  UCCL_EP_CHECK_RUNTIME(s.status == StopStatus::kDrained, "rank ", r.rank, ": ", s.message);
}

// The kill scenario. A process killed inside an shm (1.17) call can leave a spin lock of its
// shared region held, and its peers spinning in fi_* for ever (docs/transports.md, "Provider
// behaviour"). With shm the victim therefore stops its proxy once the writes before the kill
// have arrived and says so over the bootstrap; other providers are killed mid-progress.
constexpr uint32_t kWritesBeforeKill = 301;

bool leaves_libfabric_before_kill(const std::string& provider) {
  return provider == "shm";
}

// Rank 1 of the kill scenario: its proxy serves progress until it is killed (with shm: until
// the writes before the kill arrived; then it only sleeps).
void serve_until_killed(Rank& r, const std::string& provider) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(kTimeout);
  bool left = !leaves_libfabric_before_kill(provider);
  while (Clock::now() < deadline) {
    if (!left && r.signal(0) >= kWritesBeforeKill) {
      r.session->stop(StopMode::kAbandon);  // its threads are out of libfabric once it returns
      r.boot->barrier();
      left = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(left ? 5 : 1));
  }
}

std::string unavailable(const std::string& provider) {
  if (transport::libfabric::provider_available(provider)) return "";
  const std::string any = transport::libfabric::first_working_provider_name();
  if (any.empty()) return "no libfabric provider works on this machine";
  if (provider == "tcp;ofi_rxm")
    ADD_FAILURE() << provider << " unavailable although " << any << " works";
  return provider + " is unavailable";
}

class ProxyTwoProcesses : public ::testing::TestWithParam<std::string> {};

TEST_P(ProxyTwoProcesses, DataAndSignalsArriveExactly) {
  const std::string provider = GetParam();
  if (const std::string why = unavailable(provider); !why.empty()) GTEST_SKIP() << why;
  TcpListener listener = TcpListener::bind("127.0.0.1", 0);
  const uint16_t port = listener.port();
  auto child = testing::ChildProcess::spawn(
      {"--child=traffic", "--port=" + std::to_string(port), "--provider=" + provider});
  try {
    std::unique_ptr<Rank> r = open_rank(0, port, std::move(listener), provider, kTimeout);
    traffic(*r);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "rank 0: " << e.what();
  }
  const testing::ChildExit exit = child.wait(kTimeout * 2);
  EXPECT_TRUE(exit.ok()) << "rank 1: " << exit.describe();
}

TEST_P(ProxyTwoProcesses, KilledPeerReachesTheProducersAsTheProxyError) {
  // tcp reports the dead peer as an error completion; shm reports nothing, so the proxy's
  // deadline (no completion for kSurvivorTimeout) ends it.
  const std::string provider = GetParam();
  if (const std::string why = unavailable(provider); !why.empty()) GTEST_SKIP() << why;
  constexpr double kSurvivorTimeout = 3;
  TcpListener listener = TcpListener::bind("127.0.0.1", 0);
  const uint16_t port = listener.port();
  auto child = testing::ChildProcess::spawn(
      {"--child=kill", "--port=" + std::to_string(port), "--provider=" + provider});
  std::unique_ptr<Rank> r = open_rank(0, port, std::move(listener), provider, kSurvivorTimeout);
  queue::HostProducer p = r->producer(0, kSurvivorTimeout * 3);
  Clock::time_point killed{};
  std::string error;
  try {
    for (uint32_t i = 0;; ++i) {
      p.push(protocol::encode_write_signal(1, 0, kSrcBytes + (i % 64) * kSlotBytes, 4096, 0, 1));
      if (i + 1 == kWritesBeforeKill) {
        p.push(protocol::encode_fence(1));
        p.wait_fence(1);
        if (leaves_libfabric_before_kill(provider)) r->boot->barrier();
        child.kill();
        killed = Clock::now();
      }
      if (i >= kWritesBeforeKill && i % 50 == 0) {
        p.push(protocol::encode_fence(i));
        p.wait_fence(i);
      }
    }
  } catch (const Error& e) {
    error = e.what();
  }
  ASSERT_NE(killed, Clock::time_point{}) << "failed before the kill: " << error;
  const double secs = std::chrono::duration<double>(Clock::now() - killed).count();
  EXPECT_LT(secs, kSurvivorTimeout + 3) << error;
  EXPECT_NE(error.find("its proxy reported error"), std::string::npos) << error;
  try {
    r->session->check();
    ADD_FAILURE() << "the proxy did not record the failure";
  } catch (const Error& e) {
    const std::string m = e.what();
    std::printf("[ survivor ] %.2f s after the kill: %s\n", secs, m.c_str());
    EXPECT_NE(m.find("rank 0"), std::string::npos) << m;
    EXPECT_NE(m.find("peer 1"), std::string::npos) << m;
  }
}

INSTANTIATE_TEST_SUITE_P(Loopback, ProxyTwoProcesses, ::testing::Values("tcp;ofi_rxm", "shm"),
                         [](const auto& info) {
                           return std::string(info.param == "shm" ? "shm" : "tcp_rxm");
                         });

int run_child(int argc, char** argv) {
  const std::string scenario = testing::arg_value(argc, argv, "child");
  const std::string provider = testing::arg_value(argc, argv, "provider");
  try {
    std::unique_ptr<Rank> r =
        open_rank(1, static_cast<uint16_t>(std::stoi(testing::arg_value(argc, argv, "port"))), {},
                  provider, kTimeout);
    if (scenario == "traffic")
      traffic(*r);
    else
      serve_until_killed(*r, provider);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank 1 (%s, %s): %s\n", scenario.c_str(), provider.c_str(), e.what());
    return 1;
  }
}

}  // namespace
}  // namespace uccl::ep::proxy

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);  // a killed peer must surface as an error, not end this process
  if (!uccl::ep::testing::arg_value(argc, argv, "child").empty())
    return uccl::ep::proxy::run_child(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
