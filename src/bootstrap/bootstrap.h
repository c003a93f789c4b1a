// The injected all-gather through which ranks exchange transport addresses and IPC handles:
// torch.distributed from Python, TcpBootstrap (tcp_bootstrap.h) for C++-only use and tests.
#pragma once

#include <cstdint>
#include <vector>

namespace uccl::ep::bootstrap {

/// A collective exchange of small byte blobs between the ranks of one job.
class Bootstrap {
 public:
  virtual ~Bootstrap() = default;
  virtual int rank() const = 0;
  virtual int num_ranks() const = 0;
  /// Every rank contributes `local` (any length, also 0); returns every contribution indexed by
  /// rank. Collective. Throws Error(kTimeout) at the deadline naming the ranks still missing,
  /// Error(kRuntime) when a rank disconnects or sends something malformed.
  virtual std::vector<std::vector<uint8_t>> all_gather(const std::vector<uint8_t>& local) = 0;
  /// Returns once every rank has entered the barrier. Collective; throws like all_gather.
  virtual void barrier() = 0;
};

}  // namespace uccl::ep::bootstrap
