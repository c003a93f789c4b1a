// The transport floor: set-up (plan, endpoint, connect) as collective steps, the timed CPU loop,
// and the end step during which a thread keeps the transport progressing.
#include "transport/testing/floor.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <thread>
#include <utility>

#include "common/error.h"
#include "common/log.h"
#include "transport/shared_memory.h"
#include "transport/wire.h"

namespace uccl::ep::transport::testing {
namespace {

using Bytes = std::vector<uint8_t>;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kPlanMagic = 0x524f4c46;  // "FLOR"
constexpr uint16_t kPlanVersion = 1;
constexpr uint64_t kMaxOpBytes = uint64_t{1} << 40;
constexpr int kPollBatch = 64;
constexpr uint32_t kSpinsPerClockRead = 64;  // polls between deadline checks

/// Per peer: the bytes and operations this rank sends it per iteration.
struct PeerTotals {
  std::vector<uint64_t> bytes, ops;
};

PeerTotals totals_of(int num_ranks, const std::vector<FloorOp>& ops) {
  PeerTotals t{std::vector<uint64_t>(num_ranks, 0), std::vector<uint64_t>(num_ranks, 0)};
  for (const FloorOp& op : ops) {
    t.bytes[op.peer] += op.bytes;
    ++t.ops[op.peer];
  }
  return t;
}

Bytes encode_plan(int rank, int num_ranks, const PeerTotals& t) {
  ByteWriter w;
  w.u32(kPlanMagic);
  w.u16(kPlanVersion);
  w.u32(static_cast<uint32_t>(rank));
  w.u32(static_cast<uint32_t>(num_ranks));
  for (int p = 0; p < num_ranks; ++p) {
    w.u64(t.bytes[p]);
    w.u64(t.ops[p]);
  }
  return w.take();
}

PeerTotals decode_plan(const Bytes& b, int rank, int num_ranks) {
  ByteReader in(b, str_cat("transport floor: the plan of rank ", rank));
  in.header(kPlanMagic, kPlanVersion);
  const uint32_t sender = in.u32(), ranks = in.u32();
  UCCL_EP_CHECK_VALUE(
      sender == static_cast<uint32_t>(rank) && ranks == static_cast<uint32_t>(num_ranks), in.what(),
      " says rank ", sender, " of ", ranks, ", expected rank ", rank, " of ", num_ranks);
  PeerTotals t{std::vector<uint64_t>(num_ranks), std::vector<uint64_t>(num_ranks)};
  for (int p = 0; p < num_ranks; ++p) {
    t.bytes[p] = in.u64();
    t.ops[p] = in.u64();
  }
  in.finish();
  return t;
}

/// This rank's data region, signal region and transport. Members are destroyed in reverse
/// order: the transport before the memory it registered.
struct Endpoint {
  FloorMemory memory;
  SharedMemory signals;
  std::unique_ptr<Transport> transport;
};

/// Creates the signal region, allocates the data region and registers both with a new
/// transport; with host_fallback, device memory the transport refuses is replaced once by host
/// memory and a new transport (as the Buffer does).
Endpoint open_endpoint(const FloorOptions& o, uint64_t region_bytes,
                       const FloorTransportFactory& factory, const FloorAllocator& allocate) {
  const int rank = o.transport.rank, n = o.transport.num_ranks;
  Endpoint ep;
  ep.signals = SharedMemory::create(SharedMemory::unique_name("floor"), size_t(n) * 8);
  const Region signals{ep.signals.data(), ep.signals.bytes(), false, ep.signals.name()};
  for (bool on_device = o.device_memory;;) {
    ep.memory = allocate(region_bytes, on_device);
    const Region& r = ep.memory.region;
    UCCL_EP_CHECK_RUNTIME(r.base != nullptr && r.bytes >= region_bytes && r.device == on_device,
                          "transport floor: rank ", rank, ": the allocator returned ", r.bytes,
                          " bytes of ", r.device ? "device" : "host", " memory at ",
                          r.base == nullptr ? "null" : "an address", " for a request of ",
                          region_bytes, " bytes of ", on_device ? "device" : "host", " memory");
    ep.transport = factory(o.transport);
    UCCL_EP_CHECK_RUNTIME(ep.transport != nullptr, "transport floor: rank ", rank,
                          ": the transport factory returned null");
    try {
      ep.transport->register_regions(r, signals);
      break;
    } catch (const Error& e) {
      if (!on_device || !o.host_fallback) throw;
      log_message(
          LogLevel::kWarn,
          str_cat("transport floor: rank ", rank, ": transport ", ep.transport->capabilities().name,
                  " cannot register device memory (", e.what(), "); using host memory"));
      ep.transport.reset();
      ep.memory = {};
      on_device = false;
    }
  }
  const Capabilities caps = ep.transport->capabilities();
  UCCL_EP_CHECK_RUNTIME(
      caps.max_signal_slots >= static_cast<uint32_t>(n) && caps.max_fused_signal_value >= 1,
      "transport floor: transport ", caps.name, " addresses ", caps.max_signal_slots,
      " signal slots (fused values up to ", caps.max_fused_signal_value,
      "); the floor needs one slot per rank (", n, ") and a value of 1");
  return ep;
}

/// Polls `transport` on a thread of its own until stop(), so that peers waiting for this
/// rank's progress (target_progress) finish while this thread sits in a collective step.
class BackgroundProgress {
 public:
  explicit BackgroundProgress(Transport& transport)
      : thread_([this, &transport] { run(transport); }) {}
  ~BackgroundProgress() { stop(); }
  BackgroundProgress(const BackgroundProgress&) = delete;
  BackgroundProgress& operator=(const BackgroundProgress&) = delete;

