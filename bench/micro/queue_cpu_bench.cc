// CPU benchmark of the command queue: P host producer threads x Q queues x C consumer threads;
// reports commands/s and push->consume latency (p50/p99), and checks order and counts.
//
//   uccl_ep_queue_bench [--producers P --queues Q --consumers C] [--capacity N] [--batch B]
//                       [--commands TOTAL] [--json PATH]
//
// Without --producers/--queues/--consumers it runs a small sweep. Producer p pushes into queue
// p % Q; consumer c drains the queues q with q % C == c. Exit status 1 on a check failure.
#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "protocol/command.h"
#include "queue/consumer.h"
#include "queue/host_producer.h"
#include "queue/queue_memory.h"

namespace {

using uccl::ep::protocol::Command;
namespace queue = uccl::ep::queue;
namespace protocol = uccl::ep::protocol;
using Clock = std::chrono::steady_clock;

struct Config {
  uint32_t producers = 1, queues = 1, consumers = 1, capacity = 1024, batch = 1;
  uint64_t commands = 2000000;  // in total, split over producers
};

struct Result {
  Config config;
  uint64_t consumed = 0, order_errors = 0;
  double seconds = 0, commands_per_s = 0, p50_ns = 0, p99_ns = 0;
  bool ok = false;
  std::string failure;
};

const Clock::time_point kEpoch = Clock::now();

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - kEpoch).count());
}

// The push time (56 bits of ns) rides in word1 (local offset and bytes fields), the producer
// in `peer` and the sequence in the remote offset.
Command stamp_command(uint32_t producer, uint64_t seq, uint64_t stamp) {
  return protocol::encode_write(producer, (stamp & 0xffffffffu) << 4, (seq & 0xffffffffu) << 4,
                                ((stamp >> 32) & 0xffffffu) << 4);
}

struct ConsumerStats {
  uint64_t consumed = 0, order_errors = 0;
  std::vector<uint64_t> latencies;  // sampled, preallocated
};

void consume(std::vector<queue::Consumer*> mine, uint64_t expected, uint32_t num_producers,
             const std::atomic<bool>& abort, ConsumerStats& stats) {
  std::vector<uint64_t> next_seq(num_producers, 0);
  std::vector<Command> batch(256);
  const uint64_t stride = std::max<uint64_t>(1, expected / stats.latencies.capacity());
  uint32_t idle = 0;
  while (stats.consumed < expected && !abort.load(std::memory_order_relaxed)) {
    bool any = false;
    for (queue::Consumer* c : mine) {
      const int n = c->peek(batch.data(), static_cast<int>(batch.size()));
      if (n == 0) continue;
      const uint64_t now = now_ns();
      for (int i = 0; i < n; ++i) {
        const protocol::CommandFields f = protocol::decode(batch[i]);
        const uint64_t seq = f.remote_offset >> 4;
        if (f.peer >= num_producers || seq != next_seq[f.peer]) ++stats.order_errors;
        if (f.peer < num_producers) next_seq[f.peer] = seq + 1;
        if ((stats.consumed + i) % stride == 0 &&
            stats.latencies.size() < stats.latencies.capacity()) {
          const uint64_t stamp = (f.local_offset >> 4) | ((f.bytes >> 4) << 32);
          stats.latencies.push_back(now - stamp);
        }
      }
      c->release(n);
      stats.consumed += static_cast<uint64_t>(n);
      any = true;
    }
    if (any) {
      idle = 0;
    } else if (++idle > 64) {
      std::this_thread::yield();
    }
  }
}

