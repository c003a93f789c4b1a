// collective_step: a failure on one rank becomes an exception on every rank.
#include "runtime/collective.h"

#include <gtest/gtest.h>

#include <barrier>
#include <string>
#include <thread>
#include <vector>

#include "uccl_ep/error.h"

namespace uccl::ep::runtime {
namespace {

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

struct Outcome {
  bool threw = false;
  ErrorKind kind = ErrorKind::kRuntime;
  std::string message;
  std::vector<Bytes> payloads;
};

/// Runs one step on `n` threads; rank `bad` (if >= 0) fails with `kind`.
std::vector<Outcome> run_step(int n, int bad, ErrorKind kind) {
  ThreadGather gather(n);
  std::vector<Outcome> out(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        out[r].payloads = collective_step(gather.for_rank(r), r, n, "test step", [&] {
          if (r == bad) throw Error(kind, "bad argument x=3 on this rank");
          return Bytes{static_cast<uint8_t>(r), 7};
        });
      } catch (const Error& e) {
        out[r] = {true, e.kind(), e.what(), {}};
      }
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

TEST(CollectiveStep, EveryRankGetsEveryPayload) {
  const auto out = run_step(3, -1, ErrorKind::kValue);
  for (const Outcome& o : out) {
    ASSERT_FALSE(o.threw) << o.message;
    ASSERT_EQ(o.payloads.size(), 3u);
    for (int r = 0; r < 3; ++r) EXPECT_EQ(o.payloads[r], (Bytes{static_cast<uint8_t>(r), 7}));
  }
}

TEST(CollectiveStep, OneFailureRaisesOnEveryRank) {
  const auto out = run_step(3, 1, ErrorKind::kValue);
  EXPECT_TRUE(out[1].threw);
  EXPECT_EQ(out[1].kind, ErrorKind::kValue);  // the failing rank keeps its own error
  EXPECT_EQ(out[1].message, "bad argument x=3 on this rank");
  for (int r : {0, 2}) {
    EXPECT_TRUE(out[r].threw);
    EXPECT_EQ(out[r].kind, ErrorKind::kRuntime);
    EXPECT_NE(out[r].message.find("test step failed on other ranks: rank 1: bad argument x=3"),
              std::string::npos)
        << out[r].message;
  }
}

TEST(CollectiveStep, AFailureSentWithoutAStepIsSeenByThePeers) {
  ThreadGather gather(2);
  std::string peer_error;
  std::thread peer([&] {
    try {
      collective_step(gather.for_rank(0), 0, 2, "Buffer set-up", [] { return Bytes{1}; });
    } catch (const Error& e) {
      peer_error = e.what();
    }
  });
  gather.for_rank(1)(encode_step_failure(1, "ValueError: num_nvl_bytes=100 must be ..."));
  peer.join();
  EXPECT_NE(peer_error.find("rank 1: ValueError: num_nvl_bytes=100"), std::string::npos)
      << peer_error;
}

TEST(CollectiveStep, ARankThatSendsAnotherRanksMessageIsNamed) {
  const AllGather wrong = [](const Bytes& mine) { return std::vector<Bytes>{mine, mine}; };
  try {
    collective_step(wrong, 0, 2, "step", [] { return Bytes{}; });
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1 says it is rank 0"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace uccl::ep::runtime
