// The transport interface the proxy executes commands through. Implementations: libfabric,
// ipc (same-host GPUs through the copy engine), null (benchmarks: completes every post at once),
// named by registry.cc; and fake (tests: in memory, built on a shared FakeFabric by
// fake/fake_transport.h, never by name).
//
// Memory: every rank registers its RDMA buffer and a signal region (64-bit counters) with the
// same layout; commands address them by offset. A write with a signal must apply the signal at
// the target only after the write's data is visible there, whatever the provider's ordering.
//
// Obligations of every implementation (docs/transports.md, "Adding a transport"):
//  - Data before signal: a signal fused into a write is applied at the target after that
//    write's data is visible there. Nothing else is ordered unless
//    capabilities().ordered_delivery says so: an atomic that must follow earlier writes is
//    posted only after their completions (the proxy's FENCE).
//  - A successful completion means the data is delivered at the target (the local source may
//    be reused and a later reader at the target sees it) and the signal or atomic is applied,
//    or, where capabilities().target_progress, handed to the target's transport, which applies
//    it in its next poll() before it reports anything that arrived later.
//  - post_* and poll() allocate nothing and read no environment variable; a Transport is driven
//    by one thread at a time (the proxy thread owning it).
//  - Failures throw uccl::ep::Error with the operation, peer, provider and error text; a
//    failed operation completes with ok == false. Nothing blocks without a deadline.
//
// Pipes: a transport has num_pipes ordering pipes; what must stay ordered (a queue's commands)
// goes through one pipe. ordered_delivery, where claimed, holds per (pipe, peer).
//
// Refinements of the first sketch (and why): the factory takes TransportOptions (rank, ranks,
// pipes, in-flight limit, provider, deadlines) instead of positional arguments; Capabilities
// reports the fused-signal range and whether the target must poll, because the proxy cannot
// fuse or stop polling without knowing them; Region may name a POSIX shared-memory object,
// because the ipc transport applies signals directly in a peer process's host memory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace uccl::ep::transport {

/// What a transport can do; the proxy adapts (e.g. emulates atomics) from these.
struct Capabilities {
  std::string name{};             // "libfabric:tcp;ofi_rxm", "ipc", "fake", ...
  bool native_atomics = false;    // ATOMIC_ADD uses the provider's own remote atomic (fi_atomic,
                                  // the NIC or a direct store), not a message we apply
  bool ordered_delivery = false;  // per (pipe, peer): an operation never lands before an
                                  // earlier one has landed
  bool device_memory = false;     // regions may be GPU memory (probed at run time)
  bool target_progress = false;   // the target must call poll() for data and signals to land
  int immediate_bytes = 0;        // remote completion data the provider carries per write
  int64_t max_fused_signal_value = 0;  // a fused signal value v needs -max-1 <= v <= max, v != 0
  uint32_t max_signal_slots = 0;       // slots a fused signal or an atomic can address
};

/// A region this rank registers. `device` says whether `base` is GPU memory.
struct Region {
  void* base = nullptr;
  uint64_t bytes = 0;
  bool device = false;
  /// POSIX shared-memory object (shm_open name, e.g. "/uccl_ep_sig_123_0") holding this region,
  /// so peers on this host can map it; required by ipc for the signal region (SharedMemory in
  /// transport/shared_memory.h creates one). Empty otherwise.
  std::string shared_name{};
};

/// An optional signal carried by a write: add `value` to `slot` of the peer's signal region
/// once the data has landed.
struct Signal {
  uint32_t slot = 0;
  int64_t value = 0;
};

/// Local completion of a posted operation (`id` as given at post time).
struct Completion {
  uint64_t id = 0;
  bool ok = true;
  std::string error;  // set when !ok: operation, peer, provider and the error text
};

enum class PostStatus { kPosted, kRetry };  // kRetry: resources busy, poll() and post again

/// How the libfabric transport carries signals (fake and ipc ignore it).
enum class SignalPath {
  kAuto,          // kNativeAtomic where the provider does remote atomics without target
                  // software (cxi) and fi_query_atomic agrees, else kRemoteCqData
  kRemoteCqData,  // fused signals in the write's 32-bit remote CQ data, atomics as messages;
                  // the target's poll() applies both
  kNativeAtomic,  // every signal is an fi_atomic; a fused signal is posted after its write
                  // completed (delivery complete). Needs fi_query_atomic and a probe to agree
};

