// Parsers of the environment variables (include/uccl_ep/env.h declares the registry and the
// settings), exposed for tests.
#pragma once

#include <cstdint>
#include <string>

#include "uccl_ep/env.h"

namespace uccl::ep {

/// Parses one value of `name` (exposed for tests). Throws like read_env_settings.
double parse_timeout_secs(const std::string& value);
LogLevel parse_log_level(const std::string& value);
/// UCCL_EP_TRANSPORT: one of auto, libfabric, ipc, null (returned as given).
std::string parse_transport_name(const std::string& value);
/// UCCL_EP_FI_PROVIDER: "auto" or a provider name made of letters, digits, '_', '-' and ';'
/// (at most 64 characters). Whether it exists is checked when the transport starts.
std::string parse_fi_provider(const std::string& value);
/// An integer variable `name` in [min, max] (decimal digits only). Throws Error(kValue) naming
/// the variable, the value and the range.
int parse_int_var(const char* name, const std::string& value, int min, int max);
/// UCCL_IB_MAX_INFLIGHT_BYTES: a decimal integer in [1, 2^64 - 1], checked for overflow.
uint64_t parse_max_inflight_bytes(const std::string& value);
/// UCCL_EP_DISABLE_CPU_AFFINITY: "0" or "1".
bool parse_disable_cpu_affinity(const std::string& value);
/// A boolean variable `name`: "0" or "1". Throws Error(kValue) naming the variable and value.
bool parse_bool_var(const char* name, const std::string& value);
/// UCCL_SOCKET_IFNAME: one interface name (an NCCL-style leading '=' is dropped) that exists
/// on this host; returned without the '='. A comma list, a leading '^' (NCCL's exclusion), a
/// name longer than 15 characters or with '/' or whitespace, and an unknown interface throw
/// Error(kValue) naming the variable, the value and the rule (the last one lists the host's
/// interfaces).
std::string parse_socket_ifname(const std::string& value);

}  // namespace uccl::ep