  /// Joins the thread; returns the first failure it saw ("" if none).
  std::string stop() {
    stop_.store(true, std::memory_order_release);
    if (thread_.joinable()) thread_.join();
    return error_;
  }

 private:
  void run(Transport& transport) {
    std::vector<Completion> buf(kPollBatch);
    try {
      while (!stop_.load(std::memory_order_acquire)) {
        const int n = transport.poll(buf.data(), kPollBatch);
        for (int i = 0; i < n && error_.empty(); ++i)
          if (!buf[i].ok) error_ = buf[i].error;
        if (n == 0) std::this_thread::yield();
      }
    } catch (const std::exception& e) {
      error_ = e.what();
    }
  }

  std::atomic<bool> stop_{false};
  std::string error_;
  std::thread thread_;
};

/// The timed loop of one rank (see the file comment of floor.h).
class FloorLoop {
 public:
  FloorLoop(const FloorOptions& o, Transport& transport, int64_t* signals,
            std::vector<uint64_t> offsets, std::vector<uint64_t> expected)
      : o_(o),
        t_(transport),
        signals_(signals),
        offsets_(std::move(offsets)),
        expected_(std::move(expected)),
        posted_to_(o.transport.num_ranks, 0),
        completed_to_(o.transport.num_ranks, 0),
        buf_(kPollBatch),
        signal_{static_cast<uint32_t>(o.transport.rank), 1},
        timeout_(std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(o.transport.timeout_secs))) {}

  /// Seconds of each timed iteration.
  std::vector<double> run() {
    std::vector<double> seconds;
    seconds.reserve(static_cast<size_t>(o_.num_iters));
    for (iter_ = 0; iter_ < o_.num_warmups + o_.num_iters; ++iter_) {
      const Clock::time_point start = Clock::now();
      deadline_ = start + timeout_;
      for (size_t i = 0; i < o_.ops.size(); ++i) post(i);
      wait_for_iteration();
      const Clock::time_point end = Clock::now();
      if (iter_ >= o_.num_warmups)
        seconds.push_back(std::chrono::duration<double>(end - start).count());
    }
    return seconds;
  }

 private:
  void post(size_t i) {
    const FloorOp& op = o_.ops[i];
    const int pipe = static_cast<int>(i % static_cast<size_t>(o_.transport.num_pipes));
    for (uint32_t spins = 0;; ++spins) {
      PostStatus status;
      try {
        status = op.bytes > 0
                     ? t_.post_write(pipe, op.peer, offsets_[i], offsets_[i], op.bytes, &signal_, i)
                     : t_.post_atomic_add(pipe, op.peer, signal_.slot, 1, i);
      } catch (const Error& e) {
        throw Error(e.kind(), str_cat(where(), ", operation ", i, " (", op.bytes, " bytes to peer ",
                                      op.peer, "): ", e.what()));
      }
      if (status == PostStatus::kPosted) break;
      progress();
      if (spins % kSpinsPerClockRead == 0 && Clock::now() > deadline_)
        timed_out(str_cat("posting operation ", i, " (", op.bytes, " bytes to peer ", op.peer,
                          "): the transport answered kRetry throughout"));
    }
    ++posted_;
    ++posted_to_[op.peer];
  }

