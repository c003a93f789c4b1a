// The first error of a proxy and the queue error codes.
#include "proxy/error_state.h"

namespace uccl::ep::proxy {

const char* error_code_name(uint32_t code) {
  switch (static_cast<ProxyErrorCode>(code)) {
    case ProxyErrorCode::kNone:
      return "no error";
    case ProxyErrorCode::kTransport:
      return "transport failure";
    case ProxyErrorCode::kTimeout:
      return "proxy timeout";
    case ProxyErrorCode::kBadCommand:
      return "bad command";
    case ProxyErrorCode::kInternal:
      return "internal proxy error";
    case ProxyErrorCode::kStopped:
      return "proxy stopped";
  }
  return "unknown proxy error";
}

bool ErrorState::record(ProxyErrorCode code, std::string message) {
  std::lock_guard<std::mutex> lock(mu_);
  if (code_.load(std::memory_order_relaxed) != 0) return false;
  message_ = std::move(message);
  code_.store(static_cast<uint32_t>(code), std::memory_order_release);
  return true;
}

std::string ErrorState::message() const {
  std::lock_guard<std::mutex> lock(mu_);
  return message_;
}

}  // namespace uccl::ep::proxy
