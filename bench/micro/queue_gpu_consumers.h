// uccl_ep_queue_gpu_bench: the CPU consumer threads (null execution: count, checksum, order)
// and the host clock they stamp with. Kernels and scenarios are in queue_gpu_bench.cu.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "common/hd.h"
#include "common/testing/latency_stamps.h"
#include "protocol/command.h"
#include "queue/consumer.h"
#include "queue/queue_memory.h"
#include "queue_gpu_bench.h"

namespace uccl::ep::bench::queue_gpu {

/// Host time in ns since the program started (steady clock); what consumers stamp with.
uint64_t now_ns();

/// Warp mode: which lanes push in iteration `it` (exercises partially active warps).
UCCL_HD bool lane_active(uint32_t it, uint32_t lane) {
  return (it + lane) % 4 != 3;
}

/// Producers per queue (warps, or lanes in warp mode) and commands producer `p` pushes.
uint32_t producers_per_queue(const Scenario& s);
uint32_t commands_of(const Scenario& s, uint32_t producer);

/// Consumer threads over a QueueSet; thread t owns the queues q with q % threads == t.
class ConsumerPool {
 public:
  ConsumerPool(const queue::QueueSet& set, const Scenario& s);
  ~ConsumerPool() { stop(); }
  void start();
  void stop();
  /// Waits until every expected command was consumed (or `secs` passed).
  bool wait_done(double secs);
  uint64_t consumed() const;
  /// Checks counts, per-producer order and checksums after stop(); "" when all is well.
  std::string verify(std::vector<testing::StampSample>& samples, uint64_t& last_ns) const;
  std::vector<queue::Consumer>& consumers() { return consumers_; }

 private:
  struct Worker {
    std::atomic<uint64_t> consumed{0};
    uint64_t checksum = 0, last_ns = 0;
    std::vector<testing::StampSample> samples;  // (seen, pushed) of every 16th command
    std::string error;
  };
  void run(uint32_t t);
  bool handle(Worker& w, queue::Consumer& c, const protocol::Command& cmd, uint64_t now,
              uint64_t index);

  Scenario s_;
  uint32_t producers_;
  uint64_t per_queue_ = 0;
  std::vector<queue::Consumer> consumers_;
  std::vector<uint32_t> next_seq_;  // [queue][producer]
  std::vector<uint64_t> fences_;    // [queue]: FENCE commands consumed
  std::vector<Worker> threads_;
  std::vector<std::thread> workers_;
  std::atomic<bool> stop_{false};
};

}  // namespace uccl::ep::bench::queue_gpu