  void progress() {
    const int n = t_.poll(buf_.data(), kPollBatch);
    for (int k = 0; k < n; ++k) {
      const Completion& c = buf_[k];
      const FloorOp& op = o_.ops[c.id];
      if (!c.ok)
        throw Error(ErrorKind::kRuntime,
                    str_cat(where(), ": operation ", c.id, " (", op.bytes, " bytes to peer ",
                            op.peer, ") failed: ", c.error));
      ++completed_;
      ++completed_to_[op.peer];
    }
  }

  int64_t slot(int src) const {
    return std::atomic_ref<int64_t>(signals_[src]).load(std::memory_order_acquire);
  }
  int64_t slot_target(int src) const { return static_cast<int64_t>(expected_[src]) * (iter_ + 1); }
  bool signals_reached() const {
    for (size_t s = 0; s < expected_.size(); ++s)
      if (expected_[s] > 0 && slot(static_cast<int>(s)) < slot_target(static_cast<int>(s)))
        return false;
    return true;
  }

  void wait_for_iteration() {
    for (uint32_t spins = 0; !(completed_ == posted_ && signals_reached()); ++spins) {
      progress();
      if (spins % kSpinsPerClockRead == 0 && Clock::now() > deadline_)
        timed_out("the iteration's completions and signals");
    }
  }

  std::string where() const {
    return str_cat("transport floor: rank ", o_.transport.rank, ", iteration ", iter_, " (",
                   o_.num_warmups, " warm-up + ", o_.num_iters, " timed)");
  }

  [[noreturn]] void timed_out(const std::string& waiting_for) const {
    std::string owed;
    for (size_t p = 0; p < posted_to_.size(); ++p) {
      const int peer = static_cast<int>(p);
      if (posted_to_[p] != completed_to_[p])
        owed += str_cat("; to peer ", peer, ": ", posted_to_[p] - completed_to_[p], " of ",
                        posted_to_[p], " operations not completed");
      if (expected_[p] > 0 && slot(peer) < slot_target(peer))
        owed += str_cat("; from peer ", peer, ": signal slot ", peer, " holds ", slot(peer),
                        ", expected ", slot_target(peer));
    }
    throw Error(ErrorKind::kTimeout,
                str_cat(where(), " timed out after ", o_.transport.timeout_secs, " s waiting for ",
                        waiting_for, " (posted ", posted_, ", completed ", completed_, owed,
                        "; UCCL_EP_TIMEOUT_SECS sets the deadline)"));
  }

  const FloorOptions& o_;
  Transport& t_;
  int64_t* signals_;
  const std::vector<uint64_t> offsets_, expected_;
  std::vector<uint64_t> posted_to_, completed_to_;
  uint64_t posted_ = 0, completed_ = 0;
  std::vector<Completion> buf_;
  const Signal signal_;
  const Clock::duration timeout_;
  Clock::time_point deadline_{};
  int iter_ = 0;
};

}  // namespace

// ---- FloorLayout

FloorLayout::FloorLayout(const std::vector<std::vector<uint64_t>>& sent)
    : num_ranks_(static_cast<int>(sent.size())) {
  uint64_t most = 0;
  for (const auto& row : sent) {
    UCCL_EP_CHECK_VALUE(row.size() == sent.size(), "transport floor: a row of ", row.size(),
                        " peers in a plan of ", sent.size(), " ranks");
    for (uint64_t b : row) most = std::max(most, b);
  }
  area_bytes_ = (most + kAreaAlignment - 1) / kAreaAlignment * kAreaAlignment;
  UCCL_EP_CHECK_VALUE(num_ranks_ == 0 || area_bytes_ <= (uint64_t{1} << 50) / num_ranks_,
                      "transport floor: ", num_ranks_, " areas of ", area_bytes_,
                      " bytes do not fit a data region");
}

uint64_t FloorLayout::region_bytes() const {
  return std::max(static_cast<uint64_t>(num_ranks_) * area_bytes_, kMinRegionBytes);
}

