// Memory layout of the NVLink buffer of one rank, shared by host and device code.
//
// Every rank allocates `num_nvl_bytes` for the modes' data (the intranode rings) followed by
// one NvlControl, in one device allocation shared with the ranks of its NVLink domain through
// CUDA IPC. All ranks use the same num_nvl_bytes, so a peer's control block is at the same
// offset from its base.
#pragma once

#include <cstdint>

#include "common/hd.h"

namespace uccl::ep::protocol {

constexpr int kMaxNvlPeers = 8;                      // ranks of one NVLink domain
constexpr int64_t kNvlModeControlBytes = 64 * 1024;  // control words of the normal modes

/// Control words of one rank. The barrier words are the NVLink domain's; `mode` belongs to the
/// normal mode in use (the intranode mode's IntranodeControl), which defines its layout.
struct alignas(128) NvlControl {
  alignas(128) uint32_t barrier_arrive[kMaxNvlPeers];  // [local peer]: epoch of its arrival
  alignas(128) uint32_t barrier_epoch;                 // barriers this rank has completed
  alignas(128) uint8_t mode[kNvlModeControlBytes];
};
static_assert(sizeof(NvlControl) % 128 == 0);

/// Offset of the NvlControl in a rank's allocation: the data rounded up to 128 bytes.
UCCL_HD int64_t nvl_control_offset(int64_t num_nvl_bytes) {
  return (num_nvl_bytes + 127) / 128 * 128;
}
/// Bytes of one rank's allocation.
UCCL_HD int64_t nvl_allocation_bytes(int64_t num_nvl_bytes) {
  return nvl_control_offset(num_nvl_bytes) + static_cast<int64_t>(sizeof(NvlControl));
}

}  // namespace uccl::ep::protocol
