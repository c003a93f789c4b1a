// The libfabric transport between two processes on loopback (this binary re-executes itself as
// rank 1): writes of random sizes byte for byte, signals once and only after their data,
// exact atomics, completion as a fence, a barrier over the bootstrap, and a peer killed
// mid-stream ending in an error on the survivor within the deadline.
#include "transport/libfabric/libfabric_transport.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bootstrap/tcp_bootstrap.h"
#include "bootstrap/testing/child_process.h"
#include "common/error.h"
#include "transport/libfabric/api.h"
#include "transport/testing/driver.h"

namespace uccl::ep::transport::libfabric {
namespace {

using bootstrap::TcpBootstrap;
using bootstrap::TcpListener;
using Clock = std::chrono::steady_clock;
using testing::Driver;
using testing::load_signal;

constexpr double kTimeout = 20;  // every wait; a healthy run needs a small fraction of it

struct Params {
  std::string provider;
  SignalPath path = SignalPath::kRemoteCqData;
};

std::string path_arg(SignalPath p) {
  return p == SignalPath::kNativeAtomic ? "native" : "cqdata";
}

// One rank of a two-process scenario: bootstrap, transport and its registered memory.
struct Side {
  int rank = 0;
  std::string provider;
  std::unique_ptr<TcpBootstrap> boot;
  std::vector<uint8_t> rdma_buffer;
  std::vector<int64_t> signals;
  std::unique_ptr<LibfabricTransport> t;
  int peer() const { return 1 - rank; }
};

std::unique_ptr<Side> open_side(int rank, uint16_t port, TcpListener listener, const Params& p,
                                uint64_t rdma_buffer_bytes, uint32_t slots) {
  auto s = std::make_unique<Side>();
  s->rank = rank;
  s->provider = p.provider;
  s->boot = std::make_unique<TcpBootstrap>(
      bootstrap::TcpBootstrapOptions{
          .rank = rank, .num_ranks = 2, .port = port, .timeout_secs = kTimeout},
      std::move(listener));
  s->rdma_buffer.assign(rdma_buffer_bytes, 0);
  s->signals.assign(slots, 0);
  s->t = std::make_unique<LibfabricTransport>(TransportOptions{.rank = rank,
                                                               .num_ranks = 2,
                                                               .num_pipes = 2,
                                                               .max_inflight = 256,
                                                               .provider = p.provider,
                                                               .signal_path = p.path,
                                                               .timeout_secs = kTimeout});
  s->t->register_regions({s->rdma_buffer.data(), rdma_buffer_bytes},
                         {s->signals.data(), slots * 8ull});
  s->t->connect(s->boot->all_gather(s->t->local_address()));
  return s;
}

// ---- Traffic: both ranks stream writes (with fused signals) and atomics at each other.

struct TrafficPlan {
  static constexpr int kWrites = 1200;
  static constexpr uint64_t kSrcBytes = 1 << 20;
  static constexpr uint64_t kMaxWrite = 24 << 10;
  static constexpr uint32_t kAtomicSlots = 16;
  static constexpr uint32_t kAtomicBase = kWrites;
  static constexpr uint32_t kHandshakeSlot = kWrites + kAtomicSlots;
  static constexpr uint32_t kSlots = kHandshakeSlot + 1;
  std::vector<uint64_t> size, src, dst;
  std::vector<int64_t> atomic;  // value added after write i (0: none)
  uint64_t rdma_buffer_bytes = kSrcBytes;