/// Limits of TransportOptions (make_transport refuses values beyond them).
constexpr int kMaxPipes = 1024;        // num_pipes
constexpr int kMaxInflight = 1 << 20;  // max_inflight

/// Where a network transport's traffic goes (UCCL_SOCKET_IFNAME, UCCL_IB_*); each unset by
/// default. libfabric maps what its providers take (libfabric/provider_env.h); other
/// transports ignore them.
struct NetworkHints {
  std::string interface{};  // network interface name ("": the provider's choice)
  int gid_index = -1;       // RoCE GID index, 0..255 (-1: the provider's)
  int service_level = -1;   // InfiniBand service level, 0..15 (-1: the provider's)
  int traffic_class = -1;   // traffic class, 0..255 (-1: the provider's)
};

/// Everything a transport needs at construction. The runtime fills it from EnvSettings
/// (UCCL_EP_FI_PROVIDER, UCCL_EP_TIMEOUT_SECS, UCCL_SOCKET_IFNAME, UCCL_IB_*); nothing here
/// reads the environment.
struct TransportOptions {
  int rank = 0;
  int num_ranks = 1;
  int num_pipes = 1;        // ordering pipes: pipe ids in [0, num_pipes)
  int max_inflight = 4096;  // operations posted and not completed; beyond: PostStatus::kRetry
  std::string provider{};   // libfabric: "" or "auto" = try efa, verbs;ofi_rxm, cxi,
                            // tcp;ofi_rxm, shm; else exactly this provider
  SignalPath signal_path = SignalPath::kAuto;
  double timeout_secs = 100;  // deadline of each blocking step (connect's warm-up)
  int cuda_device = -1;       // ipc: the device owning the RDMA buffer (-1: current device)
  NetworkHints network{};
};

/// One rank's endpoint of the command path (see the obligations at the top of this file).
class Transport {
 public:
  virtual ~Transport() = default;
  virtual Capabilities capabilities() const = 0;

  /// Registers this rank's RDMA buffer and signal region (once, before local_address()). The
  /// signal region holds bytes / 8 int64 slots, 8-byte aligned.
  virtual void register_regions(const Region& rdma_buffer, const Region& signals) = 0;
  /// Versioned, length-checked bytes a peer needs to reach this rank (from bootstrap).
  virtual std::vector<uint8_t> local_address() const = 0;
  /// Connects to every peer; `addresses[rank]` is that rank's local_address() (own ignored).
  /// Collective: every rank calls it; returns once every peer answered (warm-up) or throws at
  /// the deadline naming the ranks that did not.
  virtual void connect(const std::vector<std::vector<uint8_t>>& addresses) = 0;

  /// Copies `bytes` from a local RDMA-buffer offset to the peer's RDMA-buffer offset on `pipe`;
  /// with a signal, the signal is applied at the target after the data. `peer` is never this
  /// rank (local moves bypass the transport). Throws Error(kValue) for out-of-range arguments,
  /// Error(kRuntime) on failure.
  virtual PostStatus post_write(int pipe, int peer, uint64_t local_offset, uint64_t remote_offset,
                                uint64_t bytes, const Signal* signal, uint64_t id) = 0;
  /// Adds `value` to `slot` of the peer's signal region (ordered after earlier operations on
  /// the same pipe and peer only if capabilities().ordered_delivery).
  virtual PostStatus post_atomic_add(int pipe, int peer, uint32_t slot, int64_t value,
                                     uint64_t id) = 0;
  /// Makes progress (both initiator and target side) and returns up to `max` (>= 1)
  /// completions of this rank's operations; see the header comment for what one means.
  virtual int poll(Completion* out, int max) = 0;
};

/// Throws Error(kValue) naming the field and its range when `options` are invalid (ranks, rank,
/// pipes, in-flight limit, deadline). make_transport() calls it; so do factories of transports
/// the registry does not name.
void check_transport_options(const TransportOptions& options);

/// Builds the transport named by `name` ("auto", "libfabric", "ipc", "null"). "auto" is
/// libfabric when a provider works, else an error listing what was tried. (The fake transport
/// has no name: tests build it on a FakeFabric, transport/fake/fake_transport.h.) Throws
/// Error(kValue) for unknown names and bad options, Error(kRuntime) naming what is missing ("built
/// without libfabric", no CUDA device, no working provider) when one is unavailable.
std::unique_ptr<Transport> make_transport(const std::string& name, const TransportOptions& options);

}  // namespace uccl::ep::transport
