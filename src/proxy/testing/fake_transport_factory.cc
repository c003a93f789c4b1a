// The fake-transport factory for in-process ranks.
#include "proxy/testing/fake_transport_factory.h"

#include <memory>
#include <utility>

#include "transport/fake/fake_transport.h"

namespace uccl::ep::proxy::testing {

TransportFactory fake_transport_factory(std::string key,
                                        transport::fake::FakeFabricOptions fabric) {
  return [key = std::move(key), fabric = std::move(fabric)](
             int thread, const std::string& /*name*/, const transport::TransportOptions& options) {
    return transport::fake::make_fake_transport(
        options, transport::fake::shared_fabric(key, thread, options.num_ranks, fabric));
  };
}

}  // namespace uccl::ep::proxy::testing
