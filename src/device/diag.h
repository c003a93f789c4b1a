// What kernels need to report failures and to poison their outputs: shared by kernels (device)
// and launchers (host).
#pragma once

#include <cstdint>

#include "common/hd.h"
#include "protocol/diag.h"

namespace uccl::ep::device {

/// Passed by value inside every kernel's args struct.
struct DeviceDiag {
  protocol::HostErrorRecord* host_error;  // pinned, mapped host memory (device alias)
  uint32_t* abort_flag;                   // this rank's DeviceHealth::abort_flag
  uint64_t timeout_ns;
  int rank;
};

/// Byte a poisoned output is filled with: 0xff makes every floating type NaN (bf16, fp16,
/// fp32, fp64, both fp8 formats) and every integer -1; counts are filled with zero.
constexpr uint8_t kPoisonByte = 0xff;
constexpr uint8_t kZeroByte = 0x00;

/// The outputs of one kernel launch, filled with their poison byte when the rank is aborted
/// (device/health.cuh: poison_if_aborted).
struct OutputList {
  static constexpr int kMaxSpans = 8;
  struct Span {
    void* data;
    int64_t bytes;
    uint8_t fill;
  };
  Span spans[kMaxSpans];
  int count;

  /// Adds an output (null or empty outputs are skipped). Host code adds at most kMaxSpans.
  UCCL_HD void add(void* data, int64_t bytes, uint8_t fill = kPoisonByte) {
    if (data != nullptr && bytes > 0 && count < kMaxSpans) spans[count++] = {data, bytes, fill};
  }
};

}  // namespace uccl::ep::device