void produce(const queue::QueueSet& set, const Config& cfg, uint32_t p, uint64_t count,
             const std::atomic<bool>& go, std::string& failure, std::atomic<bool>& abort) {
  try {
    queue::HostProducer producer(set.host_producer_handle(p % cfg.queues),
                                 std::chrono::seconds(30));
    std::vector<Command> batch(cfg.batch);
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    for (uint64_t seq = 0; seq < count;) {
      const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(cfg.batch, count - seq));
      const uint64_t stamp = now_ns();
      for (uint32_t i = 0; i < n; ++i) batch[i] = stamp_command(p, seq + i, stamp);
      producer.push_batch(batch.data(), n);
      seq += n;
    }
  } catch (const std::exception& e) {
    failure = e.what();
    abort.store(true);
  }
}

double percentile(std::vector<uint64_t>& v, double q) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k]);
}

Result run(const Config& cfg) {
  Result r;
  r.config = cfg;
  queue::QueueSet set(cfg.queues, cfg.capacity, queue::make_host_queue_allocator());
  std::vector<queue::Consumer> consumers;
  for (uint32_t q = 0; q < cfg.queues; ++q) consumers.emplace_back(set.host_view(q));
  const uint64_t per_producer = cfg.commands / cfg.producers;
  std::vector<ConsumerStats> stats(cfg.consumers);
  std::vector<std::string> failures(cfg.producers);
  std::atomic<bool> go{false}, abort{false};
  std::vector<std::thread> threads;
  for (uint32_t c = 0; c < cfg.consumers; ++c) {
    std::vector<queue::Consumer*> mine;
    for (uint32_t q = c; q < cfg.queues; q += cfg.consumers) mine.push_back(&consumers[q]);
    uint64_t expected = 0;
    for (uint32_t p = 0; p < cfg.producers; ++p)
      if ((p % cfg.queues) % cfg.consumers == c) expected += per_producer;
    stats[c].latencies.reserve(100000);
    threads.emplace_back(consume, mine, expected, cfg.producers, std::cref(abort),
                         std::ref(stats[c]));
  }
  for (uint32_t p = 0; p < cfg.producers; ++p)
    threads.emplace_back(produce, std::cref(set), std::cref(cfg), p, per_producer, std::cref(go),
                         std::ref(failures[p]), std::ref(abort));
  const auto start = Clock::now();
  go.store(true, std::memory_order_release);
  for (std::thread& t : threads) t.join();
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<uint64_t> latencies;
  for (ConsumerStats& s : stats) {
    r.consumed += s.consumed;
    r.order_errors += s.order_errors;
    latencies.insert(latencies.end(), s.latencies.begin(), s.latencies.end());
  }
  for (const std::string& f : failures)
    if (!f.empty() && r.failure.empty()) r.failure = f;
  r.commands_per_s = static_cast<double>(r.consumed) / r.seconds;
  r.p50_ns = percentile(latencies, 0.50);
  r.p99_ns = percentile(latencies, 0.99);
  r.ok = r.failure.empty() && r.order_errors == 0 && r.consumed == per_producer * cfg.producers;
  if (r.ok) {
    for (uint32_t q = 0; q < cfg.queues; ++q)
      r.ok = r.ok && consumers[q].head() == set.host_producer_handle(q).producer->ticket;
    if (!r.ok) r.failure = "a queue's consumed count differs from its pushed count";
  }
  return r;
}

void write_json(const char* path, const std::vector<Result>& results) {
  FILE* f = std::fopen(path, "w");
  if (f == nullptr) {
    std::fprintf(stderr, "cannot write %s: %s\n", path, std::strerror(errno));
    return;
  }
  std::fprintf(f, "{\n  \"bench\": \"queue_cpu\",\n  \"cores\": %u,\n  \"results\": [\n",
               std::thread::hardware_concurrency());
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    const Config& c = r.config;
    std::fprintf(f,
                 "    {\"producers\": %u, \"queues\": %u, \"consumers\": %u, \"capacity\": %u, "
                 "\"batch\": %u, \"commands\": %llu, \"seconds\": %.6f, \"commands_per_s\": "
                 "%.1f, \"latency_p50_ns\": %.0f, \"latency_p99_ns\": %.0f, \"ok\": %s}%s\n",
                 c.producers, c.queues, c.consumers, c.capacity, c.batch,
                 static_cast<unsigned long long>(r.consumed), r.seconds, r.commands_per_s, r.p50_ns,
                 r.p99_ns, r.ok ? "true" : "false", i + 1 < results.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "%s\nusage: uccl_ep_queue_bench [--producers P --queues Q --consumers C] "
               "[--capacity N] [--batch B] [--commands TOTAL] [--json PATH]\n",
               why);
  std::exit(2);
}

