// The in-memory fabric behind the fake transport: queues, scripted outcomes, landing.
#include "transport/fake/fake_fabric.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "common/error.h"

namespace uccl::ep::transport::fake {
namespace {

const char* kind_name(FakeOpKind k) {
  return k == FakeOpKind::kWrite ? "write" : "atomic_add";
}

}  // namespace

FakeFabric::FakeFabric(int num_ranks, FakeFabricOptions options)
    : num_ranks_(num_ranks), options_(options) {
  UCCL_EP_CHECK_VALUE(num_ranks >= 1, "FakeFabric: num_ranks=", num_ranks, " must be >= 1");
  ranks_.resize(num_ranks);
}

void FakeFabric::set_policy(FakePolicy policy) {
  std::lock_guard<std::mutex> lock(mu_);
  policy_ = std::move(policy);
}

FakeStats FakeFabric::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

uint64_t FakeFabric::inflight(int rank) const {
  std::lock_guard<std::mutex> lock(mu_);
  return ranks_.at(rank).inflight;
}

void FakeFabric::register_rank(int rank, const Region& rdma_buffer, const Region& signals) {
  UCCL_EP_CHECK_VALUE(rank >= 0 && rank < num_ranks_, "fake: rank ", rank, " out of [0, ",
                      num_ranks_, ")");
  UCCL_EP_CHECK_VALUE(reinterpret_cast<uintptr_t>(signals.base) % 8 == 0, "fake: rank ", rank,
                      ": the signal region must be 8-byte aligned");
  std::lock_guard<std::mutex> lock(mu_);
  RankState& r = ranks_[rank];
  UCCL_EP_CHECK_VALUE(!r.registered, "fake: rank ", rank, " registered its regions twice");
  r.rdma_buffer = rdma_buffer;
  r.signals = signals;
  r.registered = true;
}

void FakeFabric::check_registered(int rank, int peer) const {
  std::lock_guard<std::mutex> lock(mu_);
  UCCL_EP_CHECK_RUNTIME(ranks_.at(peer).registered, "fake: rank ", rank, " cannot connect: peer ",
                        peer, " never registered its regions");
}

void FakeFabric::check_ranges(const FakeOp& op) const {
  const RankState& self = ranks_[op.rank];
  const RankState& peer = ranks_[op.peer];
  UCCL_EP_CHECK_VALUE(self.registered && peer.registered, "fake: ", kind_name(op.kind),
                      " from rank ", op.rank, " to peer ", op.peer, " before both registered");
  if (op.kind == FakeOpKind::kWrite) {
    UCCL_EP_CHECK_VALUE(op.local_offset <= self.rdma_buffer.bytes &&
                            op.bytes <= self.rdma_buffer.bytes - op.local_offset,
                        "fake: write from rank ", op.rank, ": local range [", op.local_offset,
                        ", +", op.bytes, ") exceeds its RDMA buffer of ", self.rdma_buffer.bytes,
                        " bytes");
    UCCL_EP_CHECK_VALUE(op.remote_offset <= peer.rdma_buffer.bytes &&
                            op.bytes <= peer.rdma_buffer.bytes - op.remote_offset,
                        "fake: write to peer ", op.peer, ": remote range [", op.remote_offset,
                        ", +", op.bytes, ") exceeds its RDMA buffer of ", peer.rdma_buffer.bytes,
                        " bytes");
  }
  if (op.kind == FakeOpKind::kAtomicAdd || op.has_signal) {
    const uint64_t slots = std::min<uint64_t>(peer.signals.bytes / 8, options_.max_signal_slots);
    UCCL_EP_CHECK_VALUE(op.slot < slots, "fake: signal slot ", op.slot, " of peer ", op.peer,
                        " out of range (", slots, " slots)");
  }
  if (op.has_signal) {
    const int64_t m = options_.max_fused_signal_value;
    UCCL_EP_CHECK_VALUE(op.value != 0 && op.value >= -m - 1 && op.value <= m,
                        "fake: fused signal value ", op.value, " must be non-zero and in [", -m - 1,
                        ", ", m, "]");
  }
}

PostStatus FakeFabric::post(const FakeOp& op, int max_inflight) {
  std::lock_guard<std::mutex> lock(mu_);
  check_ranges(op);
  RankState& self = ranks_[op.rank];
  if (self.inflight >= static_cast<uint64_t>(max_inflight)) {
    ++stats_.retried;
    return PostStatus::kRetry;
  }
  FakeAction action;
  if (policy_) {
    action = policy_(FakeOpInfo{.rank = op.rank,
                                .peer = op.peer,
                                .pipe = op.pipe,
                                .kind = op.kind,
                                .index = self.accepted,
                                .attempt = self.attempts,
                                .bytes = op.bytes,
                                .has_signal = op.has_signal,
                                .id = op.id});
  }
  switch (action.kind) {
    case FakeAction::Kind::kRetry:
      ++self.attempts;
      ++stats_.retried;
      return PostStatus::kRetry;
    case FakeAction::Kind::kThrowOnPost:
      ++stats_.thrown;
      self.attempts = 0;
      throw Error(ErrorKind::kRuntime,
                  str_cat("fake: injected failure posting ", kind_name(op.kind), " #",
                          self.accepted, " (id ", op.id, ") from rank ", op.rank, " to peer ",
                          op.peer, " on pipe ", op.pipe));
    default:
      break;
  }
  ++self.accepted;
  self.attempts = 0;
  ++self.inflight;
  ++stats_.posted;
  if (action.kind == FakeAction::Kind::kDrop) {
    ++stats_.dropped;
    return PostStatus::kPosted;
  }
  uint64_t due = tick_ + action.delay_ticks;
  if (options_.ordered_delivery) {
    uint64_t& last = last_due_[{op.rank, op.peer, op.pipe}];
    due = std::max(due, last);
    last = due;
  }
  queued_.push_back(Queued{.op = op,
                           .due = due,
                           .seq = seq_++,
                           .fail = action.kind == FakeAction::Kind::kFailCompletion});
  return PostStatus::kPosted;
}

bool FakeFabric::may_progress(int rank, const Queued& q) const {
  if (q.due > tick_) return false;
  // A failure never reaches the target; the initiator's poll reports it.
  if (q.fail) return q.op.rank == rank;
  return !options_.target_progress || q.op.peer == rank;
}

void FakeFabric::land(const Queued& q) {
  const FakeOp& op = q.op;
  RankState& self = ranks_[op.rank];
  RankState& peer = ranks_[op.peer];
  Completion c;
  c.id = op.id;
  if (q.fail) {
    c.ok = false;
    c.error = str_cat("fake: injected failure of ", kind_name(op.kind), " (id ", op.id,
                      ") from rank ", op.rank, " to peer ", op.peer, " on pipe ", op.pipe);
    ++stats_.failed;
  } else {
    if (op.kind == FakeOpKind::kWrite && op.bytes > 0) {
      std::memmove(static_cast<char*>(peer.rdma_buffer.base) + op.remote_offset,
                   static_cast<const char*>(self.rdma_buffer.base) + op.local_offset, op.bytes);
    }
    if (op.kind == FakeOpKind::kAtomicAdd || op.has_signal) {
      // Release: a reader that acquires the new value also sees the data copied above.
      std::atomic_ref<int64_t>(static_cast<int64_t*>(peer.signals.base)[op.slot])
          .fetch_add(op.value, std::memory_order_release);
    }
    ++stats_.landed;
  }
  self.completions.push_back(std::move(c));
}

int FakeFabric::progress(int rank, Completion* out, int max) {
  UCCL_EP_CHECK_VALUE(max >= 1, "fake: poll(max=", max, ") needs max >= 1");
  std::lock_guard<std::mutex> lock(mu_);
  ++tick_;
  std::vector<size_t> due;
  for (size_t i = 0; i < queued_.size(); ++i)
    if (may_progress(rank, queued_[i])) due.push_back(i);
  std::sort(due.begin(), due.end(), [&](size_t a, size_t b) {
    return std::tie(queued_[a].due, queued_[a].seq) < std::tie(queued_[b].due, queued_[b].seq);
  });
  for (size_t i : due) land(queued_[i]);
  // Erase landed entries, keeping the others in post order.
  std::vector<bool> gone(queued_.size(), false);
  for (size_t i : due) gone[i] = true;
  size_t keep = 0;
  for (size_t i = 0; i < queued_.size(); ++i)
    if (!gone[i]) queued_[keep++] = std::move(queued_[i]);
  queued_.resize(keep);

  RankState& self = ranks_[rank];
  int n = 0;
  while (n < max && !self.completions.empty()) {
    out[n++] = std::move(self.completions.front());
    self.completions.pop_front();
    --self.inflight;
  }
  return n;
}

}  // namespace uccl::ep::transport::fake
