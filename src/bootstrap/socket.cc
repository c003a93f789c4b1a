// Blocking TCP helpers with deadlines for the bootstrap.
#include "bootstrap/socket.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "common/error.h"

namespace uccl::ep::bootstrap {
namespace {

std::string errno_text(int err) {
  return str_cat(std::strerror(err), " (errno ", err, ")");
}

addrinfo* resolve(const std::string& host, uint16_t port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  const int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res);
  UCCL_EP_CHECK_RUNTIME(rc == 0, "bootstrap: cannot resolve '", host, "': ", gai_strerror(rc));
  return res;
}

void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// Waits until `fd` is ready for `events`; false at the deadline.
bool wait_ready(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, millis_left(deadline));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return true;  // let the following call report the error
  }
}

}  // namespace

Clock::time_point deadline_after(double secs) {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(secs));
}

int millis_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left.count(), 1 << 30));
}

int listen_on(const std::string& host, uint16_t port, uint16_t* bound_port) {
  addrinfo* res = resolve(host, port, true);
  int fd = -1;
  int last_err = 0;
  for (addrinfo* a = res; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last_err = errno;
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 1024) != 0) {
      last_err = errno;
      close_fd(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  UCCL_EP_CHECK_RUNTIME(fd >= 0, "bootstrap: cannot listen on ", host, ":", port, ": ",
                        errno_text(last_err));
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  *bound_port = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                               : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return fd;
}

int connect_until(const std::string& host, uint16_t port, Clock::time_point deadline,
                  const std::string& who, const std::string& source) {
  sockaddr_in from{};
  if (!source.empty()) {
    from.sin_family = AF_INET;
    UCCL_EP_CHECK_VALUE(inet_pton(AF_INET, source.c_str(), &from.sin_addr) == 1, "bootstrap: ", who,
                        ": source address '", source, "' is not an IPv4 address");
  }
  int last_err = 0;
  int attempts = 0;
  do {
    ++attempts;
    addrinfo* res = resolve(host, port, false);
    for (addrinfo* a = res; a; a = a->ai_next) {
      if (!source.empty() && a->ai_family != AF_INET) continue;  // an IPv4 source: IPv4 only
      const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) {
        last_err = errno;
        continue;
      }
      if (!source.empty() && ::bind(fd, reinterpret_cast<const sockaddr*>(&from), sizeof(from))) {
        last_err = errno;
        close_fd(fd);
        continue;
      }
      if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
        freeaddrinfo(res);
        set_nodelay(fd);
        return fd;
      }
      last_err = errno;
      close_fd(fd);
    }
    freeaddrinfo(res);
    // The root may not listen yet: retry (ECONNREFUSED) until the deadline.
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(10 * attempts, 200)));
  } while (Clock::now() < deadline);
  throw Error(ErrorKind::kTimeout, str_cat("bootstrap: ", who,
                                           ": could not connect within the "
                                           "deadline after ",
                                           attempts, " attempts: ", errno_text(last_err)));
}

int accept_until(int listen_fd, Clock::time_point deadline) {
  for (;;) {
    if (!wait_ready(listen_fd, POLLIN, deadline)) return -1;
    const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      set_nodelay(fd);
      return fd;
    }
    if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN) {
      throw Error(ErrorKind::kRuntime, str_cat("bootstrap: accept failed: ", errno_text(errno)));
    }
  }
}

void send_all(int fd, const void* data, size_t n, Clock::time_point deadline,
              const std::string& what) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    UCCL_EP_CHECK(wait_ready(fd, POLLOUT, deadline), ErrorKind::kTimeout, "bootstrap: ", what,
                  ": timed out sending (", n, " bytes left)");
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    UCCL_EP_CHECK_RUNTIME(k > 0, "bootstrap: ", what, ": send failed: ", errno_text(errno),
                          " (the peer exited?)");
    p += k;
    n -= static_cast<size_t>(k);
  }
}

void recv_all(int fd, void* data, size_t n, Clock::time_point deadline, const std::string& what) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    UCCL_EP_CHECK(wait_ready(fd, POLLIN, deadline), ErrorKind::kTimeout, "bootstrap: ", what,
                  ": timed out receiving (", n, " bytes missing)");
    const ssize_t k = ::recv(fd, p, n, 0);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    UCCL_EP_CHECK_RUNTIME(k != 0, "bootstrap: ", what,
                          ": the peer closed the connection (exited or failed)");
    UCCL_EP_CHECK_RUNTIME(k > 0, "bootstrap: ", what, ": recv failed: ", errno_text(errno));
    p += k;
    n -= static_cast<size_t>(k);
  }
}

void close_fd(int fd) {
  if (fd >= 0) ::close(fd);
}

}  // namespace uccl::ep::bootstrap
