// The transport interface the proxy executes commands through. Implementations: libfabric,
// ipc (same-host GPUs through the copy engine), fake (tests). Only registry.cc names them.
//
// Memory: every rank registers a data region and a signal region (64-bit counters) with the
// same layout; commands address them by offset. A write with a signal must apply the signal at
// the target only after the write's data is visible there, whatever the provider's ordering.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace uccl::ep::transport {

/// What a transport can do; the proxy adapts (e.g. emulates atomics) from these.
struct Capabilities {
  std::string name;               // "libfabric:tcp;ofi_rxm", "ipc", "fake", ...
  bool native_atomics = false;    // remote 64-bit adds without target-side software
  bool ordered_delivery = false;  // a later operation never lands before an earlier one
  bool device_memory = false;     // regions may be GPU memory
  int immediate_bytes = 0;        // bytes of remote completion data per write (0, 4, 8)
};

/// A region this rank registers. `device` says whether `base` is GPU memory.
struct Region {
  void* base = nullptr;
  uint64_t bytes = 0;
  bool device = false;
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
  std::string error;  // set when !ok
};

enum class PostStatus { kPosted, kRetry };  // kRetry: resources busy, post again later

class Transport {
 public:
  virtual ~Transport() = default;
  virtual Capabilities capabilities() const = 0;

  /// Registers this rank's data and signal regions (once, before local_address()).
  virtual void register_regions(const Region& data, const Region& signals) = 0;
  /// Versioned, length-checked bytes a peer needs to reach this rank (from bootstrap).
  virtual std::vector<uint8_t> local_address() const = 0;
  /// Connects to every peer; `addresses[rank]` is that rank's local_address() (own ignored).
  virtual void connect(const std::vector<std::vector<uint8_t>>& addresses) = 0;

  /// Copies `bytes` from local data offset to the peer's data offset on `channel`; with a
  /// signal, the signal is applied at the target after the data. Throws Error on failure.
  virtual PostStatus post_write(int channel, int peer, uint64_t local_offset,
                                uint64_t remote_offset, uint64_t bytes, const Signal* signal,
                                uint64_t id) = 0;
  /// Adds `value` to `slot` of the peer's signal region (ordered after earlier operations on
  /// the same channel and peer only if capabilities().ordered_delivery).
  virtual PostStatus post_atomic_add(int channel, int peer, uint32_t slot, int64_t value,
                                     uint64_t id) = 0;
  /// Makes progress (both initiator and target side) and returns up to `max` completions of
  /// this rank's operations. A completion means the operation (and its signal) is visible at
  /// the target.
  virtual int poll(Completion* out, int max) = 0;
};

/// Builds the transport named by `name` ("auto", "libfabric", "ipc", "fake"). Throws
/// Error(kValue) for unknown names and Error(kRuntime) naming what is missing ("built without
/// libfabric") when one is unavailable.
std::unique_ptr<Transport> make_transport(const std::string& name, int rank, int num_ranks);

}  // namespace uccl::ep::transport
