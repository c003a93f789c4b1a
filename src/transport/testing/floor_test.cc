// The transport floor over fake transports, ranks as threads: every signal arrives, bytes land
// in the sender's area at the offsets FloorLayout names and nowhere else, iterations are
// counted, kRetry and reordering are survived, the device-memory fallback, and failures
// (deadlines, failed operations, bad options) raise on every rank with rank, peer and counters.
#include "transport/testing/floor.h"

#include <gtest/gtest.h>

#include <barrier>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "runtime/collective.h"
#include "transport/fake/fake_fabric.h"
#include "transport/fake/fake_transport.h"
#include "transport/testing/driver.h"
#include "uccl_ep/error.h"

namespace uccl::ep::transport::testing {
namespace {

using fake::FakeAction;
using fake::FakeFabric;
using fake::FakeFabricOptions;
using fake::FakeOpInfo;

/// An all-gather between threads of this process.
class ThreadGather {
 public:
  explicit ThreadGather(int n) : slots_(n), sync_(n) {}
  AllGather for_rank(int rank) {
    return [this, rank](const Bytes& mine) {
      slots_[rank] = mine;
      sync_.arrive_and_wait();
      std::vector<Bytes> out = slots_;
      sync_.arrive_and_wait();
      return out;
    };
  }

 private:
  std::vector<Bytes> slots_;
  std::barrier<> sync_;
};

/// Refuses device memory in register_regions (a provider without FI_HMEM), else the fake.
class HostOnlyTransport final : public Transport {
 public:
  explicit HostOnlyTransport(std::unique_ptr<Transport> inner) : inner_(std::move(inner)) {}
  Capabilities capabilities() const override { return inner_->capabilities(); }
  void register_regions(const Region& data, const Region& signals) override {
    if (data.device) throw Error(ErrorKind::kRuntime, "host-only: cannot register device memory");
    inner_->register_regions(data, signals);
  }
  std::vector<uint8_t> local_address() const override { return inner_->local_address(); }
  void connect(const std::vector<std::vector<uint8_t>>& a) override { inner_->connect(a); }
  PostStatus post_write(int pipe, int peer, uint64_t local_offset, uint64_t remote_offset,
                        uint64_t bytes, const Signal* signal, uint64_t id) override {
    return inner_->post_write(pipe, peer, local_offset, remote_offset, bytes, signal, id);
  }
  PostStatus post_atomic_add(int pipe, int peer, uint32_t slot, int64_t value,
                             uint64_t id) override {
    return inner_->post_atomic_add(pipe, peer, slot, value, id);
  }
  int poll(Completion* out, int max) override { return inner_->poll(out, max); }

