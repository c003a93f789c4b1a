// libfabric provider selection, error text and the CUDA-memory registration probe.
#pragma once

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>

#include <string>

#include "transport/transport.h"

namespace uccl::ep::transport::libfabric {

/// Providers tried, in this order, when none is named ("" or "auto").
inline constexpr const char* kAutoProviders[] = {"efa", "verbs;ofi_rxm", "cxi", "tcp;ofi_rxm",
                                                 "shm"};

/// One fi_info chosen for an RDM endpoint, and how it was found.
struct ProviderSelection {
  fi_info* info = nullptr;  // owned by the caller (fi_freeinfo)
  std::string name;         // e.g. "tcp;ofi_rxm"
  bool atomics = false;     // FI_ATOMIC was asked for and granted
  bool hmem = false;        // FI_HMEM was asked for and granted
  std::string tried;        // one line per provider tried and why it was refused
};

/// Finds an RDM provider with RMA, messages and remote CQ data; asks for FI_ATOMIC when
/// `path` may use native atomics and for FI_HMEM when `want_hmem`, dropping each extra that is
/// refused. `provider` "" or "auto" tries kAutoProviders. Throws Error(kRuntime) listing every
/// provider tried and the reason.
ProviderSelection select_provider(const std::string& provider, SignalPath path, bool want_hmem);

/// Whether `provider` does remote atomics without target software. Capabilities cannot tell
/// (rxm, shm, efa and sockets advertise FI_ATOMIC and apply it in the target's progress), so
/// this is a table: cxi only.
bool hardware_atomics(const std::string& provider);

/// Why fi_atomic of `provider` must not be used although fi_query_atomic agrees, or "" when
/// nothing is known against it. Measured, not advertised: shm in libfabric <= 1.17 applies the
/// operand of a later atomic to an earlier one when two FI_DELIVERY_COMPLETE atomics are in
/// flight (a probe wrote 1000 where 1 was added, then 1000 again).
std::string native_atomics_broken(const std::string& provider);

/// "0x..." for flag words in messages.
std::string hex_text(uint64_t v);

/// "<fi_strerror text> (<rc>)" for a negative libfabric return code.
std::string fi_error_text(long rc);

/// The first of kAutoProviders that answers fi_getinfo for an RDM endpoint with RMA, or "".
std::string first_working_provider();

/// CUDA devices visible to this process (0 without a driver or device).
int cuda_device_count();

/// Registers 1 MiB of CUDA memory on `domain` as FI_HMEM_CUDA and closes it again. Returns ""
/// when that worked, else why not (Debian's libfabric: "Function not implemented").
std::string probe_cuda_registration(fid_domain* domain);

/// The CUDA device owning `ptr`, or -1 when it is not device memory.
int cuda_device_of(const void* ptr);

}  // namespace uccl::ep::transport::libfabric
