// CPU benchmark of the proxy: P host producer threads push WRITE commands in batches into Q
// queues; the proxy (1-4 threads) executes them through the null transport. Reports the
// proxy's commands/s (what one GPU's proxy can execute when producers are not the bottleneck)
// and checks that every command was executed once.
//
//   uccl_ep_proxy_cpu_bench [--proxy-threads "1,2,4"] [--queues Q] [--producers P]
//                           [--batch B] [--commands TOTAL] [--prefill 0|1] [--json PATH]
//
// --prefill 1 (default): the queues are filled while the proxy is paused, then the proxy is
// resumed and timed alone (its own rate, producers excluded). --prefill 0: producers and the
// proxy run together (on a machine with few cores they share them: a lower bound).
// Exit status 1 on a failed check, 2 on bad flags.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "protocol/command.h"
#include "proxy/session.h"
#include "queue/host_producer.h"

namespace {

namespace proxy = uccl::ep::proxy;
namespace protocol = uccl::ep::protocol;
using Clock = std::chrono::steady_clock;
using uccl::ep::str_cat;

struct Config {
  std::vector<int> proxy_threads = {1, 2, 4};
  uint32_t queues = 8, producers = 2, batch = 16;
  uint64_t commands = 4000000;
  bool prefill = true;
  std::string json;
};

struct Result {
  int threads = 0;
  uint64_t commands = 0;
  double seconds = 0, commands_per_s = 0;
  std::string failure;
};

std::vector<int> parse_list(const char* s) {
  std::vector<int> out;
  for (const char* p = s; *p;) {
    out.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return out;
}

bool parse(int argc, char** argv, Config& c) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (v == nullptr) return false;
    if (a == "--proxy-threads")
      c.proxy_threads = parse_list(v);
    else if (a == "--queues")
      c.queues = static_cast<uint32_t>(std::atoi(v));
    else if (a == "--producers")
      c.producers = static_cast<uint32_t>(std::atoi(v));
    else if (a == "--batch")
      c.batch = static_cast<uint32_t>(std::atoi(v));
    else if (a == "--commands")
      c.commands = std::strtoull(v, nullptr, 10);
    else if (a == "--prefill")
      c.prefill = std::atoi(v) != 0;
    else if (a == "--json")
      c.json = v;
    else
      return false;
    ++i;
  }
  return c.queues >= 1 && c.producers >= 1 && c.batch >= 1 && c.batch <= 256 &&
         !c.proxy_threads.empty();
}

