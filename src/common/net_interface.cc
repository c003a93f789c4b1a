// The network interfaces of this host, from getifaddrs.
#include "common/net_interface.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "common/error.h"

namespace uccl::ep {
namespace {

using IfAddrs = std::unique_ptr<ifaddrs, decltype(&freeifaddrs)>;

IfAddrs list_interfaces() {
  ifaddrs* head = nullptr;
  if (getifaddrs(&head) != 0) {
    const int err = errno;
    throw Error(ErrorKind::kRuntime,
                str_cat("getifaddrs failed: ", std::strerror(err), " (errno ", err, ")"));
  }
  return IfAddrs(head, &freeifaddrs);
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += str_cat(out.empty() ? "" : ", ", n);
  return out.empty() ? "none" : out;
}

}  // namespace

std::vector<std::string> interface_names() {
  const IfAddrs all = list_interfaces();
  std::vector<std::string> names;
  for (const ifaddrs* a = all.get(); a != nullptr; a = a->ifa_next) {
    if (a->ifa_name == nullptr) continue;
    if (std::find(names.begin(), names.end(), a->ifa_name) == names.end())
      names.emplace_back(a->ifa_name);
  }
  return names;
}

void require_interface(const std::string& name, const std::string& what) {
  const std::vector<std::string> names = interface_names();
  UCCL_EP_CHECK_VALUE(std::find(names.begin(), names.end(), name) != names.end(), what,
                      ": no network interface named '", name,
                      "' on this host (it has: ", join(names), ")");
}

std::string interface_ipv4(const std::string& name, const std::string& what) {
  const IfAddrs all = list_interfaces();
  bool exists = false;
  for (const ifaddrs* a = all.get(); a != nullptr; a = a->ifa_next) {
    if (a->ifa_name == nullptr || name != a->ifa_name) continue;
    exists = true;
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
    char text[INET_ADDRSTRLEN] = {};
    const auto* in = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
    if (inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text)) != nullptr) return text;
  }
  if (!exists) require_interface(name, what);  // throws, listing the interfaces
  throw Error(ErrorKind::kValue, str_cat(what, ": interface '", name,
                                         "' has no IPv4 address (the bootstrap needs one)"));
}

}  // namespace uccl::ep
