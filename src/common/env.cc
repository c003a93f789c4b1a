// Parsing of the environment-variable registry.
#include "common/env.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

#include "common/error.h"

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
  for (const char* ok : {"auto", "libfabric", "ipc", "fake"})
    if (value == ok) return value;
  throw_error(ErrorKind::kValue,
              str_cat("UCCL_EP_TRANSPORT='", value,
                      "' is invalid: expected one of auto, libfabric, ipc, fake"));
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

EnvSettings read_env_settings() {
  EnvSettings s;
  if (const char* v = std::getenv("UCCL_EP_TIMEOUT_SECS")) s.timeout_secs = parse_timeout_secs(v);
  if (const char* v = std::getenv("UCCL_EP_LOG_LEVEL")) s.log_level = parse_log_level(v);
  if (const char* v = std::getenv("UCCL_EP_TRANSPORT")) s.transport = parse_transport_name(v);
  if (const char* v = std::getenv("UCCL_EP_FI_PROVIDER")) s.fi_provider = parse_fi_provider(v);
  return s;
}

}  // namespace uccl::ep
