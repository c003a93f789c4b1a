// Host-side checks that a configuration fits the command fields.
#include "protocol/command_limits.h"

#include "common/error.h"
#include "protocol/command.h"

namespace uccl::ep::protocol {
namespace {

void check_offset(const char* name, uint64_t offset) {
  UCCL_EP_CHECK_VALUE(offset % kUnit == 0, "command ", name, "=", offset,
                      " must be a multiple of 16 bytes");
  UCCL_EP_CHECK_VALUE(offset < kMaxOffset, "command ", name, "=", offset, " must be < ", kMaxOffset,
                      " (64 GiB, 32 bits of 16-byte units)");
}

void check_peer(uint64_t peer) {
  UCCL_EP_CHECK_VALUE(peer < kMaxPeers, "command peer=", peer, " must be < ", kMaxPeers,
                      " (12 bits)");
}

}  // namespace

void check_write_limits(uint64_t peer, uint64_t local_offset, uint64_t remote_offset,
                        uint64_t bytes) {
  check_peer(peer);
  check_offset("local_offset", local_offset);
  check_offset("remote_offset", remote_offset);
  UCCL_EP_CHECK_VALUE(bytes % kUnit == 0, "command bytes=", bytes, " must be a multiple of 16");
  UCCL_EP_CHECK_VALUE(bytes <= kMaxWriteBytes, "command bytes=", bytes,
                      " must be <= ", kMaxWriteBytes, " (24 bits of 16-byte units)");
  UCCL_EP_CHECK_VALUE(local_offset + bytes <= kMaxOffset && remote_offset + bytes <= kMaxOffset,
                      "command range local_offset=", local_offset, " remote_offset=", remote_offset,
                      " bytes=", bytes, " must end at or below ", kMaxOffset,
                      " (64 GiB, the largest buffer commands can address)");
}

void check_fused_signal_limits(uint64_t slot, uint64_t value) {
  UCCL_EP_CHECK_VALUE(slot < kMaxSignalSlots, "command signal slot=", slot, " must be < ",
                      kMaxSignalSlots, " (16 bits)");
  UCCL_EP_CHECK_VALUE(value >= 1 && value <= kMaxFusedSignalValue, "WRITE_SIGNAL value=", value,
                      " must be in [1, ", kMaxFusedSignalValue,
                      "] (8 bits); use ATOMIC_ADD after a FENCE for larger values");
}

void check_atomic_limits(uint64_t peer, uint64_t slot, int64_t value) {
  check_peer(peer);
  UCCL_EP_CHECK_VALUE(slot < kMaxSignalSlots, "command signal slot=", slot, " must be < ",
                      kMaxSignalSlots, " (16 bits)");
  UCCL_EP_CHECK_VALUE(value >= INT32_MIN && value <= INT32_MAX, "ATOMIC_ADD value=", value,
                      " must fit in int32");
}

void check_buffer_limits(const char* what, uint64_t bytes) {
  UCCL_EP_CHECK_VALUE(bytes <= kMaxOffset, what, "=", bytes, " bytes exceeds ", kMaxOffset,
                      " (64 GiB): offsets in commands have 32 bits of 16-byte units");
}

}  // namespace uccl::ep::protocol