  explicit TrafficPlan(int sender) {
    std::mt19937_64 rng(77 + sender);
    for (int i = 0; i < kWrites; ++i) {
      const uint64_t n = i % 97 == 0 ? 0 : 1 + rng() % kMaxWrite;  // some empty writes
      size.push_back(n);
      src.push_back(rng() % (kSrcBytes - kMaxWrite));
      dst.push_back(rdma_buffer_bytes);
      rdma_buffer_bytes += (n + 63) / 64 * 64;
      // Every third write is followed by an atomic, some beyond 32 bits.
      atomic.push_back(
          i % 3 ? 0 : static_cast<int64_t>(rng() % (uint64_t{1} << 40)) - (int64_t{1} << 39));
    }
  }
  static int64_t signal_value(int i) { return 1 + i % 255; }
  static uint64_t seed(int sender) { return 5000 + sender; }
};

void traffic(Side& s) {
  const TrafficPlan out(s.rank), in(s.peer());
  testing::fill_pattern(s.rdma_buffer.data(), TrafficPlan::kSrcBytes, TrafficPlan::seed(s.rank), 0);
  Driver d(*s.t, s.rank, 2, kTimeout);
  std::vector<int> unseen(TrafficPlan::kWrites);
  for (int i = 0; i < TrafficPlan::kWrites; ++i) unseen[i] = i;
  // A signal must never be visible before every byte of its write.
  auto check_incoming = [&] {
    size_t keep = 0;
    for (int i : unseen) {
      const int64_t v = load_signal(s.signals.data(), i);
      if (v == 0) {
        unseen[keep++] = i;
        continue;
      }
      UCCL_EP_CHECK_RUNTIME(v == TrafficPlan::signal_value(i), "rank ", s.rank, ": slot ", i,
                            " holds ", v, ", expected ", TrafficPlan::signal_value(i));
      const int64_t bad = testing::first_mismatch(s.rdma_buffer.data() + in.dst[i], in.size[i],
                                                  TrafficPlan::seed(s.peer()), in.src[i]);
      UCCL_EP_CHECK_RUNTIME(bad < 0, "rank ", s.rank, ": signal of write ", i, " (", in.size[i],
                            " bytes) visible before byte ", bad, " of its data");
    }
    unseen.resize(keep);
  };
  for (int i = 0; i < TrafficPlan::kWrites; ++i) {
    const Signal sig{static_cast<uint32_t>(i), TrafficPlan::signal_value(i)};
    d.write(i % 2, s.peer(), out.src[i], out.dst[i], out.size[i], &sig);
    if (out.atomic[i] != 0)
      d.atomic_add(i % 2, s.peer(), TrafficPlan::kAtomicBase + i % TrafficPlan::kAtomicSlots,
                   out.atomic[i]);
    d.progress();
    check_incoming();
  }
  d.wait_until(
      [&] {
        check_incoming();
        return unseen.empty() && d.completed() == d.posted();
      },
      [&] { return str_cat("for ", unseen.size(), " incoming signals and own completions"); });
  d.handshake(TrafficPlan::kHandshakeSlot, s.signals.data());
  s.boot->barrier();
  for (int k = 0; k < 10; ++k) d.progress();  // nothing may arrive any more
  std::vector<int64_t> expected(TrafficPlan::kAtomicSlots, 0);
  for (int i = 0; i < TrafficPlan::kWrites; ++i) {
    UCCL_EP_CHECK_RUNTIME(s.signals[i] == TrafficPlan::signal_value(i), "rank ", s.rank, ": slot ",
                          i, " = ", s.signals[i], " after the barrier (applied twice?)");
    expected[i % TrafficPlan::kAtomicSlots] += in.atomic[i];
  }
  for (uint32_t k = 0; k < TrafficPlan::kAtomicSlots; ++k)
    UCCL_EP_CHECK_RUNTIME(s.signals[TrafficPlan::kAtomicBase + k] == expected[k], "rank ", s.rank,
                          ": atomic slot ", k, " = ", s.signals[TrafficPlan::kAtomicBase + k],
                          ", expected ", expected[k]);
}

std::unique_ptr<Side> open_traffic(int rank, uint16_t port, TcpListener l, const Params& p) {
  // Large enough for either rank's plan.
  const uint64_t bytes =
      TrafficPlan::kSrcBytes + TrafficPlan::kWrites * (TrafficPlan::kMaxWrite + 64);
  return open_side(rank, port, std::move(l), p, bytes, TrafficPlan::kSlots);
}

// ---- Fence: completions mean delivered. Rank 0 writes without signals, waits for every
// completion, then sends one atomic; when rank 1 sees it, every byte must already be there.

constexpr int kFenceWrites = 300;
constexpr uint64_t kFenceArea = 16 << 10;
constexpr uint32_t kFenceSlot = 0, kFenceHandshake = 1;

void check_argument_errors(Side& s) {
  const Signal too_big{0, 9000}, far{1000, 1};
  auto value_error = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.kind() == ErrorKind::kValue;
    }
    return false;
  };
  if (s.t->signal_path() == SignalPath::kRemoteCqData)
    UCCL_EP_CHECK_RUNTIME(value_error([&] { s.t->post_write(0, 1, 0, 0, 16, &too_big, 0); }),
                          "fused value 9000 accepted with 32-bit immediates");
  UCCL_EP_CHECK_RUNTIME(value_error([&] { s.t->post_write(0, 1, 0, 0, 16, &far, 0); }),
                        "slot beyond the peer's signal region accepted");
  UCCL_EP_CHECK_RUNTIME(value_error([&] { s.t->post_write(0, 0, 0, 0, 16, nullptr, 0); }),
                        "a write to self accepted");
  UCCL_EP_CHECK_RUNTIME(value_error([&] { s.t->post_write(2, 1, 0, 0, 16, nullptr, 0); }),
                        "pipe 2 of 2 accepted");
  UCCL_EP_CHECK_RUNTIME(
      value_error([&] { s.t->post_write(0, 1, 0, s.rdma_buffer.size(), 1, nullptr, 0); }),
      "a write beyond the peer's RDMA buffer accepted");
}

