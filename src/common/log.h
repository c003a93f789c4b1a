// Minimal leveled logging to stderr.
#pragma once

#include <string>

#include "common/env.h"

namespace uccl::ep {

/// Sets the process-wide level (from UCCL_EP_LOG_LEVEL when a Buffer is built).
void set_log_level(LogLevel level);
/// Prints "[uccl-ep <level>] message" when `level` is enabled.
void log_message(LogLevel level, const std::string& message);

}  // namespace uccl::ep
