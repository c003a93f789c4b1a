// The transport floor: a rank's list of writes with fused signals (and signals alone) posted
// straight from one CPU loop on one Transport and timed per iteration. It is the lower bound
// that bench/bench_low_latency.py compares the proxy path's latency with, for the same list.
// Collective: every rank of the job runs it at the same time, each with its own list.
//
// Memory: every rank's data region is `num_ranks` areas of FloorLayout::area_bytes(); source s
// writes only into area s of its peers, its operations to one peer back to back in list order,
// from the same offsets of its own region (so nothing a rank sends is overwritten, and nothing
// two operations write overlaps). Signals: slot s of a rank's signal region (POSIX shared
// memory) counts the operations that source s completed there, 1 per operation.
//
// One iteration: post the list in order (polling while the transport answers kRetry), then
// poll until every posted operation completed and every source's slot reached (i + 1) times the
// operations it sends to this rank per iteration. No barrier between iterations: the signals
// pace the ranks. Set-up and the end are collective steps, and while the last one runs a
// thread keeps polling, so no peer waits for this rank's progress (target_progress transports).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "transport/transport.h"

namespace uccl::ep::transport::testing {

/// One operation of a rank's list: `bytes` (a multiple of 16) from this rank's data region to
/// `peer`'s with a fused signal of 1 into the peer's slot `rank`; `bytes == 0`: that signal
/// alone (post_atomic_add of 1). `peer` is never the rank itself.
struct FloorOp {
  int peer = 0;
  uint64_t bytes = 0;
};

/// The data region the caller allocated: zeroed `region.bytes` bytes, in device memory when
/// `region.device`; `owner` frees it when its last copy goes.
struct FloorMemory {
  Region region{};
  std::shared_ptr<void> owner{};
};

/// Allocates the data region: `bytes` in device memory when `on_device`, else in host memory
/// (pinned where a GPU is involved). Throws uccl::ep::Error.
using FloorAllocator = std::function<FloorMemory(uint64_t bytes, bool on_device)>;

/// Builds this rank's transport (the registry's make_transport, or a test's fake transport).
using FloorTransportFactory =
    std::function<std::unique_ptr<Transport>(const TransportOptions& options)>;

/// One collective step (runtime::collective_step's semantics): runs `local` on this rank,
/// all-gathers its outcome and payload and returns every rank's payload (index = rank); if
/// `local` threw on any rank, throws on every rank. `what` names the step in messages.
using FloorCollective = std::function<std::vector<std::vector<uint8_t>>(
    const std::string& what, const std::function<std::vector<uint8_t>()>& local)>;

struct FloorOptions {
  /// rank, num_ranks, provider, signal path, cuda_device as for the proxy's transports;
  /// timeout_secs is also the deadline of each of the floor's waits (an iteration's posts and
  /// its completion); operation i of the list uses pipe i % num_pipes; max_inflight bounds the
  /// operations in flight (beyond it the transport answers kRetry and the loop polls).
  TransportOptions transport{};
  std::vector<FloorOp> ops{};  // this rank's list, in posting order
  int num_warmups = 0;         // untimed iterations first
  int num_iters = 1;           // timed iterations (>= 1)
  bool device_memory = false;  // put the data region in device memory (else host memory)
  /// With device_memory: if the transport cannot register device memory, retry once with a new
  /// transport on host memory (the Buffer's fallback; the ipc transport has none).
  bool host_fallback = false;
};

/// Where the ranks' writes land (see the file comment); the same on every rank.
class FloorLayout {
 public:
  /// Data regions are at least this large (a list of signals alone still registers memory).
  static constexpr uint64_t kMinRegionBytes = 1 << 20;
  static constexpr uint64_t kAreaAlignment = 4096;

  /// `sent[s][p]`: the bytes rank s writes to rank p per iteration (square, num_ranks rows).
  explicit FloorLayout(const std::vector<std::vector<uint64_t>>& sent);

  int num_ranks() const { return num_ranks_; }
  /// Bytes of one source's area: the most any rank sends to one peer, rounded up.
  uint64_t area_bytes() const { return area_bytes_; }
  /// Bytes of every rank's data region.
  uint64_t region_bytes() const;
  /// First byte of source `src`'s area in every rank's region.
  uint64_t area(int src) const { return static_cast<uint64_t>(src) * area_bytes_; }
  /// Offset (local and remote) of each of `rank`'s operations.
  std::vector<uint64_t> op_offsets(int rank, const std::vector<FloorOp>& ops) const;

 private:
  int num_ranks_ = 0;
  uint64_t area_bytes_ = 0;
};

struct FloorResult {
  std::vector<double> seconds{};  // per timed iteration, this rank
  std::string transport{};        // capabilities().name
  bool device_memory = false;     // where the data region ended up
  uint64_t region_bytes = 0;
  /// This rank's signal slots at the end: slot s = operations source s completed here (over
  /// every iteration, warm-up included).
  std::vector<int64_t> signals{};
  /// Operations per iteration that each source sends to this rank.
  std::vector<uint64_t> expected_per_iter{};
};

/// Throws Error(kValue) naming the operation and the rule when `options` are invalid (peers,
/// sizes, iteration counts).
void check_floor_options(const FloorOptions& options);

/// Runs the floor on this rank (collective; see the file comment). Throws Error(kValue) for
/// invalid options, Error(kTimeout) when a wait passes its deadline (naming the rank, the
/// iteration, the peers still owing signals or completions and the counters), Error(kRuntime)
/// for transport failures, and, on every rank, when another rank failed.
FloorResult run_transport_floor(const FloorOptions& options, const FloorTransportFactory& factory,
                                const FloorAllocator& allocate, const FloorCollective& collective);

}  // namespace uccl::ep::transport::testing