void fence(Side& s) {
  Driver d(*s.t, s.rank, 2, kTimeout);
  if (s.rank == 0) {
    check_argument_errors(s);
    testing::fill_pattern(s.rdma_buffer.data(), s.rdma_buffer.size(), 99, 0);
    for (int i = 0; i < kFenceWrites; ++i)
      d.write(i % 2, 1, i * kFenceArea, i * kFenceArea, kFenceArea - 16 * (i % 7));
    d.wait_all("fence");
    d.atomic_add(0, 1, kFenceSlot, kFenceWrites);
  } else {
    d.wait_until([&] { return load_signal(s.signals.data(), kFenceSlot) == kFenceWrites; },
                 [] { return "for the fence atomic"; });
    for (int i = 0; i < kFenceWrites; ++i) {
      const uint64_t n = kFenceArea - 16 * (i % 7);
      const int64_t bad =
          testing::first_mismatch(s.rdma_buffer.data() + i * kFenceArea, n, 99, i * kFenceArea);
      UCCL_EP_CHECK_RUNTIME(bad < 0, "write ", i, " incomplete (byte ", bad,
                            ") although its sender saw it complete before the atomic");
    }
  }
  d.handshake(kFenceHandshake, s.signals.data());
  s.boot->barrier();
}

std::unique_ptr<Side> open_fence(int rank, uint16_t port, TcpListener l, const Params& p) {
  return open_side(rank, port, std::move(l), p, kFenceWrites * kFenceArea, 2);
}

// ---- Killed peer: rank 1 only provides progress until it is killed.
//
// libfabric's shm provider (1.17) guards each process's command queue with a spin lock that
// lives in that process's shared-memory region, and takes it in progress and in every post to
// the process. A process killed while holding it leaves its peers spinning inside fi_* calls
// for ever, where no deadline of ours can reach. With shm the victim therefore leaves libfabric
// first (it stops polling after kKillAfter signals and says so over the bootstrap) and is killed
// after; other providers are killed in the middle of progress.
constexpr int64_t kKillAfter = 200;

bool leaves_libfabric_before_kill(const std::string& provider) {
  return provider == "shm";
}

void serve_until_killed(Side& s) {
  Driver d(*s.t, s.rank, 2, kTimeout);
  if (!leaves_libfabric_before_kill(s.provider)) {
    d.wait_until([] { return false; }, [] { return "to be killed by rank 0"; });
    return;
  }
  d.wait_until([&] { return load_signal(s.signals.data(), 0) >= kKillAfter; },
               [] { return "for the signals before the kill"; });
  s.boot->barrier();  // out of libfabric, and it stays out: rank 0 kills this process now
  std::this_thread::sleep_for(std::chrono::duration<double>(kTimeout));
  throw Error(ErrorKind::kTimeout, str_cat("rank 1: not killed within ", kTimeout, " s"));
}

