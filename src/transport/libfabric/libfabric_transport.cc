// LibfabricTransport: the public face of Endpoint, and the registry's libfabric factory.
#include "transport/libfabric/libfabric_transport.h"
#include "transport/libfabric/api.h"

#include "common/error.h"
#include "transport/factories.h"
#include "transport/libfabric/endpoint.h"
#include "transport/libfabric/fabric.h"

namespace uccl::ep::transport {
namespace libfabric {

LibfabricTransport::LibfabricTransport(const TransportOptions& options)
    : ep_(std::make_unique<Endpoint>(options)) {}
LibfabricTransport::~LibfabricTransport() = default;

Capabilities LibfabricTransport::capabilities() const {
  return ep_->capabilities();
}
void LibfabricTransport::register_regions(const Region& rdma_buffer, const Region& signals) {
  ep_->register_regions(rdma_buffer, signals);
}
std::vector<uint8_t> LibfabricTransport::local_address() const {
  return ep_->local_address();
}
void LibfabricTransport::connect(const std::vector<std::vector<uint8_t>>& addresses) {
  ep_->connect(addresses);
}
PostStatus LibfabricTransport::post_write(int pipe, int peer, uint64_t local_offset,
                                          uint64_t remote_offset, uint64_t bytes,
                                          const Signal* signal, uint64_t id) {
  return ep_->post_write(pipe, peer, local_offset, remote_offset, bytes, signal, id);
}
PostStatus LibfabricTransport::post_atomic_add(int pipe, int peer, uint32_t slot, int64_t value,
                                               uint64_t id) {
  return ep_->post_atomic_add(pipe, peer, slot, value, id);
}
int LibfabricTransport::poll(Completion* out, int max) {
  return ep_->poll(out, max);
}
const std::string& LibfabricTransport::provider() const {
  return ep_->provider();
}
SignalPath LibfabricTransport::signal_path() const {
  return ep_->signal_path();
}
double LibfabricTransport::raw_writedata_loop(int peer, uint64_t bytes, uint64_t iterations,
                                              int window, double timeout_secs) {
  return ep_->raw_writedata_loop(peer, bytes, iterations, window, timeout_secs);
}

std::string first_working_provider_name() {
  return first_working_provider();
}

bool provider_available(const std::string& provider) {
  try {
    ProviderSelection sel = select_provider(provider, SignalPath::kRemoteCqData, false);
    api().freeinfo(sel.info);
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace libfabric

std::unique_ptr<Transport> make_libfabric_transport(const TransportOptions& options) {
  return std::make_unique<libfabric::LibfabricTransport>(options);
}

}  // namespace uccl::ep::transport
