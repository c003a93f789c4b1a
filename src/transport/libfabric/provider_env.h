// NetworkHints (UCCL_SOCKET_IFNAME, UCCL_IB_*) as libfabric provider settings: the FI_*
// environment variables the providers read, and the hints the chosen provider cannot take. No
// libfabric header: the mapping is testable without it.
#pragma once

#include <string>
#include <vector>

#include "transport/transport.h"

namespace uccl::ep::transport::libfabric {

/// One FI_* variable a hint maps to.
struct ProviderVariable {
  std::string name;   // e.g. "FI_TCP_IFACE"
  std::string value;  // e.g. "eth0"
  std::string hint;   // the uccl-ep variable it comes from, e.g. "UCCL_SOCKET_IFNAME"
};

/// The FI_* variables `hints` map to: the interface to FI_TCP_IFACE (tcp) and FI_VERBS_IFACE
/// (verbs), the GID index to FI_VERBS_GID_IDX (verbs). Service level and traffic class map to
/// nothing: libfabric (1.17) has no provider setting for them.
std::vector<ProviderVariable> provider_variables(const NetworkHints& hints);

/// Sets each of provider_variables(hints) that is not set yet (setenv, overwrite 0). Call it
/// before fi_getinfo: tcp reads its variable at each fi_getinfo, verbs only when libfabric
/// initializes (the process's first fi_getinfo). Returns one line per variable the user had
/// already set to another value (theirs stays). Thread-safe.
std::vector<std::string> export_provider_variables(const NetworkHints& hints);

/// One line per hint that `provider` (e.g. "tcp;ofi_rxm", "verbs;ofi_rxm") cannot take:
/// the GID index unless its core provider is verbs; the service level and the traffic class
/// always. Empty when every set hint is applied.
std::vector<std::string> ignored_hints(const NetworkHints& hints, const std::string& provider);

/// export_provider_variables, then a warning for each returned line, once per process.
void apply_network_hints(const NetworkHints& hints);

/// A warning for each of ignored_hints(hints, provider), once per process.
void warn_ignored_hints(const NetworkHints& hints, const std::string& provider);

}  // namespace uccl::ep::transport::libfabric