std::unique_ptr<Side> open_kill(int rank, uint16_t port, TcpListener l, const Params& p) {
  return open_side(rank, port, std::move(l), p, 1 << 20, 4);
}

// ---- Harness.

using Opener = std::unique_ptr<Side> (*)(int, uint16_t, TcpListener, const Params&);

struct Scenario {
  const char* name;
  Opener open;
  void (*run)(Side&);
};

const Scenario kScenarios[] = {
    {"traffic", open_traffic, traffic},
    {"fence", open_fence, fence},
    {"kill", open_kill, serve_until_killed},
};

const Scenario& find_scenario(const std::string& name) {
  for (const Scenario& s : kScenarios)
    if (name == s.name) return s;
  throw Error(ErrorKind::kValue, str_cat("unknown scenario ", name));
}

// Runs `scenario` as rank 0 here and rank 1 in a child process; `rank0` replaces the scenario's
// own body on rank 0 when given.
void run_pair(const std::string& scenario, const Params& p,
              const std::function<void(Side&, uccl::ep::testing::ChildProcess&)>& rank0 = {}) {
  TcpListener listener = TcpListener::bind("127.0.0.1", 0);
  const uint16_t port = listener.port();
  auto child = uccl::ep::testing::ChildProcess::spawn(
      {"--child=" + scenario, "--port=" + std::to_string(port), "--provider=" + p.provider,
       "--path=" + path_arg(p.path)});
  const Scenario& sc = find_scenario(scenario);
  try {
    std::unique_ptr<Side> side = sc.open(0, port, std::move(listener), p);
    if (rank0) {
      rank0(*side, child);
    } else {
      sc.run(*side);
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << "rank 0: " << e.what();
  }
  const auto exit = child.wait(kTimeout);
  if (!rank0) {
    EXPECT_TRUE(exit.ok()) << "rank 1: " << exit.describe();
  }
}

// Empty when `provider` works here; else why the test cannot run.
std::string unavailable(const std::string& provider) {
  if (provider_available(provider)) return "";
  const std::string any = first_working_provider_name();
  if (any.empty()) return "no libfabric provider works on this machine";
  ADD_FAILURE() << provider << " is unavailable although " << any << " works";
  return "failed";
}

class TwoProcesses : public ::testing::TestWithParam<Params> {};

TEST_P(TwoProcesses, TrafficIsExactAndSignalsFollowTheirData) {
  if (const std::string why = unavailable(GetParam().provider); !why.empty()) GTEST_SKIP() << why;
  run_pair("traffic", GetParam());
}

TEST_P(TwoProcesses, CompletionMeansDelivered) {
  if (const std::string why = unavailable(GetParam().provider); !why.empty()) GTEST_SKIP() << why;
  run_pair("fence", GetParam());
}

TEST_P(TwoProcesses, KilledPeerEndsInAnErrorWithinTheDeadline) {
  if (const std::string why = unavailable(GetParam().provider); !why.empty()) GTEST_SKIP() << why;
  constexpr double kSurvivorTimeout = 3;
  run_pair("kill", GetParam(), [&](Side& s, uccl::ep::testing::ChildProcess& child) {
    Driver d(*s.t, 0, 2, kSurvivorTimeout);
    const Signal sig{0, 1};
    std::string error;
    Clock::time_point killed{};
    try {
      for (int i = 0;; ++i) {
        d.write(0, 1, 0, (i % 64) * 7168, 7168, &sig);
        d.progress();
        if (d.completed() >= kKillAfter && killed == Clock::time_point{}) {
          if (leaves_libfabric_before_kill(s.provider)) s.boot->barrier();
          child.kill();  // SIGKILL mid-stream
          killed = Clock::now();
        }
        if (killed != Clock::time_point{} && i % 64 == 0) d.wait_all("after the peer was killed");
      }
    } catch (const Error& e) {
      error = e.what();
    }
    ASSERT_NE(killed, Clock::time_point{}) << "failed before the kill: " << error;
    const double secs = std::chrono::duration<double>(Clock::now() - killed).count();
    std::printf("[ survivor ] error %.2f s after the kill: %s\n", secs, error.c_str());
    EXPECT_LT(secs, kSurvivorTimeout + 2);
    EXPECT_NE(error.find("peer 1"), std::string::npos) << error;
  });
}

INSTANTIATE_TEST_SUITE_P(Loopback, TwoProcesses,
                         ::testing::Values(Params{"tcp;ofi_rxm", SignalPath::kRemoteCqData},
                                           Params{"tcp;ofi_rxm", SignalPath::kNativeAtomic},
                                           Params{"shm", SignalPath::kRemoteCqData}),
                         [](const ::testing::TestParamInfo<Params>& info) {
                           std::string name = info.param.provider == "tcp;ofi_rxm"
                                                  ? "tcp_rxm"
                                                  : info.param.provider;
                           return name + "_" + path_arg(info.param.path);
                         });

TEST(LibfabricTransport, SingleRankCapabilitiesAndRefusals) {
  const std::string provider = first_working_provider_name();
  if (provider.empty()) GTEST_SKIP() << "no libfabric provider works on this machine";
  LibfabricTransport t(TransportOptions{.rank = 0, .num_ranks = 1, .provider = provider});
  const Capabilities c = t.capabilities();
  EXPECT_EQ(c.name, "libfabric:" + provider);
  EXPECT_GE(c.immediate_bytes, 4);
  EXPECT_TRUE(c.target_progress);
  EXPECT_FALSE(c.ordered_delivery);
  std::vector<uint8_t> data(4096);
  std::vector<int64_t> sig(4);
  if (!c.device_memory) {
    try {
      t.register_regions({data.data(), data.size(), /*device=*/true}, {sig.data(), 32});
      ADD_FAILURE() << "device memory accepted without FI_HMEM";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cannot register GPU memory"), std::string::npos)
          << e.what();
    }
  }
  t.register_regions({data.data(), data.size()}, {sig.data(), 32});
  t.connect({t.local_address()});
  Completion out[4];
  EXPECT_EQ(t.poll(out, 4), 0);
}

// Whether `blob` holds a sockaddr_in of 127.0.0.1 (family AF_INET, any port).
bool holds_loopback_ipv4(const std::vector<uint8_t>& blob) {
  const auto family = static_cast<uint16_t>(AF_INET);
  for (size_t i = 0; i + 8 <= blob.size(); ++i) {
    if (blob[i] == (family & 0xff) && blob[i + 1] == (family >> 8) && blob[i + 4] == 127 &&
        blob[i + 5] == 0 && blob[i + 6] == 0 && blob[i + 7] == 1)
      return true;
  }
  return false;
}

// Child --child=iface: in a fresh process (libfabric not yet initialized), a tcp;ofi_rxm
// transport with NetworkHints::interface "lo" exports FI_TCP_IFACE=lo and binds lo's address.
int run_interface_child() {
  unsetenv("FI_TCP_IFACE");
  LibfabricTransport t(TransportOptions{
      .rank = 0, .num_ranks = 1, .provider = "tcp;ofi_rxm", .network = {.interface = "lo"}});
  const char* iface = std::getenv("FI_TCP_IFACE");
  if (iface == nullptr || std::string(iface) != "lo") {
    std::fprintf(stderr, "FI_TCP_IFACE is '%s', expected 'lo'\n", iface ? iface : "<unset>");
    return 1;
  }
  std::vector<uint8_t> data(4096);
  std::vector<int64_t> sig(4);
  t.register_regions({data.data(), data.size()}, {sig.data(), 32});
  if (!holds_loopback_ipv4(t.local_address())) {
    std::fprintf(stderr, "the endpoint's address is not on lo (127.0.0.1)\n");
    return 1;
  }
  return 0;
}

// UCCL_SOCKET_IFNAME (NetworkHints::interface) reaches the tcp provider as FI_TCP_IFACE before
// the transport's fi_getinfo, so the endpoint binds lo's address (checked in a fresh process:
// a provider may read its variables only when libfabric initializes).
TEST(LibfabricTransport, InterfaceHintSelectsTheTcpInterface) {
  if (!provider_available("tcp;ofi_rxm")) GTEST_SKIP() << "tcp;ofi_rxm is not available";
  auto child = uccl::ep::testing::ChildProcess::spawn({"--child=iface"});
  const auto exit = child.wait(kTimeout);
  EXPECT_TRUE(exit.ok()) << "child: " << exit.describe();
}

TEST(LibfabricTransport, NativeAtomicsAreRefusedWhereKnownBroken) {
  if (!provider_available("shm")) GTEST_SKIP() << "shm is not available";
  try {
    LibfabricTransport t(
        TransportOptions{.provider = "shm", .signal_path = SignalPath::kNativeAtomic});
    // A libfabric newer than 1.17 is not known to be broken: then native must work.
    EXPECT_EQ(t.signal_path(), SignalPath::kNativeAtomic);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("applies the operand of a later fi_atomic"),
              std::string::npos)
        << e.what();
  }
  // Auto never picks native atomics on a software-atomics provider.
  LibfabricTransport t(TransportOptions{.provider = "shm"});
  EXPECT_EQ(t.signal_path(), SignalPath::kRemoteCqData);
}

