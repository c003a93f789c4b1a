// Parsing of the environment-variable registry.
#include "common/env.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

#include "common/error.h"
#include "common/net_interface.h"

namespace uccl::ep {

double parse_timeout_secs(const std::string& value) {
  char* end = nullptr;
  double secs = std::strtod(value.c_str(), &end);
  UCCL_EP_CHECK_VALUE(!value.empty() && end && *end == '\0' && std::isfinite(secs) && secs > 0,
                      "UCCL_EP_TIMEOUT_SECS='", value, "' is invalid: expected a number > 0");
  return secs;
}

LogLevel parse_log_level(const std::string& value) {
  if (value == "error") return LogLevel::kError;
  if (value == "warn") return LogLevel::kWarn;
  if (value == "info") return LogLevel::kInfo;
  if (value == "debug") return LogLevel::kDebug;
  throw_error(ErrorKind::kValue, str_cat("UCCL_EP_LOG_LEVEL='", value,
                                         "' is invalid: expected one of error, warn, info, debug"));
}

std::string parse_transport_name(const std::string& value) {
  for (const char* ok : {"auto", "libfabric", "ipc", "null"})
    if (value == ok) return value;
  throw_error(ErrorKind::kValue,
              str_cat("UCCL_EP_TRANSPORT='", value,
                      "' is invalid: expected one of auto, libfabric, ipc, null"));
}

std::string parse_fi_provider(const std::string& value) {
  bool ok = !value.empty() && value.size() <= 64;
  for (char c : value)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == ';');
  UCCL_EP_CHECK_VALUE(ok, "UCCL_EP_FI_PROVIDER='", value,
                      "' is invalid: expected auto or a libfabric provider name such as "
                      "tcp;ofi_rxm (letters, digits, '_', '-', ';'; at most 64 characters)");
  return value;
}

namespace {

// Decimal digits only (no sign, no spaces, no suffix); false on overflow of 64 bits.
bool parse_u64(const std::string& value, uint64_t& out) {
  if (value.empty() || value.size() > 20) return false;
  uint64_t v = 0;
  for (char c : value) {
    if (c < '0' || c > '9') return false;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - digit) / 10) return false;
    v = v * 10 + digit;
  }
  out = v;
  return true;
}

}  // namespace

int parse_int_var(const char* name, const std::string& value, int min, int max) {
  uint64_t v = 0;
  const bool ok =
      parse_u64(value, v) && v >= static_cast<uint64_t>(min) && v <= static_cast<uint64_t>(max);
  UCCL_EP_CHECK_VALUE(ok, name, "='", value, "' is invalid: expected an integer in [", min, ", ",
                      max, "]");
  return static_cast<int>(v);
}

uint64_t parse_max_inflight_bytes(const std::string& value) {
  uint64_t v = 0;
  UCCL_EP_CHECK_VALUE(parse_u64(value, v) && v >= 1, "UCCL_IB_MAX_INFLIGHT_BYTES='", value,
                      "' is invalid: expected a number of bytes in [1, 18446744073709551615] "
                      "(decimal digits, no suffix; unset means unlimited)");
  return v;
}

bool parse_bool_var(const char* name, const std::string& value) {
  UCCL_EP_CHECK_VALUE(value == "0" || value == "1", name, "='", value,
                      "' is invalid: expected 0 or 1");
  return value == "1";
}

bool parse_disable_cpu_affinity(const std::string& value) {
  return parse_bool_var("UCCL_EP_DISABLE_CPU_AFFINITY", value);
}

