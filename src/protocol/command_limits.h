// Host-side checks that a configuration fits the command fields (never truncated silently).
#pragma once

#include <cstdint>

namespace uccl::ep::protocol {

/// Throws Error(kValue) naming the field, the value and the limit when a WRITE / WRITE_SIGNAL
/// with these values cannot be encoded: peer < 4096; offsets 16-byte aligned and < 64 GiB;
/// bytes a multiple of 16 and at most 256 MiB - 16; both ranges end at or below 64 GiB (so no
/// valid word1 equals kEmptyWord1).
void check_write_limits(uint64_t peer, uint64_t local_offset, uint64_t remote_offset,
                        uint64_t bytes);
/// Signal slot < 65536; a fused WRITE_SIGNAL value in [1, 255].
void check_fused_signal_limits(uint64_t slot, uint64_t value);
/// ATOMIC_ADD: peer < 4096, slot < 65536, value fits in int32.
void check_atomic_limits(uint64_t peer, uint64_t slot, int64_t value);
/// A buffer whose every offset must be encodable: bytes <= 64 GiB.
void check_buffer_limits(const char* what, uint64_t bytes);

}  // namespace uccl::ep::protocol
