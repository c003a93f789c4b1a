// Setting a proxy up: environment variables, option checks, CPU placement from a fake sysfs,
// the null transport, and the session's address exchange refusing mismatched ranks.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "common/env.h"
#include "common/error.h"
#include "proxy/cpu_affinity.h"
#include "proxy/proxy.h"
#include "proxy/session.h"
#include "queue/host_producer.h"
#include "transport/null/null_transport.h"

namespace uccl::ep::proxy {
namespace {

std::string value_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kValue) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

TEST(ProxyEnv, ParsesTheNewVariables) {
  EXPECT_EQ(parse_int_var("UCCL_EP_NUM_PROXY_THREADS", "4", 1, 16), 4);
  for (const char* bad : {"", "0", "17", "-1", "2x", " 2", "99999999999999999999999"})
    EXPECT_NE(value_error([&] {
                parse_int_var("UCCL_EP_NUM_PROXY_THREADS", bad, 1, 16);
              }).find("UCCL_EP_NUM_PROXY_THREADS='"),
              std::string::npos)
        << bad;
  EXPECT_EQ(parse_max_inflight_bytes("1572864"), 1572864u);
  EXPECT_EQ(parse_max_inflight_bytes("18446744073709551615"), UINT64_MAX);
  for (const char* bad : {"0", "18446744073709551616", "1.5M", "-5", "", "4GiB"})
    EXPECT_NE(
        value_error([&] { parse_max_inflight_bytes(bad); }).find("UCCL_IB_MAX_INFLIGHT_BYTES"),
        std::string::npos)
        << bad;
  EXPECT_TRUE(parse_disable_cpu_affinity("1"));
  EXPECT_FALSE(parse_disable_cpu_affinity("0"));
  value_error([] { parse_disable_cpu_affinity("yes"); });
  EXPECT_EQ(parse_transport_name("null"), "null");
}

TEST(ProxyEnv, ReadsDefaultsAndOverridesIntoProxyOptions) {
  const char* vars[] = {"UCCL_EP_NUM_PROXY_THREADS", "UCCL_IB_MAX_INFLIGHT_NORMAL",
                        "UCCL_IB_MAX_INFLIGHT_LOW_LATENCY", "UCCL_IB_MAX_INFLIGHT_BYTES",
                        "UCCL_EP_DISABLE_CPU_AFFINITY"};
  for (const char* v : vars) unsetenv(v);
  ProxyOptions o = proxy_options_from_env(read_env_settings());
  EXPECT_EQ(o.num_threads, kDefaultNumThreads);
  EXPECT_EQ(o.max_inflight_normal, 8);
  EXPECT_EQ(o.max_inflight_low_latency, 32);
  EXPECT_EQ(o.max_inflight_bytes, UINT64_MAX);
  EXPECT_TRUE(o.pin_threads);
  setenv("UCCL_EP_NUM_PROXY_THREADS", "3", 1);
  setenv("UCCL_IB_MAX_INFLIGHT_NORMAL", "1", 1);
  setenv("UCCL_IB_MAX_INFLIGHT_LOW_LATENCY", "64", 1);
  setenv("UCCL_IB_MAX_INFLIGHT_BYTES", "8589934592", 1);  // 8 GiB: beyond 32 bits
  setenv("UCCL_EP_DISABLE_CPU_AFFINITY", "1", 1);
  o = proxy_options_from_env(read_env_settings());
  EXPECT_EQ(o.num_threads, 3);
  EXPECT_EQ(o.max_inflight_normal, 1);
  EXPECT_EQ(o.max_inflight_low_latency, 64);
  EXPECT_EQ(o.max_inflight_bytes, 8589934592ull);
  EXPECT_FALSE(o.pin_threads);
  setenv("UCCL_IB_MAX_INFLIGHT_NORMAL", "0", 1);
  EXPECT_NE(value_error([] { read_env_settings(); }).find("UCCL_IB_MAX_INFLIGHT_NORMAL='0'"),
            std::string::npos);
  for (const char* v : vars) unsetenv(v);
}

// UCCL-EP's network variables reach every thread's transport (also in the normal and the
// low-latency mode alike), and the in-flight limit follows the session's mode.
TEST(ProxyEnv, NetworkVariablesReachEveryTransportOfEveryMode) {
  const char* vars[] = {
      "UCCL_SOCKET_IFNAME", "UCCL_IB_GID_INDEX",           "UCCL_IB_SL",
      "UCCL_IB_TC",         "UCCL_IB_MAX_INFLIGHT_NORMAL", "UCCL_IB_MAX_INFLIGHT_LOW_LATENCY"};
  setenv("UCCL_SOCKET_IFNAME", "lo", 1);
  setenv("UCCL_IB_GID_INDEX", "3", 1);
  setenv("UCCL_IB_SL", "5", 1);
  setenv("UCCL_IB_TC", "104", 1);
  setenv("UCCL_IB_MAX_INFLIGHT_NORMAL", "2", 1);
  setenv("UCCL_IB_MAX_INFLIGHT_LOW_LATENCY", "7", 1);
  const EnvSettings env = read_env_settings();
  for (const char* v : vars) unsetenv(v);
  const transport::NetworkHints n = network_hints_from_env(env);
  EXPECT_EQ(n.interface, "lo");
  EXPECT_EQ(n.gid_index, 3);
  EXPECT_EQ(n.service_level, 5);
  EXPECT_EQ(n.traffic_class, 104);
  EXPECT_EQ(network_hints_from_env(EnvSettings{}).gid_index, -1);

  for (bool low_latency : {false, true}) {
    std::vector<transport::TransportOptions> seen;
    std::vector<uint8_t> rdma(4096);
    SessionOptions s;
    s.proxy = proxy_options_from_env(env);
    s.proxy.num_ranks = 2;
    s.proxy.num_threads = 2;
    s.proxy.low_latency_mode = low_latency;
    s.proxy.pin_threads = false;
    s.transport = "null";
    s.network = n;
    s.num_queues = 4;
    s.queue_capacity = 64;
    s.rdma_buffer = transport::Region{rdma.data(), rdma.size(), false, ""};
    s.make_transport = [&](int, const std::string& name, const transport::TransportOptions& o) {
      seen.push_back(o);
      return transport::make_transport(name, o);
    };
    ProxySession session(s, queue::make_host_queue_allocator());
    ASSERT_EQ(seen.size(), 2u);
    for (const auto& o : seen) {
      EXPECT_EQ(o.network.interface, "lo");
      EXPECT_EQ(o.network.gid_index, 3);
      EXPECT_EQ(o.network.service_level, 5);
      EXPECT_EQ(o.network.traffic_class, 104);
      EXPECT_EQ(o.max_inflight, 2 * (low_latency ? 7 : 2)) << "2 queues per thread";
    }
  }
}

TEST(ProxyOptionsCheck, NamesTheBadField) {
  ProxyOptions o;
  o.num_threads = 0;
  EXPECT_NE(value_error([&] { validate_options(o); }).find("num_threads=0"), std::string::npos);
  o = ProxyOptions{};
  o.rank = 2;
  o.num_ranks = 2;
  EXPECT_NE(value_error([&] { validate_options(o); }).find("rank=2"), std::string::npos);
  o = ProxyOptions{};
  o.num_barrier_groups = 1;
  EXPECT_NE(value_error([&] { validate_options(o); }).find("signal region"), std::string::npos);
  o = ProxyOptions{};
  o.max_inflight_bytes = 0;
  value_error([&] { validate_options(o); });
}

TEST(ProxyQueueMapping, EveryQueueHasOneThreadAndPipe) {
  EXPECT_EQ(thread_of_queue(5, 2), 1);
  EXPECT_EQ(num_queues_of_thread(5, 2, 0), 3u);
  EXPECT_EQ(num_queues_of_thread(5, 2, 1), 2u);
  EXPECT_EQ(num_pipes_of_thread(5, 2, 0), 3);
  EXPECT_EQ(pipe_of_queue(4, 2, 3), 2);
  EXPECT_EQ(num_pipes_of_thread(5000, 1, 0), transport::kMaxPipes);
  ProxyOptions o;
  o.num_threads = 2;
  o.low_latency_mode = true;
  EXPECT_EQ(max_inflight_of_thread(o, 5, 0), 3 * 32);
}

TEST(CpuAffinity, ParsesCpuLists) {
  EXPECT_EQ(parse_cpu_list("0-3,8,10-11"), (std::vector<int>{0, 1, 2, 3, 8, 10, 11}));
  EXPECT_EQ(parse_cpu_list("5"), (std::vector<int>{5}));
  for (const char* bad : {"3-1", "a", "1,", "1;2", "-2"}) value_error([&] { parse_cpu_list(bad); });
}

// A fake sysfs: GPU 0000:3b:00.0 on node 1 (CPUs 4-7, SMT pairs 4/6 and 5/7).
class FakeSysfs : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() / ("uccl_sysfs_" + std::to_string(getpid()));
    write("bus/pci/devices/0000:3b:00.0/numa_node", "1\n");
    write("bus/pci/devices/0000:3c:00.0/numa_node", "-1\n");
    write("devices/system/node/node1/cpulist", "4-7\n");
    for (int c = 4; c < 8; ++c)
      write(str_cat("devices/system/cpu/cpu", c, "/topology/thread_siblings_list"),
            c % 2 == 0 ? "4,6\n" : "5,7\n");
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  void write(const std::string& rel, const std::string& text) {
    const auto p = root_ / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  std::filesystem::path root_;
};

TEST_F(FakeSysfs, PicksCoresOfTheGpusNumaNodeFirst) {
  const std::vector<int> allowed = {0, 1, 2, 3, 4, 5, 6, 7};
  CpuPlan p = plan_proxy_cpus(root_.string(), "0000:3B:00.0", 0, 2, allowed);
  EXPECT_EQ(p.numa_node, 1);
  EXPECT_EQ(p.cpus, (std::vector<int>{4, 5}));  // physical cores before SMT siblings
  EXPECT_NE(p.summary.find("NUMA node 1"), std::string::npos) << p.summary;
  p = plan_proxy_cpus(root_.string(), "0000:3b:00.0", 1, 2, allowed);
  EXPECT_EQ(p.cpus, (std::vector<int>{6, 7}));  // the second GPU of the node: distinct CPUs
  p = plan_proxy_cpus(root_.string(), "0000:3b:00.0", 0, 2, {0, 1, 5});
  EXPECT_EQ(p.cpus, (std::vector<int>{5, 5}));  // only CPU 5 of the node is allowed
  p = plan_proxy_cpus(root_.string(), "0000:3c:00.0", 0, 2, {2, 3});
  EXPECT_EQ(p.numa_node, -1);
  EXPECT_EQ(p.cpus, (std::vector<int>{2, 3}));  // unknown node: any allowed CPU
  EXPECT_TRUE(plan_proxy_cpus(root_.string(), "", 0, 2, {}).cpus.empty());
}

TEST(CpuAffinity, PinsTheCallingThread) {
  const std::vector<int> allowed = allowed_cpus();
  ASSERT_FALSE(allowed.empty());
  std::string why;
  EXPECT_TRUE(pin_current_thread(allowed.back(), &why)) << why;
  EXPECT_FALSE(pin_current_thread(-1, &why));
}

TEST(NullTransport, CompletesEverythingInOrderAndCounts) {
  auto t = transport::make_transport(
      "null",
      transport::TransportOptions{.rank = 0, .num_ranks = 2, .num_pipes = 2, .max_inflight = 3});
  const transport::Capabilities caps = t->capabilities();
  EXPECT_EQ(caps.name, "null");
  EXPECT_TRUE(caps.ordered_delivery);
  t->register_regions({}, {});
  auto peer = transport::make_transport(
      "null", transport::TransportOptions{.rank = 1, .num_ranks = 2, .num_pipes = 2});
  t->connect({t->local_address(), peer->local_address()});
  const transport::Signal sig{3, 1000};
  EXPECT_EQ(t->post_write(0, 1, 0, 0, 4096, &sig, 11), transport::PostStatus::kPosted);
  EXPECT_EQ(t->post_atomic_add(1, 1, 2, -5, 12), transport::PostStatus::kPosted);
  EXPECT_EQ(t->post_write(1, 1, 0, 0, 16, nullptr, 13), transport::PostStatus::kPosted);
  EXPECT_EQ(t->post_write(1, 1, 0, 0, 16, nullptr, 14), transport::PostStatus::kRetry);
  value_error([&] { t->post_write(2, 1, 0, 0, 16, nullptr, 15); });
  value_error([&] { t->post_write(0, 0, 0, 0, 16, nullptr, 15); });
  transport::Completion out[4];
  ASSERT_EQ(t->poll(out, 2), 2);
  EXPECT_EQ(out[0].id, 11u);
  EXPECT_EQ(out[1].id, 12u);
  ASSERT_EQ(t->poll(out, 4), 1);
  EXPECT_EQ(out[0].id, 13u);
  EXPECT_TRUE(out[0].ok);
  const auto& s = static_cast<transport::null::NullTransport&>(*t).stats();
  EXPECT_EQ(s.writes, 2u);
  EXPECT_EQ(s.atomics, 1u);
  EXPECT_EQ(s.signals, 1u);
  EXPECT_EQ(s.bytes, 4112u);
}

SessionOptions null_session(int rank, int threads, uint32_t queues,
                            std::vector<uint8_t>& rdma_buffer) {
  SessionOptions s;
  s.proxy.rank = rank;
  s.proxy.num_ranks = 2;
  s.proxy.num_threads = threads;
  s.proxy.pin_threads = false;
  s.transport = "null";
  s.num_queues = queues;
  s.queue_capacity = 64;
  s.rdma_buffer = transport::Region{rdma_buffer.data(), rdma_buffer.size(), false, ""};
  return s;
}

TEST(ProxySessionSetup, RefusesRanksThatDisagree) {
  std::vector<uint8_t> d0(4096), d1(4096);
  ProxySession a(null_session(0, 2, 4, d0), queue::make_host_queue_allocator());
  ProxySession b(null_session(1, 1, 4, d1), queue::make_host_queue_allocator());
  const std::string e = value_error([&] { a.connect({a.local_address(), b.local_address()}); });
  EXPECT_NE(e.find("rank 1 runs 1 proxy thread(s) over 4 queue(s), rank 0 2 over 4"),
            std::string::npos)
      << e;
  value_error([&] { a.connect({a.local_address()}); });
  value_error([&] { a.start(); });  // before connect
  std::vector<uint8_t> garbage = a.local_address();
  garbage[0] ^= 1;
  EXPECT_NE(value_error([&] { a.connect({garbage, b.local_address()}); }).find("bad magic"),
            std::string::npos);
}

TEST(ProxySessionSetup, ClampsThreadsToQueuesAndRunsOverTheNullTransport) {
  std::vector<uint8_t> d0(4096), d1(4096);
  ProxySession a(null_session(0, 4, 2, d0), queue::make_host_queue_allocator());
  ProxySession b(null_session(1, 4, 2, d1), queue::make_host_queue_allocator());
  EXPECT_EQ(a.num_threads(), 2);
  a.connect({a.local_address(), b.local_address()});
  a.start();
  queue::HostProducer p(a.queues().host_producer_handle(1), std::chrono::seconds(20));
  for (int i = 0; i < 100; ++i) p.push(protocol::encode_write_signal(1, 0, 0, 64, 1, 5));
  p.push(protocol::encode_fence(1));
  p.wait_fence(1);
  EXPECT_EQ(a.proxy()->total_stats().posted, 100u);
  EXPECT_EQ(a.proxy()->total_stats().completed, 100u);
  p.push(protocol::encode_barrier(0, 1));  // rank 1 never arrives
  p.push(protocol::encode_fence(2));
  const StopResult r = a.stop(StopMode::kAbandon);
  EXPECT_EQ(r.status, StopStatus::kAbandoned) << r.message;
}

TEST(ProxySetup, RefusesFewerQueuesThanThreadsAndWrongTransportCounts) {
  std::vector<queue::QueueHostView> none;
  ProxyOptions o;
  o.num_threads = 2;
  queue::QueueSet set(1, 16, queue::make_host_queue_allocator());
  std::vector<std::unique_ptr<transport::Transport>> ts;
  EXPECT_NE(value_error([&] {
              Proxy p(o, {set.host_view(0)}, std::move(ts));
            }).find("every thread needs at least one queue"),
            std::string::npos);
}

}  // namespace
}  // namespace uccl::ep::proxy
