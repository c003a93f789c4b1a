// Test and benchmark support: drive one Transport with deadlines (post with retry, fence,
// wait for a condition, a completion handshake) and deterministic byte patterns.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "transport/transport.h"

namespace uccl::ep::transport::testing {

/// Posts through a Transport, polling while it answers kRetry, and counts completions per peer.
/// Every wait polls (manual progress) and throws Error(kTimeout) after `timeout_secs` naming the
/// rank, the peers with operations outstanding and the counters. A failed completion throws
/// Error(kRuntime) with its text.
class Driver {
 public:
  Driver(Transport& transport, int rank, int num_ranks, double timeout_secs);

  void write(int pipe, int peer, uint64_t local_offset, uint64_t remote_offset, uint64_t bytes,
             const Signal* signal = nullptr);
  void atomic_add(int pipe, int peer, uint32_t slot, int64_t value);
  /// Polls once; returns the number of completions it consumed.
  int progress();
  /// The fence: polls until every posted operation completed.
  void wait_all(const std::string& what);
  /// Polls until `done()` holds; `describe()` explains what was awaited for the error.
  void wait_until(const std::function<bool()>& done, const std::function<std::string()>& describe);
  /// Ends a phase so that no peer still needs this rank's progress: fence, then add 1 to
  /// `slot` of every peer and wait until this rank's own `slot` (in `signals`) reached
  /// `++round * (num_ranks - 1)`. Call it before a bootstrap barrier.
  void handshake(uint32_t slot, const int64_t* signals);

  uint64_t posted() const { return posted_; }
  uint64_t completed() const { return completed_; }

 private:
  void post(int peer, const std::function<PostStatus(uint64_t id)>& post_once);
  std::string outstanding() const;
  void check_deadline(const std::function<std::string()>& describe) const;

  Transport& t_;
  int rank_, num_ranks_;
  double timeout_secs_;
  uint64_t posted_ = 0, completed_ = 0, next_seq_ = 0;
  int64_t round_ = 0;
  std::vector<uint64_t> posted_to_, completed_to_;
  std::vector<Completion> buf_;
  double deadline_ = 0;  // steady-clock seconds of the current wait
};

/// Acquire load of a signal slot (what a GPU reader would do).
int64_t load_signal(const int64_t* signals, uint32_t slot);

/// The byte at `offset` of the deterministic pattern `seed` (fills source buffers).
inline uint8_t pattern_byte(uint64_t seed, uint64_t offset) {
  uint64_t x = (seed + 1) * 0x9E3779B97F4A7C15ull ^ (offset * 0xBF58476D1CE4E5B9ull);
  x ^= x >> 31;
  return static_cast<uint8_t>(x ^ (x >> 17));
}
void fill_pattern(uint8_t* dst, uint64_t bytes, uint64_t seed, uint64_t first_offset);
/// Index of the first byte of `data` that differs from the pattern, or -1.
int64_t first_mismatch(const uint8_t* data, uint64_t bytes, uint64_t seed, uint64_t first_offset);

}  // namespace uccl::ep::transport::testing
