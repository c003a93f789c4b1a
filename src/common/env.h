// Every environment variable uccl-ep reads, declared once (name, type, default, meaning).
// Values are parsed when a Buffer is constructed, never on the hot path.
#pragma once

#include <string>

namespace uccl::ep {

struct EnvVarInfo {
  const char* name;
  const char* type;
  const char* default_value;
  const char* meaning;
};

/// The registry; docs/env.md is generated from it (tools/gen_env_docs.py) and CI checks it.
inline constexpr EnvVarInfo kEnvVars[] = {
    {"UCCL_EP_TIMEOUT_SECS", "float > 0", "100",
     "Deadline of every wait: GPU spin-waits (barriers, ring counters) and the host wait for "
     "received-token counts. On expiry the call raises RuntimeError naming rank, peer, channel "
     "and counters, and the Buffer refuses further work."},
    {"UCCL_EP_LOG_LEVEL", "error|warn|info|debug", "warn",
     "Verbosity of messages printed to stderr."},
    {"UCCL_EP_TRANSPORT", "auto|libfabric|ipc|fake", "auto",
     "Transport of the GPU->CPU->network command path. auto: libfabric when one of its "
     "providers works, else an error listing what was tried; ipc: same-host GPUs through CUDA "
     "IPC and the copy engine (emulated nodes); fake: in-memory, for tests."},
    {"UCCL_EP_FI_PROVIDER", "auto or a libfabric provider name", "auto",
     "libfabric provider of the RDM endpoint, e.g. efa, verbs;ofi_rxm, cxi, tcp;ofi_rxm, shm. "
     "auto tries those in that order and logs the choice (info level)."},
};

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

/// Parsed values of the registry.
struct EnvSettings {
  double timeout_secs = 100.0;
  LogLevel log_level = LogLevel::kWarn;
  std::string transport = "auto";    // UCCL_EP_TRANSPORT
  std::string fi_provider = "auto";  // UCCL_EP_FI_PROVIDER
};

/// Reads and validates every variable now. Throws Error(kValue) naming the variable, its value
/// and the rule when a value does not parse.
EnvSettings read_env_settings();

/// Parses one value of `name` (exposed for tests). Throws like read_env_settings.
double parse_timeout_secs(const std::string& value);
LogLevel parse_log_level(const std::string& value);
/// UCCL_EP_TRANSPORT: one of auto, libfabric, ipc, fake (returned as given).
std::string parse_transport_name(const std::string& value);
/// UCCL_EP_FI_PROVIDER: "auto" or a provider name made of letters, digits, '_', '-' and ';'
/// (at most 64 characters). Whether it exists is checked when the transport starts.
std::string parse_fi_provider(const std::string& value);

}  // namespace uccl::ep
