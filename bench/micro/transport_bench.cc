// Transport throughput: 7 KiB and 1 MiB writes through the Transport interface (each carrying
// a fused signal) versus a raw fi_writedata loop on the same endpoint, measured in the same run
// between two processes on loopback (this binary re-executes itself as rank 1).
//
//   uccl_ep_transport_bench [--provider=NAME] [--path=auto|cqdata|native]
//                           [--scale=1.0] [--repeat=2] [--json=PATH] [--label=TEXT]
//
// The provider defaults to UCCL_EP_FI_PROVIDER (auto: the first that works); UCCL_EP_LOG_LEVEL
// applies. Rank 0 times from its first post to its last completion (FI_DELIVERY_COMPLETE for both
// loops); rank 1 only provides progress and checks that every signal arrived. Each
// measurement is repeated (interleaved) and the best of each kind is reported.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bootstrap/tcp_bootstrap.h"
#include "bootstrap/testing/child_process.h"
#include "common/env.h"
#include "common/error.h"
#include "common/log.h"
#include "transport/libfabric/libfabric_transport.h"
#include "transport/testing/driver.h"

namespace uccl::ep::bench {
namespace {

using transport::Signal;
using transport::SignalPath;
using transport::testing::Driver;
using transport::testing::load_signal;
using uccl::ep::testing::arg_value;

constexpr double kTimeout = 120;
constexpr uint32_t kDataSlot = 0, kHandshakeSlot = 1, kNumSlots = 2;

struct Case {
  uint64_t bytes;
  uint64_t iterations;
  int window;
};

struct Result {
  Case c;
  double transport_secs = 1e30, raw_secs = 1e30;
  double gbps(double secs) const { return c.bytes * c.iterations / secs / 1e9; }
};

struct Args {
  std::string provider, path = "cqdata", json, label;
  double scale = 1.0;
  int repeat = 2;
};

SignalPath parse_path(const std::string& p) {
  if (p == "native") return SignalPath::kNativeAtomic;
  if (p == "auto") return SignalPath::kAuto;
  return SignalPath::kRemoteCqData;
}

std::vector<Case> cases(double scale) {
  auto n = [scale](double base) {
    return std::max<uint64_t>(16, static_cast<uint64_t>(base * scale));
  };
  return {{7168, n(50000), 64}, {1 << 20, n(800), 8}};
}

// Transport writes with fused signals, `window` in flight; returns seconds on rank 0.
double transport_round(Driver& d, const Case& c) {
  const Signal sig{kDataSlot, 1};
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < c.iterations; ++i) {
    while (d.posted() - d.completed() >= static_cast<uint64_t>(c.window)) d.progress();
    d.write(0, 1, 0, 0, c.bytes, &sig);
  }
  d.wait_all("transport round");
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One (transport, raw) pair of measurements; both ranks call it.
void measure(int rank, transport::libfabric::LibfabricTransport& t, Driver& d,
             bootstrap::TcpBootstrap& boot, const int64_t* signals, Result& r,
             int64_t& expected_signals) {
  if (rank == 0) r.transport_secs = std::min(r.transport_secs, transport_round(d, r.c));
  expected_signals += static_cast<int64_t>(r.c.iterations);
  d.handshake(kHandshakeSlot, signals);  // rank 1 polls here until rank 0 is done
  UCCL_EP_CHECK_RUNTIME(rank == 0 || load_signal(signals, kDataSlot) == expected_signals,
                        "rank 1 saw ", load_signal(signals, kDataSlot), " signals, expected ",
                        expected_signals);
  boot.barrier();
  if (rank == 0)
    r.raw_secs = std::min(r.raw_secs,
                          t.raw_writedata_loop(1, r.c.bytes, r.c.iterations, r.c.window, kTimeout));
  d.handshake(kHandshakeSlot, signals);
  boot.barrier();
}

void write_json(const Args& a, const std::string& provider, const std::vector<Result>& results) {
  FILE* f = std::fopen(a.json.c_str(), "w");
  UCCL_EP_CHECK_RUNTIME(f != nullptr, "cannot write ", a.json);
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  std::fprintf(f, "{\n  \"bench\": \"transport\",\n  \"provider\": \"%s\",\n", provider.c_str());
  std::fprintf(f, "  \"signal_path\": \"%s\",\n  \"host\": \"%s\",\n  \"cpus\": %ld,\n",
               a.path.c_str(), host, sysconf(_SC_NPROCESSORS_ONLN));
  std::fprintf(f, "  \"label\": \"%s\",\n  \"completion\": \"FI_DELIVERY_COMPLETE\",\n",
               a.label.c_str());
  std::fprintf(f, "  \"results\": [\n");
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    std::fprintf(f,
                 "    {\"bytes\": %llu, \"iterations\": %llu, \"window\": %d, "
                 "\"transport_gbps\": %.4f, \"raw_gbps\": %.4f, \"ratio\": %.4f, "
                 "\"transport_mops\": %.4f, \"raw_mops\": %.4f}%s\n",
                 static_cast<unsigned long long>(r.c.bytes),
                 static_cast<unsigned long long>(r.c.iterations), r.c.window,
                 r.gbps(r.transport_secs), r.gbps(r.raw_secs), r.raw_secs / r.transport_secs,
                 r.c.iterations / r.transport_secs / 1e6, r.c.iterations / r.raw_secs / 1e6,
                 i + 1 < results.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
}

int run_rank(int rank, uint16_t port, bootstrap::TcpListener listener, const Args& a) {
  bootstrap::TcpBootstrap boot(
      {.rank = rank, .num_ranks = 2, .port = port, .timeout_secs = kTimeout}, std::move(listener));
  const std::vector<Case> cs = cases(a.scale);
  std::vector<uint8_t> data(2 << 20, static_cast<uint8_t>(rank + 1));
  std::vector<int64_t> signals(kNumSlots, 0);
  transport::libfabric::LibfabricTransport t({.rank = rank,
                                              .num_ranks = 2,
                                              .max_inflight = 256,
                                              .provider = a.provider,
                                              .signal_path = parse_path(a.path),
                                              .timeout_secs = kTimeout});
  t.register_regions({data.data(), data.size()}, {signals.data(), kNumSlots * 8});
  t.connect(boot.all_gather(t.local_address()));
  Driver d(t, rank, 2, kTimeout);
  std::vector<Result> results;
  int64_t expected_signals = 0;
  for (const Case& c : cs) {
    Result warm{Case{c.bytes, std::max<uint64_t>(c.iterations / 10, 16), c.window}};
    measure(rank, t, d, boot, signals.data(), warm, expected_signals);  // first touch, connect
    Result r{c};
    for (int k = 0; k < a.repeat; ++k)
      measure(rank, t, d, boot, signals.data(), r, expected_signals);
    results.push_back(r);
  }
  if (rank != 0) return 0;
  std::printf("provider %s, signals via %s, %d repeats (best), %ld CPUs%s%s\n",
              t.provider().c_str(), a.path.c_str(), a.repeat, sysconf(_SC_NPROCESSORS_ONLN),
              a.label.empty() ? "" : ", ", a.label.c_str());
  std::printf("%10s %8s %6s %16s %16s %8s\n", "bytes", "iters", "window", "transport GB/s",
              "raw GB/s", "ratio");
  for (const Result& r : results) {
    std::printf("%10llu %8llu %6d %16.3f %16.3f %8.3f\n",
                static_cast<unsigned long long>(r.c.bytes),
                static_cast<unsigned long long>(r.c.iterations), r.c.window,
                r.gbps(r.transport_secs), r.gbps(r.raw_secs), r.raw_secs / r.transport_secs);
  }
  if (!a.json.empty()) write_json(a, t.provider(), results);
  return 0;
}

int main_impl(int argc, char** argv) {
  const EnvSettings env = read_env_settings();
  set_log_level(env.log_level);
  Args a;
  a.provider = env.fi_provider;
  if (const std::string v = arg_value(argc, argv, "provider"); !v.empty()) a.provider = v;
  if (const std::string v = arg_value(argc, argv, "path"); !v.empty()) a.path = v;
  if (const std::string v = arg_value(argc, argv, "scale"); !v.empty()) a.scale = std::stod(v);
  if (const std::string v = arg_value(argc, argv, "repeat"); !v.empty()) a.repeat = std::stoi(v);
  a.json = arg_value(argc, argv, "json");
  a.label = arg_value(argc, argv, "label");
  if (arg_value(argc, argv, "child") == "1")
    return run_rank(1, static_cast<uint16_t>(std::stoi(arg_value(argc, argv, "port"))), {}, a);
  bootstrap::TcpListener listener = bootstrap::TcpListener::bind("127.0.0.1", 0);
  const uint16_t port = listener.port();
  std::vector<std::string> child_args = {"--child=1", "--port=" + std::to_string(port)};
  for (int i = 1; i < argc; ++i) child_args.push_back(argv[i]);
  auto child = uccl::ep::testing::ChildProcess::spawn(child_args);
  const int rc = run_rank(0, port, std::move(listener), a);
  const auto exit = child.wait(kTimeout);
  if (!exit.ok()) {
    std::fprintf(stderr, "rank 1: %s\n", exit.describe().c_str());
    return 1;
  }
  return rc;
}

}  // namespace
}  // namespace uccl::ep::bench

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  try {
    return uccl::ep::bench::main_impl(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "transport_bench: %s\n", e.what());
    return 1;
  }
}
