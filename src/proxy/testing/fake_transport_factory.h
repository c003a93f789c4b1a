// A TransportFactory that builds fake transports, for ranks that are threads of one process:
// the C++ proxy tests and the Python test module (uccl.ep._testing) run sessions over it.
// Always built (library uccl_ep_proxy_fake), unlike the rest of proxy/testing/.
#pragma once

#include <string>

#include "proxy/session.h"
#include "transport/fake/fake_fabric.h"

namespace uccl::ep::proxy::testing {

/// Builds thread t's transport as a fake transport on transport::fake::shared_fabric(key, t,
/// num_ranks, fabric): every session of this process given a factory with the same `key` meets
/// its peers there, plane by plane (the fabrics live while a transport or another holder keeps
/// them). The transport name the session passes is ignored. Use a key per group of ranks that
/// must not see each other (concurrent tests).
TransportFactory fake_transport_factory(std::string key,
                                        transport::fake::FakeFabricOptions fabric = {});

}  // namespace uccl::ep::proxy::testing
