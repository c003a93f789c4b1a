// Stands in for the ipc transport in builds without it (the ThreadSanitizer build, whose
// instrumented host code must not be mixed with the uninstrumented CUDA runtime).
#include "common/error.h"
#include "transport/factories.h"

namespace uccl::ep::transport {

std::unique_ptr<Transport> make_ipc_transport(const TransportOptions&) {
  throw Error(ErrorKind::kRuntime,
              "ipc transport unavailable: built without it (UCCL_EP_TSAN build); use a regular "
              "build on a machine with CUDA GPUs");
}

}  // namespace uccl::ep::transport
