// Stands in for the libfabric transport when the build found no libfabric
// (UCCL_EP_WITH_LIBFABRIC=OFF, or AUTO without rdma/fabric.h): the factory raises.
#include "common/error.h"
#include "transport/factories.h"

namespace uccl::ep::transport {

std::unique_ptr<Transport> make_libfabric_transport(const TransportOptions&) {
  throw Error(ErrorKind::kRuntime,
              "libfabric transport unavailable: built without libfabric (install libfabric-dev "
              "or a libfabric with your NIC's provider and rebuild with "
              "-DUCCL_EP_WITH_LIBFABRIC=ON)");
}

}  // namespace uccl::ep::transport
