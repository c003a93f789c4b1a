// The network interfaces of this host (getifaddrs): their names and IPv4 addresses, for
// UCCL_SOCKET_IFNAME (the interface the bootstrap and the libfabric tcp/verbs providers use).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace uccl::ep {

/// Longest interface name Linux allows (IFNAMSIZ - 1).
constexpr size_t kMaxInterfaceNameChars = 15;

/// Names of this host's network interfaces, each once, in getifaddrs order. Throws
/// Error(kRuntime) with the errno text when getifaddrs fails.
std::vector<std::string> interface_names();

/// Throws Error(kValue) "<what>: no network interface named '<name>' on this host (it has:
/// ...)" unless interface `name` exists.
void require_interface(const std::string& name, const std::string& what);

/// The first IPv4 address of interface `name`, dotted (e.g. "10.0.0.3"). Throws Error(kValue)
/// naming `what` (e.g. "UCCL_SOCKET_IFNAME='eth9'"), the interfaces that exist, or that the
/// interface has no IPv4 address.
std::string interface_ipv4(const std::string& name, const std::string& what);

}  // namespace uccl::ep
