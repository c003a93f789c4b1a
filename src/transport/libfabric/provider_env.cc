// NetworkHints as libfabric provider variables, and the hints a provider cannot take.
#include "transport/libfabric/provider_env.h"

#include <cstdlib>
#include <mutex>
#include <set>

#include "common/error.h"
#include "common/log.h"

namespace uccl::ep::transport::libfabric {
namespace {

std::mutex& env_mutex() {
  static std::mutex m;
  return m;
}

// Logs `line` as a warning unless this process already did (lines carry the values, so a
// changed setting is reported again).
void warn_once(const std::string& line) {
  static std::set<std::string> seen;
  {
    std::lock_guard<std::mutex> lock(env_mutex());
    if (!seen.insert(line).second) return;
  }
  log_message(LogLevel::kWarn, line);
}

// "verbs" of "verbs;ofi_rxm": the provider that drives the NIC.
std::string core_provider(const std::string& provider) {
  return provider.substr(0, provider.find(';'));
}

}  // namespace

std::vector<ProviderVariable> provider_variables(const NetworkHints& hints) {
  std::vector<ProviderVariable> out;
  if (!hints.interface.empty()) {
    out.push_back({"FI_TCP_IFACE", hints.interface, "UCCL_SOCKET_IFNAME"});
    out.push_back({"FI_VERBS_IFACE", hints.interface, "UCCL_SOCKET_IFNAME"});
  }
  if (hints.gid_index >= 0)
    out.push_back({"FI_VERBS_GID_IDX", std::to_string(hints.gid_index), "UCCL_IB_GID_INDEX"});
  return out;
}

std::vector<std::string> export_provider_variables(const NetworkHints& hints) {
  std::vector<std::string> kept;
  std::lock_guard<std::mutex> lock(env_mutex());
  for (const ProviderVariable& v : provider_variables(hints)) {
    const char* current = std::getenv(v.name.c_str());
    if (current == nullptr) {
      setenv(v.name.c_str(), v.value.c_str(), 0);
    } else if (v.value != current) {
      kept.push_back(str_cat("libfabric: ", v.name, "='", current, "' is set and wins over ",
                             v.hint, "='", v.value, "'"));
    }
  }
  return kept;
}

std::vector<std::string> ignored_hints(const NetworkHints& hints, const std::string& provider) {
  std::vector<std::string> out;
  const bool verbs = core_provider(provider) == "verbs";
  if (hints.gid_index >= 0 && !verbs)
    out.push_back(str_cat("UCCL_IB_GID_INDEX=", hints.gid_index, " is ignored: libfabric provider ",
                          provider, " has no GID index setting (only verbs, as FI_VERBS_GID_IDX)"));
  if (hints.service_level >= 0)
    out.push_back(str_cat("UCCL_IB_SL=", hints.service_level, " is ignored: libfabric provider ",
                          provider, " has no service-level setting; its default applies"));
  if (hints.traffic_class >= 0)
    out.push_back(str_cat("UCCL_IB_TC=", hints.traffic_class, " is ignored: libfabric provider ",
                          provider, " has no traffic-class setting; its default applies"));
  return out;
}

void apply_network_hints(const NetworkHints& hints) {
  for (const std::string& line : export_provider_variables(hints)) warn_once(line);
}

void warn_ignored_hints(const NetworkHints& hints, const std::string& provider) {
  for (const std::string& line : ignored_hints(hints, provider)) warn_once(line);
}

}  // namespace uccl::ep::transport::libfabric
