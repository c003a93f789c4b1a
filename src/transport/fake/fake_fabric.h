// An in-memory fabric shared by several ranks of one process, with scriptable delays,
// reordering, drops and failures: the substrate of the fake transport used by proxy tests.
//
// Time is counted in ticks: every poll() of any rank on the fabric advances it by one, so a
// script is deterministic when one thread drives every rank. An operation becomes due
// `delay_ticks` after it was posted; due operations are applied in (due tick, post order), so
// different delays reorder them. With `target_progress` (the default, like libfabric's manual
// progress) an operation lands only while its target polls; its completion is returned by the
// initiator's poll. Landing copies the data (from the initiator's region as it is then, like a
// NIC reading the source) and only then adds the signal, so signals follow their data by
// construction.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "transport/transport.h"

namespace uccl::ep::transport::fake {

enum class FakeOpKind { kWrite, kAtomicAdd };

/// What a policy sees of an operation when it is posted.
struct FakeOpInfo {
  int rank = 0;  // initiator
  int peer = 0;  // target
  int pipe = 0;
  FakeOpKind kind = FakeOpKind::kWrite;
  uint64_t index = 0;  // how many operations `rank` had posted (accepted) before this one
  int attempt = 0;     // how many times this index was answered kRetry before
  uint64_t bytes = 0;
  bool has_signal = false;
  uint64_t id = 0;
};

/// A policy's answer for one operation.
struct FakeAction {
  enum class Kind {
    kDeliver,         // lands after delay_ticks, then completes ok
    kDrop,            // never lands and never completes (the caller's deadline must catch it)
    kFailCompletion,  // never lands; completes with ok == false after delay_ticks
    kThrowOnPost,     // post_* throws Error(kRuntime)
    kRetry,           // post_* returns PostStatus::kRetry (nothing is queued)
  };
  Kind kind = Kind::kDeliver;
  uint64_t delay_ticks = 0;
};

using FakePolicy = std::function<FakeAction(const FakeOpInfo&)>;

struct FakeFabricOptions {
  bool target_progress = true;            // land only while the target polls (see the file comment)
  bool ordered_delivery = false;          // claim and enforce per (rank, peer, pipe) order
  bool native_atomics = false;            // what capabilities() reports
  int64_t max_fused_signal_value = 8191;  // as libfabric's 32-bit immediate (14-bit value)
  uint32_t max_signal_slots = 1u << 16;
};

/// Counters of what the fabric did (for test assertions).
struct FakeStats {
  uint64_t posted = 0, landed = 0, dropped = 0, failed = 0, retried = 0, thrown = 0;
};

/// A posted operation as the fabric keeps it.
struct FakeOp {
  FakeOpKind kind = FakeOpKind::kWrite;
  int rank = 0, peer = 0, pipe = 0;
  uint64_t local_offset = 0, remote_offset = 0, bytes = 0;
  bool has_signal = false;
  uint32_t slot = 0;
  int64_t value = 0;
  uint64_t id = 0;
};

class FakeFabric {
 public:
  explicit FakeFabric(int num_ranks, FakeFabricOptions options = {});

  /// Replaces the policy (default: deliver everything at once). Thread-safe.
  void set_policy(FakePolicy policy);
  FakeStats stats() const;
  int num_ranks() const { return num_ranks_; }
  const FakeFabricOptions& options() const { return options_; }
  /// Operations posted by `rank` that have not completed (dropped ones stay in flight).
  uint64_t inflight(int rank) const;

  /// Records `rank`'s regions (FakeTransport::register_regions).
  void register_rank(int rank, const Region& rdma_buffer, const Region& signals);
  /// Throws Error(kRuntime) when `peer` never registered (`rank` is the caller, for the message).
  void check_registered(int rank, int peer) const;
  /// Queues `op` unless the policy says otherwise or `max_inflight` operations of op.rank are in
  /// flight (then kRetry). Throws Error(kValue) when an offset or slot is out of range.
  PostStatus post(const FakeOp& op, int max_inflight);
  /// Advances time, lands due operations (see the file comment) and returns up to `max`
  /// completions of `rank`'s operations.
  int progress(int rank, Completion* out, int max);

 private:
  struct Queued {
    FakeOp op;
    uint64_t due = 0;
    uint64_t seq = 0;
    bool fail = false;
  };
  struct RankState {
    Region rdma_buffer, signals;
    bool registered = false;
    uint64_t accepted = 0;  // operations accepted so far (FakeOpInfo::index)
    int attempts = 0;       // kRetry answers for the next index
    uint64_t inflight = 0;
    std::deque<Completion> completions;
  };

  void check_ranges(const FakeOp& op) const;
  void land(const Queued& q);
  bool may_progress(int rank, const Queued& q) const;

  const int num_ranks_;
  const FakeFabricOptions options_;
  mutable std::mutex mu_;
  FakePolicy policy_;
  std::vector<RankState> ranks_;
  std::vector<Queued> queued_;                              // not yet landed or failed
  std::map<std::tuple<int, int, int>, uint64_t> last_due_;  // ordered_delivery
  uint64_t tick_ = 0;
  uint64_t seq_ = 0;
  FakeStats stats_;
};

}  // namespace uccl::ep::transport::fake