TEST(LibfabricTransport, UnknownProviderListsWhatWasTried) {
  try {
    LibfabricTransport t(TransportOptions{.provider = "nosuchprov"});
    FAIL() << "a provider that does not exist was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kRuntime);
    EXPECT_NE(std::string(e.what()).find("nosuchprov"), std::string::npos) << e.what();
  }
}

// libfabric.so.1 is loaded at run time: a missing library is an error that names it and says
// what to do, and the installed one provides every function the transport calls.
TEST(LibfabricApi, MissingLibraryIsAClearError) {
  try {
    load_api("libuccl_ep_no_such_fabric.so.1");
    FAIL() << "a library that does not exist was loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kRuntime);
    const std::string what = e.what();
    for (const char* needle :
         {"libfabric transport unavailable", "libuccl_ep_no_such_fabric.so.1", "LD_LIBRARY_PATH"})
      EXPECT_NE(what.find(needle), std::string::npos) << what;
  }
}

TEST(LibfabricApi, InstalledLibraryProvidesEveryFunction) {
  const Api& a = api();
  ASSERT_NE(a.version, nullptr);
  EXPECT_GE(FI_MAJOR(a.version()), 1u);
  fi_info* info = a.dupinfo(nullptr);  // fi_allocinfo
  ASSERT_NE(info, nullptr);
  EXPECT_NE(info->ep_attr, nullptr);
  a.freeinfo(info);
  EXPECT_STRNE(a.strerror(FI_EAGAIN), "");
  EXPECT_NE(a.getinfo, nullptr);
  EXPECT_NE(a.fabric, nullptr);
}

// Child: rank 1 of a scenario.
int run_child(int argc, char** argv) {
  using uccl::ep::testing::arg_value;
  const std::string scenario = arg_value(argc, argv, "child");
  const Params p{arg_value(argc, argv, "provider"), arg_value(argc, argv, "path") == "native"
                                                        ? SignalPath::kNativeAtomic
                                                        : SignalPath::kRemoteCqData};
  try {
    const Scenario& sc = find_scenario(scenario);
    std::unique_ptr<Side> side =
        sc.open(1, static_cast<uint16_t>(std::stoi(arg_value(argc, argv, "port"))), {}, p);
    sc.run(*side);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank 1 (%s, %s): %s\n", scenario.c_str(), p.provider.c_str(), e.what());
    return 1;
  }
}

}  // namespace
}  // namespace uccl::ep::transport::libfabric

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);  // a killed peer must surface as an error, not end this process
  const std::string child = uccl::ep::testing::arg_value(argc, argv, "child");
  if (child == "iface") return uccl::ep::transport::libfabric::run_interface_child();
  if (!child.empty()) return uccl::ep::transport::libfabric::run_child(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
