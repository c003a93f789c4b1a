// The first error of a proxy (any of its threads), kept with its context so that the next API
// call can raise it, and the codes the proxy writes into its queues' error words.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

namespace uccl::ep::proxy {

/// What a queue's error word holds once its proxy failed (QueueControl::error; GPU and host
/// producers stop waiting on it and report the code).
enum class ProxyErrorCode : uint32_t {
  kNone = 0,
  kTransport = 1,   // a transport call threw or an operation completed with an error
  kTimeout = 2,     // a proxy wait passed UCCL_EP_TIMEOUT_SECS
  kBadCommand = 3,  // a command the proxy cannot execute (opcode, peer, range, group)
  kInternal = 4,    // an unexpected exception or completion inside the proxy
  kStopped = 5,     // the proxy was stopped (abandoned) with work left; nothing drains the queue
};

/// "transport failure", "timeout", ...
const char* error_code_name(uint32_t code);

/// The first error recorded by any proxy thread. record() is thread-safe and keeps only the
/// first; failed() is one atomic load (the proxy loop checks it every iteration).
class ErrorState {
 public:
  /// Records `message` under `code` unless an error was recorded before; returns true if this
  /// call recorded it.
  bool record(ProxyErrorCode code, std::string message);
  bool failed() const { return code_.load(std::memory_order_acquire) != 0; }
  uint32_t code() const { return code_.load(std::memory_order_acquire); }
  /// The recorded message ("" while none).
  std::string message() const;

 private:
  std::atomic<uint32_t> code_{0};
  mutable std::mutex mu_;
  std::string message_;
};

}  // namespace uccl::ep::proxy