std::vector<uint64_t> FloorLayout::op_offsets(int rank, const std::vector<FloorOp>& ops) const {
  std::vector<uint64_t> next(num_ranks_, area(rank)), out;
  out.reserve(ops.size());
  for (const FloorOp& op : ops) {
    out.push_back(next[op.peer]);
    next[op.peer] += op.bytes;
  }
  return out;
}

// ---- The floor

void check_floor_options(const FloorOptions& o) {
  const int rank = o.transport.rank, n = o.transport.num_ranks;
  UCCL_EP_CHECK_VALUE(n >= 1 && rank >= 0 && rank < n, "transport floor: rank=", rank,
                      " must be in [0, num_ranks=", n, ")");
  UCCL_EP_CHECK_VALUE(o.num_warmups >= 0 && o.num_iters >= 1,
                      "transport floor: num_warmups=", o.num_warmups,
                      " must be >= 0 and num_iters=", o.num_iters, " >= 1");
  UCCL_EP_CHECK_VALUE(o.transport.num_pipes >= 1,
                      "transport floor: num_pipes=", o.transport.num_pipes, " must be >= 1");
  for (size_t i = 0; i < o.ops.size(); ++i) {
    const FloorOp& op = o.ops[i];
    UCCL_EP_CHECK_VALUE(op.peer >= 0 && op.peer < n && op.peer != rank, "transport floor: ops[", i,
                        "] peer=", op.peer, " must be in [0, ", n, ") and not this rank (", rank,
                        ")");
    UCCL_EP_CHECK_VALUE(op.bytes % 16 == 0 && op.bytes <= kMaxOpBytes, "transport floor: ops[", i,
                        "] bytes=", op.bytes, " must be a multiple of 16 and at most 2^40");
  }
}

FloorResult run_transport_floor(const FloorOptions& o, const FloorTransportFactory& factory,
                                const FloorAllocator& allocate, const FloorCollective& collective) {
  const int rank = o.transport.rank, n = o.transport.num_ranks;
  const std::vector<Bytes> plans = collective("transport floor: plan", [&] {
    check_floor_options(o);
    return encode_plan(rank, n, totals_of(n, o.ops));
  });
  std::vector<std::vector<uint64_t>> sent(n);
  FloorResult result;
  result.expected_per_iter.assign(n, 0);
  for (int r = 0; r < n; ++r) {
    PeerTotals t = decode_plan(plans[r], r, n);
    sent[r] = std::move(t.bytes);
    result.expected_per_iter[r] = t.ops[rank];
  }
  const FloorLayout layout(sent);

  Endpoint ep;
  const std::vector<Bytes> addresses = collective("transport floor: set-up", [&] {
    ep = open_endpoint(o, layout.region_bytes(), factory, allocate);
    return ep.transport->local_address();
  });
  collective("transport floor: connect", [&] {
    ep.transport->connect(addresses);
    return Bytes{};
  });
  result.transport = ep.transport->capabilities().name;
  result.device_memory = ep.memory.region.device;
  result.region_bytes = ep.memory.region.bytes;
  log_message(LogLevel::kInfo,
              str_cat("transport floor: rank ", rank, ": ", result.transport, ", ", o.ops.size(),
                      " operations per iteration, data region of ", result.region_bytes,
                      " bytes in ", result.device_memory ? "device" : "host", " memory"));

  auto* signals = static_cast<int64_t*>(ep.signals.data());
  std::exception_ptr failure;
  try {
    FloorLoop loop(o, *ep.transport, signals, layout.op_offsets(rank, o.ops),
                   result.expected_per_iter);
    result.seconds = loop.run();
  } catch (...) {
    failure = std::current_exception();
  }
  {
    BackgroundProgress progress(*ep.transport);
    collective("transport floor: end", [&] {
      if (failure) std::rethrow_exception(failure);
      return Bytes{};
    });
    const std::string late = progress.stop();
    UCCL_EP_CHECK_RUNTIME(late.empty(), "transport floor: rank ", rank,
                          ": an operation failed after the last iteration: ", late);
  }
  result.signals.resize(n);
  for (int s = 0; s < n; ++s)
    result.signals[s] = std::atomic_ref<int64_t>(signals[s]).load(std::memory_order_acquire);
  return result;
}

}  // namespace uccl::ep::transport::testing