Result run(const Config& c, int threads) {
  Result r;
  r.threads = threads;
  std::vector<uint8_t> rdma_buffer(1 << 20);
  auto options = [&](int rank) {
    proxy::SessionOptions s;
    s.proxy.rank = rank;
    s.proxy.num_ranks = 2;
    s.proxy.num_threads = threads;
    s.proxy.low_latency_mode = true;
    s.transport = "null";
    s.num_queues = c.queues;
    uint32_t capacity = 4096;
    // Prefill: room for every command (queues may get up to twice their share).
    while (c.prefill && uint64_t{capacity} * c.queues < 2 * c.commands + c.queues * c.batch)
      capacity *= 2;
    s.queue_capacity = capacity;
    s.rdma_buffer = uccl::ep::transport::Region{rdma_buffer.data(), rdma_buffer.size(), false, ""};
    return s;
  };
  proxy::ProxySession session(options(0), uccl::ep::queue::make_host_queue_allocator());
  proxy::ProxySession peer(options(1), uccl::ep::queue::make_host_queue_allocator());
  session.connect({session.local_address(), peer.local_address()});
  session.start();
  if (c.prefill) session.proxy()->pause();
  const uint64_t per_producer = c.commands / c.producers / c.batch * c.batch;
  std::atomic<bool> go{false};
  std::vector<std::thread> producers;
  std::atomic<bool> producer_failed{false};
  for (uint32_t p = 0; p < c.producers; ++p) {
    producers.emplace_back([&, p] {
      try {
        // Producer p round-robins over the queues q with q % producers == p % queues.
        std::vector<uccl::ep::queue::HostProducer> mine;
        for (uint32_t q = p % c.queues; q < c.queues; q += std::max(1u, c.producers))
          mine.emplace_back(session.queues().host_producer_handle(q), std::chrono::seconds(60));
        std::vector<protocol::Command> batch(c.batch, protocol::encode_write(1, 0, 16 * p, 64));
        while (!go.load()) std::this_thread::yield();
        size_t k = 0;
        for (uint64_t i = 0; i < per_producer; i += c.batch, k = (k + 1) % mine.size())
          mine[k].push_batch(batch.data(), c.batch);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "producer %u: %s\n", p, e.what());
        producer_failed.store(true);
      }
    });
  }
  auto start = Clock::now();
  go.store(true);
  for (auto& t : producers) t.join();
  if (c.prefill) {
    start = Clock::now();
    session.proxy()->resume();
  }
  const uint64_t expected = per_producer * c.producers;
  while (session.proxy()->total_stats().completed < expected &&
         Clock::now() - start < std::chrono::seconds(120))
    std::this_thread::yield();
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const proxy::StopResult stop = session.stop(proxy::StopMode::kDrain);
  const proxy::ThreadStats total = session.proxy()->total_stats();
  r.commands = total.commands;
  r.commands_per_s = static_cast<double>(total.completed) / r.seconds;
  if (producer_failed.load())
    r.failure = "a producer failed";
  else if (total.commands != expected || total.completed != expected)
    r.failure = str_cat("executed ", total.commands, " commands, completed ", total.completed,
                        ", expected ", expected);
  else if (stop.status != proxy::StopStatus::kDrained)
    r.failure = stop.message;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  if (!parse(argc, argv, c)) {
    std::fprintf(stderr,
                 "usage: %s [--proxy-threads 1,2,4] [--queues Q] [--producers P] [--batch B] "
                 "[--commands N] [--json PATH]\n",
                 argv[0]);
    return 2;
  }
  std::vector<Result> results;
  bool ok = true;
  std::printf("%s\n", c.prefill ? "proxy alone (queues prefilled while paused)"
                                : "producers and proxy together");
  std::printf("%-14s %-8s %-10s %-14s %s\n", "proxy_threads", "queues", "producers", "Mcommands/s",
              "check");
  for (int t : c.proxy_threads) {
    Result r;
    try {
      r = run(c, t);
    } catch (const std::exception& e) {
      r.threads = t;
      r.failure = e.what();
    }
    ok = ok && r.failure.empty();
    std::printf("%-14d %-8u %-10u %-14.2f %s\n", t, c.queues, c.producers, r.commands_per_s / 1e6,
                r.failure.empty() ? "ok" : r.failure.c_str());
    results.push_back(r);
  }
  if (!c.json.empty()) {
    std::FILE* f = std::fopen(c.json.c_str(), "w");
    if (f == nullptr) return 1;
    std::fprintf(f,
                 "{\"benchmark\": \"proxy_cpu\", \"queues\": %u, \"producers\": %u, "
                 "\"batch\": %u, \"prefill\": %s, \"results\": [",
                 c.queues, c.producers, c.batch, c.prefill ? "true" : "false");
    for (size_t i = 0; i < results.size(); ++i)
      std::fprintf(f,
                   "%s{\"proxy_threads\": %d, \"commands\": %llu, \"seconds\": %.6f, "
                   "\"commands_per_s\": %.1f, \"ok\": %s}",
                   i ? ", " : "", results[i].threads,
                   static_cast<unsigned long long>(results[i].commands), results[i].seconds,
                   results[i].commands_per_s, results[i].failure.empty() ? "true" : "false");
    std::fprintf(f, "]}\n");
    std::fclose(f);
  }
  return ok ? 0 : 1;
}
