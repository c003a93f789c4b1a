// Blocking TCP helpers with deadlines for the bootstrap (every wait says what it waited for).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace uccl::ep::bootstrap {

using Clock = std::chrono::steady_clock;

/// A deadline `secs` from now.
Clock::time_point deadline_after(double secs);
/// Milliseconds left until `deadline` (0 when past), for poll().
int millis_left(Clock::time_point deadline);

/// Binds host:port (port 0: any free port) and listens; returns the socket. Throws
/// Error(kRuntime) with the errno text.
int listen_on(const std::string& host, uint16_t port, uint16_t* bound_port);
/// Connects to host:port, retrying while the listener is not up yet, until `deadline`; from
/// `source` (a local IPv4 address, any port) when not empty. Throws Error(kTimeout) naming
/// `who` (e.g. "rank 3 -> rank 0 at 10.0.0.1:29500").
int connect_until(const std::string& host, uint16_t port, Clock::time_point deadline,
                  const std::string& who, const std::string& source = "");
/// Accepts one connection; returns -1 at the deadline.
int accept_until(int listen_fd, Clock::time_point deadline);
/// Sends or receives exactly `n` bytes. Throws Error(kTimeout) at the deadline and
/// Error(kRuntime) when the peer closed or the socket failed; `what` names the exchange.
void send_all(int fd, const void* data, size_t n, Clock::time_point deadline,
              const std::string& what);
void recv_all(int fd, void* data, size_t n, Clock::time_point deadline, const std::string& what);
/// close() ignoring errors (-1 is a no-op).
void close_fd(int fd);

}  // namespace uccl::ep::bootstrap