std::string parse_socket_ifname(const std::string& value) {
  const std::string what = str_cat("UCCL_SOCKET_IFNAME='", value, "'");
  UCCL_EP_CHECK_VALUE(value.find(',') == std::string::npos, what,
                      " is invalid: a list of interfaces is not supported; name one interface");
  UCCL_EP_CHECK_VALUE(value.empty() || value[0] != '^', what,
                      " is invalid: excluding interfaces ('^') is not supported; name one "
                      "interface");
  const std::string name = !value.empty() && value[0] == '=' ? value.substr(1) : value;
  bool ok = !name.empty() && name.size() <= kMaxInterfaceNameChars;
  for (char c : name) ok = ok && c != '/' && !std::isspace(static_cast<unsigned char>(c));
  UCCL_EP_CHECK_VALUE(ok, what, " is invalid: expected one interface name (1 to ",
                      kMaxInterfaceNameChars, " characters, no '/' or whitespace)");
  require_interface(name, str_cat(what, " is invalid"));
  return name;
}

EnvSettings read_env_settings() {
  EnvSettings s;
  if (const char* v = std::getenv("UCCL_EP_TIMEOUT_SECS")) s.timeout_secs = parse_timeout_secs(v);
  if (const char* v = std::getenv("UCCL_EP_LOG_LEVEL")) s.log_level = parse_log_level(v);
  if (const char* v = std::getenv("UCCL_EP_TRANSPORT")) s.transport = parse_transport_name(v);
  if (const char* v = std::getenv("UCCL_EP_FI_PROVIDER")) s.fi_provider = parse_fi_provider(v);
  if (const char* v = std::getenv("UCCL_EP_IPC_MEMORY")) {
    s.ipc_memory = v;
    UCCL_EP_CHECK_VALUE(
        s.ipc_memory == "auto" || s.ipc_memory == "device" || s.ipc_memory == "host",
        "UCCL_EP_IPC_MEMORY='", s.ipc_memory, "' is invalid: expected one of auto, device, host");
  }
  if (const char* v = std::getenv("UCCL_EP_NUM_PROXY_THREADS"))
    s.num_proxy_threads = parse_int_var("UCCL_EP_NUM_PROXY_THREADS", v, 1, kMaxProxyThreads);
  if (const char* v = std::getenv("UCCL_IB_MAX_INFLIGHT_NORMAL"))
    s.max_inflight_normal = parse_int_var("UCCL_IB_MAX_INFLIGHT_NORMAL", v, 1, kMaxInflightOps);
  if (const char* v = std::getenv("UCCL_IB_MAX_INFLIGHT_LOW_LATENCY"))
    s.max_inflight_low_latency =
        parse_int_var("UCCL_IB_MAX_INFLIGHT_LOW_LATENCY", v, 1, kMaxInflightOps);
  if (const char* v = std::getenv("UCCL_IB_MAX_INFLIGHT_BYTES"))
    s.max_inflight_bytes = parse_max_inflight_bytes(v);
  if (const char* v = std::getenv("UCCL_EP_DISABLE_CPU_AFFINITY"))
    s.disable_cpu_affinity = parse_disable_cpu_affinity(v);
  if (const char* v = std::getenv("UCCL_EP_NUM_LOCAL_RANKS"); v != nullptr && *v != '\0')
    s.num_local_ranks = parse_int_var("UCCL_EP_NUM_LOCAL_RANKS", v, 1, 1 << 20);
  if (const char* v = std::getenv("UCCL_SOCKET_IFNAME"); v != nullptr && *v != '\0')
    s.socket_ifname = parse_socket_ifname(v);
  if (const char* v = std::getenv("UCCL_IB_GID_INDEX"); v != nullptr && *v != '\0')
    s.ib_gid_index = parse_int_var("UCCL_IB_GID_INDEX", v, 0, kMaxIbGidIndex);
  if (const char* v = std::getenv("UCCL_IB_SL"); v != nullptr && *v != '\0')
    s.ib_service_level = parse_int_var("UCCL_IB_SL", v, 0, kMaxIbServiceLevel);
  if (const char* v = std::getenv("UCCL_IB_TC"); v != nullptr && *v != '\0')
    s.ib_traffic_class = parse_int_var("UCCL_IB_TC", v, 0, kMaxIbTrafficClass);
  if (const char* v = std::getenv("UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC"))
    s.aggressive_atomic = parse_bool_var("UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC", v);
  return s;
}

}  // namespace uccl::ep
