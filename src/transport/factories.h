// The factory of each transport implementation, as the registry sees them. Each is defined by
// its implementation library or, when that is not built, by a stub that raises "unavailable".
// Only registry.cc (and an implementation's own tests) may include this header.
#pragma once

#include <memory>

#include "transport/transport.h"

namespace uccl::ep::transport {

/// libfabric FI_EP_RDM (libfabric/libfabric_transport.cc, or libfabric_stub.cc).
std::unique_ptr<Transport> make_libfabric_transport(const TransportOptions& options);
/// Same-host GPUs through CUDA IPC and the copy engine (ipc/ipc_transport.cc, or ipc_stub.cc).
std::unique_ptr<Transport> make_ipc_transport(const TransportOptions& options);

}  // namespace uccl::ep::transport