 private:
  std::unique_ptr<Transport> inner_;
};

struct RankOutcome {
  FloorResult result;
  bool threw = false;
  ErrorKind kind = ErrorKind::kRuntime;
  std::string message;
  std::vector<bool> allocations;  // on_device of each allocator call
};

struct Scenario {
  std::vector<std::vector<FloorOp>> ops;  // per rank
  int num_warmups = 2, num_iters = 5;
  double timeout_secs = 20;
  int max_inflight = 4096, num_pipes = 4;
  FakeFabricOptions fabric{};
  fake::FakePolicy policy{};
  bool device_memory = false, host_fallback = false, host_only = false;
};

/// Runs the floor on one thread per rank over one fake fabric. Rank r's data region starts as
/// the pattern of seed r; `regions[r]` keeps it for the checks.
std::vector<RankOutcome> run_floor(const Scenario& sc, std::vector<std::vector<uint8_t>>& regions) {
  const int n = static_cast<int>(sc.ops.size());
  auto fabric = std::make_shared<FakeFabric>(n, sc.fabric);
  if (sc.policy) fabric->set_policy(sc.policy);
  ThreadGather gather(n);
  regions.assign(n, {});
  std::vector<RankOutcome> out(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      FloorOptions o;
      o.transport.rank = r;
      o.transport.num_ranks = n;
      o.transport.num_pipes = sc.num_pipes;
      o.transport.max_inflight = sc.max_inflight;
      o.transport.timeout_secs = sc.timeout_secs;
      o.ops = sc.ops[r];
      o.num_warmups = sc.num_warmups;
      o.num_iters = sc.num_iters;
      o.device_memory = sc.device_memory;
      o.host_fallback = sc.host_fallback;
      const FloorTransportFactory factory = [&](const TransportOptions& t) {
        std::unique_ptr<Transport> inner = fake::make_fake_transport(t, fabric);
        if (!sc.host_only) return inner;
        return std::unique_ptr<Transport>(std::make_unique<HostOnlyTransport>(std::move(inner)));
      };
      const FloorAllocator allocate = [&, r](uint64_t bytes, bool on_device) {
        out[r].allocations.push_back(on_device);
        regions[r].assign(bytes, 0);
        fill_pattern(regions[r].data(), bytes, static_cast<uint64_t>(r), 0);
        // Host memory labelled as asked: the fake transport copies it either way.
        return FloorMemory{Region{regions[r].data(), bytes, on_device, ""}, nullptr};
      };
      const AllGather all_gather = gather.for_rank(r);
      const FloorCollective collective = [&, r](const std::string& what,
                                                const std::function<Bytes()>& local) {
        return runtime::collective_step(all_gather, r, n, what, local);
      };
      try {
        out[r].result = run_transport_floor(o, factory, allocate, collective);
      } catch (const Error& e) {
        out[r].threw = true;
        out[r].kind = e.kind();
        out[r].message = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

/// Bytes that rank `src` sends to `dst` per iteration.
uint64_t bytes_to(const std::vector<FloorOp>& ops, int dst) {
  uint64_t total = 0;
  for (const FloorOp& op : ops)
    if (op.peer == dst) total += op.bytes;
  return total;
}

/// Every rank completed, every slot counted every iteration, every area holds its source's
/// bytes where the layout puts them and the region's own pattern elsewhere.
void expect_floor_ran(const Scenario& sc, const std::vector<RankOutcome>& out,
                      const std::vector<std::vector<uint8_t>>& regions) {
  const int n = static_cast<int>(sc.ops.size());
  std::vector<std::vector<uint64_t>> sent(n, std::vector<uint64_t>(n, 0));
  for (int s = 0; s < n; ++s)
    for (int d = 0; d < n; ++d) sent[s][d] = bytes_to(sc.ops[s], d);
  const FloorLayout layout(sent);
  for (int r = 0; r < n; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    ASSERT_FALSE(out[r].threw) << out[r].message;
    const FloorResult& res = out[r].result;
    EXPECT_EQ(res.seconds.size(), static_cast<size_t>(sc.num_iters));
    for (double s : res.seconds) EXPECT_GE(s, 0.0);
    EXPECT_EQ(res.transport, "fake");
    EXPECT_EQ(res.region_bytes, layout.region_bytes());
    ASSERT_EQ(res.signals.size(), static_cast<size_t>(n));
    for (int s = 0; s < n; ++s) {
      uint64_t ops_from_s = 0;
      for (const FloorOp& op : sc.ops[s]) ops_from_s += op.peer == r ? 1 : 0;
      EXPECT_EQ(res.expected_per_iter[s], ops_from_s) << "source " << s;
      EXPECT_EQ(res.signals[s], static_cast<int64_t>(ops_from_s) * (sc.num_warmups + sc.num_iters))
          << "signal slot of source " << s;
    }
    const std::vector<uint8_t>& region = regions[r];
    ASSERT_EQ(region.size(), layout.region_bytes());
    for (int s = 0; s < n; ++s) {
      // Area s of rank r: source s's bytes (its own pattern) first, then rank r's pattern.
      const uint64_t first = layout.area(s), landed = s == r ? 0 : sent[s][r];
      const uint64_t area_end = s + 1 < n ? layout.area(s + 1) : region.size();
      EXPECT_EQ(first_mismatch(region.data() + first, landed, static_cast<uint64_t>(s), first), -1)
          << "area of source " << s;
      EXPECT_EQ(first_mismatch(region.data() + first + landed, area_end - first - landed,
                               static_cast<uint64_t>(r), first + landed),
                -1)
          << "past the bytes of source " << s;
    }
  }
}

TEST(FloorLayout, AreasPerSourceAndOffsetsPerPeerInListOrder) {
  // Rank 0 sends 32 + 16 bytes to 1 and 5000 to 2; the most to one peer is 5000 -> 8192.
  const FloorLayout layout({{0, 48, 5000}, {16, 0, 0}, {0, 0, 0}});
  EXPECT_EQ(layout.area_bytes(), 8192u);
  EXPECT_EQ(layout.area(2), 16384u);
  EXPECT_EQ(layout.region_bytes(), FloorLayout::kMinRegionBytes);
  const std::vector<FloorOp> ops{{1, 32}, {2, 4992}, {1, 0}, {1, 16}, {2, 8}};
  EXPECT_EQ(layout.op_offsets(0, ops), (std::vector<uint64_t>{0, 0, 32, 32, 4992}));
  EXPECT_EQ(layout.op_offsets(1, {{0, 16}}), (std::vector<uint64_t>{8192}));
  const FloorLayout big({{0, 3u << 20}, {0, 0}});
  EXPECT_EQ(big.region_bytes(), 6u << 20);
}

TEST(FloorOptions, RejectsSelfPeersUnalignedSizesAndNoIterations) {
  FloorOptions o;
  o.transport.rank = 1;
  o.transport.num_ranks = 2;
  o.ops = {{0, 16}};
  EXPECT_NO_THROW(check_floor_options(o));
  const auto kind_of = [](const FloorOptions& bad) {
    try {
      check_floor_options(bad);
    } catch (const Error& e) {
      return std::string(e.kind() == ErrorKind::kValue ? "value: " : "other: ") + e.what();
    }
    return std::string("no error");
  };
  FloorOptions self = o;
  self.ops = {{0, 16}, {1, 16}};
  EXPECT_NE(kind_of(self).find("value: transport floor: ops[1] peer=1"), std::string::npos)
      << kind_of(self);
  FloorOptions odd = o;
  odd.ops = {{0, 24}};
  EXPECT_NE(kind_of(odd).find("value: transport floor: ops[0] bytes=24"), std::string::npos);
  FloorOptions none = o;
  none.num_iters = 0;
  EXPECT_NE(kind_of(none).find("num_iters=0"), std::string::npos);
}

TEST(TransportFloor, TwoRanksEverySignalAndByteLands) {
  Scenario sc;
  sc.ops = {{{1, 4096}, {1, 0}, {1, 160}, {1, 16}}, {{0, 16}, {0, 8192}, {0, 0}, {0, 0}}};
  std::vector<std::vector<uint8_t>> regions;
  const auto out = run_floor(sc, regions);
  expect_floor_ran(sc, out, regions);
  EXPECT_EQ(out[0].allocations, std::vector<bool>{false});
}

TEST(TransportFloor, ThreeRanksRetriesReorderingAndAQuietRank) {
  Scenario sc;
  // Rank 2 sends nothing and receives from both; rank 0 sends signals alone to rank 1.
  sc.ops = {
      {{1, 0}, {2, 1024}, {1, 0}, {2, 32}, {1, 48}}, {{2, 2048}, {0, 64}, {2, 0}, {0, 4096}}, {}};
  sc.max_inflight = 2;  // the transport answers kRetry beyond it
  sc.num_pipes = 3;
  sc.fabric.target_progress = true;
  sc.policy = [](const FakeOpInfo& op) {
    if (op.attempt == 0 && op.index % 3 == 1) return FakeAction{FakeAction::Kind::kRetry, 0};
    return FakeAction{FakeAction::Kind::kDeliver, (op.index * 7 + op.rank) % 5};  // reorders
  };
  std::vector<std::vector<uint8_t>> regions;
  const auto out = run_floor(sc, regions);
  expect_floor_ran(sc, out, regions);
}

TEST(TransportFloor, DeviceMemoryFallsBackToHostMemory) {
  Scenario sc;
  sc.ops = {{{1, 256}}, {{0, 512}, {0, 0}}};
  sc.device_memory = true;
  sc.host_fallback = true;
  sc.host_only = true;
  std::vector<std::vector<uint8_t>> regions;
  const auto out = run_floor(sc, regions);
  expect_floor_ran(sc, out, regions);
  for (const RankOutcome& r : out) {
    EXPECT_EQ(r.allocations, (std::vector<bool>{true, false}));
    EXPECT_FALSE(r.result.device_memory);
  }
  // Without the fallback (the ipc transport) the refusal is the error, on every rank.
  sc.host_fallback = false;
  const auto refused = run_floor(sc, regions);
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(refused[r].threw);
    EXPECT_NE(refused[r].message.find("cannot register device memory"), std::string::npos)
        << refused[r].message;
  }
}

TEST(TransportFloor, LostOperationTimesOutNamingPeersAndCounters) {
  Scenario sc;
  sc.ops = {{{1, 64}}, {{0, 64}}};
  sc.num_warmups = 0;
  sc.num_iters = 3;
  sc.timeout_secs = 0.5;
  // Rank 1's second operation (iteration 1) never lands and never completes.
  sc.policy = [](const FakeOpInfo& op) {
    if (op.rank == 1 && op.index == 1) return FakeAction{FakeAction::Kind::kDrop, 0};
    return FakeAction{};
  };
  std::vector<std::vector<uint8_t>> regions;
  const auto out = run_floor(sc, regions);
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(out[r].threw) << "rank " << r;
    EXPECT_EQ(out[r].kind, ErrorKind::kTimeout) << out[r].message;
    EXPECT_NE(out[r].message.find("transport floor: rank " + std::to_string(r) + ", iteration 1"),
              std::string::npos)
        << out[r].message;
  }
  EXPECT_NE(out[1].message.find("to peer 0: 1 of 2 operations not completed"), std::string::npos)
      << out[1].message;
  EXPECT_NE(out[0].message.find("from peer 1: signal slot 1 holds 1, expected 2"),
            std::string::npos)
      << out[0].message;
}

TEST(TransportFloor, FailedOperationRaisesOnEveryRank) {
  Scenario sc;
  sc.ops = {{{1, 64}, {1, 0}}, {}};
  sc.timeout_secs = 2;
  sc.policy = [](const FakeOpInfo& op) {
    if (op.rank == 0 && op.index == 3) return FakeAction{FakeAction::Kind::kFailCompletion, 0};
    return FakeAction{};
  };
  std::vector<std::vector<uint8_t>> regions;
  const auto out = run_floor(sc, regions);
  ASSERT_TRUE(out[0].threw);
  EXPECT_EQ(out[0].kind, ErrorKind::kRuntime);
  EXPECT_NE(out[0].message.find("operation 1 (0 bytes to peer 1) failed"), std::string::npos)
      << out[0].message;
  // Rank 1 expected that signal; its own deadline ends the wait, and it names the peer.
  ASSERT_TRUE(out[1].threw);
  EXPECT_NE(out[1].message.find("from peer 0: signal slot 0"), std::string::npos) << out[1].message;
}

TEST(TransportFloor, BadOptionsOnOneRankRaiseOnEveryRank) {
  Scenario sc;
  sc.ops = {{{1, 64}}, {{1, 64}}};  // rank 1 names itself
  std::vector<std::vector<uint8_t>> regions;
  const auto out = run_floor(sc, regions);
  ASSERT_TRUE(out[1].threw);
  EXPECT_EQ(out[1].kind, ErrorKind::kValue);
  ASSERT_TRUE(out[0].threw);
  EXPECT_NE(out[0].message.find("transport floor: plan failed on other ranks: rank 1"),
            std::string::npos)
      << out[0].message;
  EXPECT_TRUE(out[0].allocations.empty());
}

}  // namespace
}  // namespace uccl::ep::transport::testing
