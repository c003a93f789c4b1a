// Minimal leveled logging to stderr.
#include "common/log.h"

#include <atomic>
#include <cstdio>

namespace uccl::ep {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kWarn)};
const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::kError:
      return "error";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kDebug:
      return "debug";
  }
  return "?";
}
}  // namespace

void set_log_level(LogLevel level) {
  g_level.store(static_cast<int>(level));
}

void log_message(LogLevel level, const std::string& message) {
  if (static_cast<int>(level) > g_level.load()) return;
  std::fprintf(stderr, "[uccl-ep %s] %s\n", level_name(level), message.c_str());
}

}  // namespace uccl::ep
