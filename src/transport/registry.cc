// The one place that names transport implementations: make_transport(). The fake transport
// is not among them: it runs on a FakeFabric shared by the ranks of a test, which only the test
// can provide (transport/fake/fake_transport.h).
#include <memory>
#include <string>

#include "common/env.h"
#include "common/error.h"
#include "transport/factories.h"
#include "transport/null/null_transport.h"
#include "transport/transport.h"

namespace uccl::ep::transport {

void check_transport_options(const TransportOptions& o) {
  UCCL_EP_CHECK_VALUE(o.num_ranks >= 1, "transport: num_ranks=", o.num_ranks, " must be >= 1");
  UCCL_EP_CHECK_VALUE(o.rank >= 0 && o.rank < o.num_ranks, "transport: rank=", o.rank,
                      " must be in [0, num_ranks=", o.num_ranks, ")");
  UCCL_EP_CHECK_VALUE(o.num_pipes >= 1 && o.num_pipes <= kMaxPipes,
                      "transport: num_pipes=", o.num_pipes, " must be in [1, ", kMaxPipes, "]");
  UCCL_EP_CHECK_VALUE(o.max_inflight >= 1 && o.max_inflight <= kMaxInflight,
                      "transport: max_inflight=", o.max_inflight, " must be in [1, ", kMaxInflight,
                      "]");
  UCCL_EP_CHECK_VALUE(o.timeout_secs > 0, "transport: timeout_secs=", o.timeout_secs,
                      " must be > 0");
  const NetworkHints& n = o.network;
  UCCL_EP_CHECK_VALUE(n.gid_index >= -1 && n.gid_index <= kMaxIbGidIndex,
                      "transport: network.gid_index=", n.gid_index,
                      " must be -1 (unset) or in [0, ", kMaxIbGidIndex, "] (UCCL_IB_GID_INDEX)");
  UCCL_EP_CHECK_VALUE(n.service_level >= -1 && n.service_level <= kMaxIbServiceLevel,
                      "transport: network.service_level=", n.service_level,
                      " must be -1 (unset) or in [0, ", kMaxIbServiceLevel, "] (UCCL_IB_SL)");
  UCCL_EP_CHECK_VALUE(n.traffic_class >= -1 && n.traffic_class <= kMaxIbTrafficClass,
                      "transport: network.traffic_class=", n.traffic_class,
                      " must be -1 (unset) or in [0, ", kMaxIbTrafficClass, "] (UCCL_IB_TC)");
}

std::unique_ptr<Transport> make_transport(const std::string& name,
                                          const TransportOptions& options) {
  check_transport_options(options);
  if (name == "ipc") return make_ipc_transport(options);
  if (name == "libfabric") return make_libfabric_transport(options);
  if (name == "null") return make_null_transport(options);
  if (name == "auto") {
    // Auto never picks ipc (it needs every peer on one host and GPU memory) or null.
    try {
      return make_libfabric_transport(options);
    } catch (const Error& e) {
      throw Error(ErrorKind::kRuntime,
                  str_cat("transport 'auto': no transport works on this machine: libfabric: ",
                          e.what(), " (set UCCL_EP_TRANSPORT to choose one explicitly)"));
    }
  }
  throw_error(ErrorKind::kValue, str_cat("unknown transport '", name,
                                         "': expected one of auto, libfabric, ipc, null"));
}

}  // namespace uccl::ep::transport