uint64_t parse_number(const std::string& flag, const char* text, uint64_t max) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0' || v == 0 || v > max)
    usage(uccl::ep::str_cat(flag, ": bad value '", text, "' (1..", max, ")").c_str());
  return v;
}

// Fills `cfg` from the flags; returns whether P/Q/C were given (one config, no sweep).
bool parse_args(int argc, char** argv, Config& cfg, const char*& json) {
  bool single = false;
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) usage(("missing value after " + flag).c_str());
    const char* value = argv[i + 1];
    uint32_t* field = nullptr;
    if (flag == "--json") {
      json = value;
    } else if (flag == "--commands") {
      cfg.commands = parse_number(flag, value, uint64_t{1} << 40);
    } else if (flag == "--producers" || flag == "--queues" || flag == "--consumers") {
      field = flag == "--producers" ? &cfg.producers
              : flag == "--queues"  ? &cfg.queues
                                    : &cfg.consumers;
      single = true;
    } else if (flag == "--capacity") {
      field = &cfg.capacity;
    } else if (flag == "--batch") {
      field = &cfg.batch;
    } else {
      usage(("unknown flag " + flag).c_str());
    }
    if (field != nullptr) *field = static_cast<uint32_t>(parse_number(flag, value, 1u << 24));
  }
  return single;
}

}  // namespace

int main(int argc, char** argv) {
  Config base;
  const char* json = nullptr;
  const bool single = parse_args(argc, argv, base, json);
  std::vector<Config> configs;
  if (single) {
    configs.push_back(base);
  } else {
    for (auto [p, q, c, b] : {std::array<uint32_t, 4>{1, 1, 1, 1},
                              {1, 1, 1, 16},
                              {4, 4, 1, 1},
                              {4, 4, 2, 16},
                              {8, 4, 2, 1},
                              {8, 8, 2, 16}}) {
      Config cfg = base;
      cfg.producers = p, cfg.queues = q, cfg.consumers = c, cfg.batch = b;
      configs.push_back(cfg);
    }
  }
  std::vector<Result> results;
  bool all_ok = true;
  std::printf("%9s %6s %9s %8s %5s | %12s %10s %10s\n", "producers", "queues", "consumers",
              "capacity", "batch", "Mcommands/s", "p50 us", "p99 us");
  for (const Config& cfg : configs) {
    Result r;
    try {
      if (cfg.batch > cfg.capacity || cfg.commands < cfg.producers)
        usage("need batch <= capacity and commands >= producers");
      r = run(cfg);
    } catch (const std::exception& e) {
      r.config = cfg;
      r.failure = e.what();
    }
    std::printf("%9u %6u %9u %8u %5u | %12.2f %10.2f %10.2f%s\n", cfg.producers, cfg.queues,
                cfg.consumers, cfg.capacity, cfg.batch, r.commands_per_s * 1e-6, r.p50_ns * 1e-3,
                r.p99_ns * 1e-3, r.ok ? "" : "  FAILED");
    if (!r.ok)
      std::fprintf(stderr, "  failure: %s (order errors %llu, consumed %llu)\n", r.failure.c_str(),
                   static_cast<unsigned long long>(r.order_errors),
                   static_cast<unsigned long long>(r.consumed));
    all_ok = all_ok && r.ok;
    results.push_back(r);
  }
  if (json != nullptr) write_json(json, results);
  return all_ok ? 0 : 1;
}
