// One rank's health: the device error record and abort flag that every kernel and GPU wait
// shares, failures found by the host, and other sources of errors (the CPU proxies), all read
// by one check().
#pragma once

#include <cuda_runtime_api.h>

#include <functional>
#include <string>
#include <vector>

#include "device/diag.h"
#include "protocol/diag.h"
#include "runtime/host_memory.h"
#include "uccl_ep/error.h"

namespace uccl::ep::runtime {

class Health {
 public:
  /// Allocates the mapped error record and the device abort flag on `device`.
  Health(int rank, int device, double timeout_secs);
  ~Health();
  Health(const Health&) = delete;
  Health& operator=(const Health&) = delete;

  /// What kernels report to (their args' `diag`).
  device::DeviceDiag diag() const { return diag_; }
  double timeout_secs() const { return timeout_secs_; }

  /// Throws the first recorded error: the device record, a host failure or a source's error
  /// (Error(kRuntime), prefixed by `op` when given).
  void check(const char* op) const;
  /// Whether any error was recorded (no throw).
  bool failed() const;
  /// Records a failure found by the host (the first one wins) and raises the device abort flag
  /// so that later kernels (graph replays included) poison their outputs. Returns the message.
  const std::string& fail(std::string message);
  /// Waits until the host-mapped word `*seq` holds `want` (a kernel's result for the host,
  /// published last), checking this rank's health while it waits. At the deadline
  /// (UCCL_EP_TIMEOUT_SECS) the rank fails with a message naming `op`, `what` it waited for,
  /// the sequence and the last value seen, and Error(kRuntime) is thrown.
  void wait_for_sequence(const int32_t* seq, int32_t want, const char* op, const char* what);
  /// Adds a check that throws when another part of the rank failed (e.g. the CPU proxies).
  void add_source(std::function<void()> check) { sources_.push_back(std::move(check)); }

 private:
  MappedHost<protocol::HostErrorRecord> record_;
  protocol::DeviceHealth* device_words_ = nullptr;
  cudaStream_t side_stream_ = nullptr;  // raises the abort flag without waiting for kernels
  device::DeviceDiag diag_{};
  double timeout_secs_;
  int device_;
  std::string host_failure_;
  std::vector<std::function<void()>> sources_;
};

}  // namespace uccl::ep::runtime
