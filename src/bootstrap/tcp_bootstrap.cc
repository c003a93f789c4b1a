// The TCP rendezvous: connection set-up, message framing and the star all_gather.
#include "bootstrap/tcp_bootstrap.h"

#include <poll.h>

#include <cerrno>
#include <set>
#include <utility>

#include "bootstrap/socket.h"
#include "common/error.h"
#include "common/net_interface.h"

namespace uccl::ep::bootstrap {
namespace {

constexpr uint32_t kMagic = 0x42504555;  // "UEPB"
constexpr uint16_t kVersion = 1;
constexpr uint64_t kMaxPayload = uint64_t{1} << 30;
constexpr size_t kHeaderBytes = 24;
constexpr const char* kInterfaceWhat = "bootstrap: interface (UCCL_SOCKET_IFNAME)";

enum class MsgType : uint16_t { kHello = 1, kGather = 2, kResult = 3 };

struct Header {
  MsgType type = MsgType::kHello;
  uint64_t seq = 0;
  uint64_t length = 0;
};

void put(std::vector<uint8_t>& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint64_t get(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

void send_message(int fd, MsgType type, uint64_t seq, const std::vector<uint8_t>& payload,
                  Clock::time_point deadline, const std::string& what) {
  std::vector<uint8_t> msg;
  msg.reserve(kHeaderBytes + payload.size());
  put(msg, kMagic, 4);
  put(msg, kVersion, 2);
  put(msg, static_cast<uint16_t>(type), 2);
  put(msg, seq, 8);
  put(msg, payload.size(), 8);
  msg.insert(msg.end(), payload.begin(), payload.end());
  send_all(fd, msg.data(), msg.size(), deadline, what);
}

// Receives one message and checks its magic, version, type and length.
std::vector<uint8_t> recv_message(int fd, MsgType type, uint64_t seq, Clock::time_point deadline,
                                  const std::string& what) {
  uint8_t h[kHeaderBytes];
  recv_all(fd, h, sizeof(h), deadline, what);
  const uint32_t magic = static_cast<uint32_t>(get(h, 4));
  const uint16_t version = static_cast<uint16_t>(get(h + 4, 2));
  const uint16_t got_type = static_cast<uint16_t>(get(h + 6, 2));
  const uint64_t got_seq = get(h + 8, 8);
  const uint64_t length = get(h + 16, 8);
  UCCL_EP_CHECK_RUNTIME(magic == kMagic, "bootstrap: ", what, ": bad magic ", magic,
                        " (not a uccl-ep bootstrap peer?)");
  UCCL_EP_CHECK_RUNTIME(version == kVersion, "bootstrap: ", what, ": peer speaks version ", version,
                        ", this build speaks ", kVersion, " (mixed uccl-ep builds?)");
  UCCL_EP_CHECK_RUNTIME(got_type == static_cast<uint16_t>(type) && got_seq == seq,
                        "bootstrap: ", what, ": expected message type ", static_cast<int>(type),
                        " #", seq, ", got type ", got_type, " #", got_seq,
                        " (ranks called different collectives?)");
  UCCL_EP_CHECK_RUNTIME(length <= kMaxPayload, "bootstrap: ", what, ": length ", length,
                        " exceeds the limit of ", kMaxPayload, " bytes");
  std::vector<uint8_t> payload(length);
  if (length > 0) recv_all(fd, payload.data(), length, deadline, what);
  return payload;
}

std::string list(const std::set<int>& ranks) {
  std::string out;
  for (int r : ranks) out += str_cat(out.empty() ? "" : ", ", r);
  return out;
}

}  // namespace

TcpListener TcpListener::bind(const std::string& host, uint16_t port) {
  TcpListener l;
  l.fd_ = listen_on(host, port, &l.port_);
  l.host_ = host;
  return l;
}

TcpListener TcpListener::bind_interface(const std::string& interface, uint16_t port) {
  return bind(interface_ipv4(interface, kInterfaceWhat), port);
}

TcpListener::TcpListener(TcpListener&& other) noexcept
    : fd_(other.fd_), port_(other.port_), host_(std::move(other.host_)) {
  other.fd_ = -1;
}

TcpListener& TcpListener::operator=(TcpListener&& other) noexcept {
  if (this != &other) {
    close_fd(fd_);
    fd_ = other.fd_;
    port_ = other.port_;
    host_ = std::move(other.host_);
    other.fd_ = -1;
  }
  return *this;
}

TcpListener::~TcpListener() {
  close_fd(fd_);
}

int TcpListener::release() {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

TcpBootstrap::TcpBootstrap(const TcpBootstrapOptions& options, TcpListener listener)
    : options_(options) {
  UCCL_EP_CHECK_VALUE(
      options.num_ranks >= 1 && options.rank >= 0 && options.rank < options.num_ranks,
      "bootstrap: rank ", options.rank, " of ", options.num_ranks, " is not a valid rank");
  UCCL_EP_CHECK_VALUE(options.timeout_secs > 0, "bootstrap: timeout_secs must be > 0");
  UCCL_EP_CHECK_VALUE(options.rank == 0 || options.port != 0, "bootstrap: rank ", options.rank,
                      " needs rank 0's port");
  if (options.rank == 0) {
    if (!listener.valid() && options.num_ranks > 1)
      listener = options.interface.empty()
                     ? TcpListener::bind(options.host, options.port)
                     : TcpListener::bind_interface(options.interface, options.port);
    fds_.assign(options.num_ranks, -1);
    if (options.num_ranks > 1) {
      const int fd = listener.release();
      try {
        accept_all(fd);
      } catch (...) {
        close_fd(fd);
        for (int f : fds_) close_fd(f);
        throw;
      }
      close_fd(fd);
    }
    return;
  }
  const std::string source =
      options.interface.empty() ? "" : interface_ipv4(options.interface, kInterfaceWhat);
  const auto deadline = deadline_after(options.timeout_secs);
  const std::string who =
      str_cat("rank ", options.rank, " -> rank 0 at ", options.host, ":", options.port,
              source.empty() ? "" : str_cat(" from ", source, " (", options.interface, ")"));
  fds_.assign(1, connect_until(options.host, options.port, deadline, who, source));
  std::vector<uint8_t> hello;
  put(hello, static_cast<uint32_t>(options.rank), 4);
  put(hello, static_cast<uint32_t>(options.num_ranks), 4);
  send_message(fds_[0], MsgType::kHello, 0, hello, deadline, who);
}

TcpBootstrap::~TcpBootstrap() {
  for (int fd : fds_) close_fd(fd);
}

void TcpBootstrap::accept_all(int listen_fd) {
  const auto deadline = deadline_after(options_.timeout_secs);
  std::set<int> missing;
  for (int r = 1; r < options_.num_ranks; ++r) missing.insert(r);
  while (!missing.empty()) {
    const int fd = accept_until(listen_fd, deadline);
    if (fd < 0) {
      throw Error(ErrorKind::kTimeout,
                  str_cat("bootstrap: rank 0 timed out after ", options_.timeout_secs,
                          " s waiting for ranks [", list(missing), "] to connect (",
                          options_.num_ranks - 1 - missing.size(), " of ", options_.num_ranks - 1,
                          " connected)"));
    }
    std::vector<uint8_t> hello;
    try {
      hello = recv_message(fd, MsgType::kHello, 0, deadline, "rank 0 reading a hello");
    } catch (...) {
      close_fd(fd);
      throw;
    }
    const int rank = hello.size() == 8 ? static_cast<int>(get(hello.data(), 4)) : -1;
    const int n = hello.size() == 8 ? static_cast<int>(get(hello.data() + 4, 4)) : -1;
    if (n != options_.num_ranks || !missing.count(rank)) {
      close_fd(fd);
      throw Error(ErrorKind::kRuntime,
                  str_cat("bootstrap: rank 0 got a hello from rank ", rank, " of ", n,
                          " ranks; expected one of [", list(missing), "] of ", options_.num_ranks,
                          " (duplicate rank or mismatched world size?)"));
    }
    fds_[rank] = fd;
    missing.erase(rank);
  }
}

std::vector<std::vector<uint8_t>> TcpBootstrap::all_gather(const std::vector<uint8_t>& local) {
  return gather(local, "all_gather");
}

void TcpBootstrap::barrier() {
  gather({}, "barrier");
}

std::vector<std::vector<uint8_t>> TcpBootstrap::gather(const std::vector<uint8_t>& local,
                                                       const char* op) {
  const uint64_t seq = ++seq_;
  const std::string what = str_cat(op, " #", seq, " on rank ", options_.rank);
  if (options_.num_ranks == 1) return {local};
  if (options_.rank == 0) return gather_root(local, what);
  const auto deadline = deadline_after(options_.timeout_secs);
  send_message(fds_[0], MsgType::kGather, seq, local, deadline, what + " sending to rank 0");
  const std::vector<uint8_t> all =
      recv_message(fds_[0], MsgType::kResult, seq, deadline,
                   str_cat(what, " waiting ", options_.timeout_secs,
                           " s for rank 0's result (a rank has not joined, or rank 0 exited)"));
  // Result: u32 count, then count x (u64 length, bytes).
  std::vector<std::vector<uint8_t>> out;
  size_t pos = 0;
  auto need = [&](size_t n) {
    UCCL_EP_CHECK_RUNTIME(all.size() - pos >= n, "bootstrap: ", what,
                          ": malformed result from rank 0");
  };
  need(4);
  const uint32_t count = static_cast<uint32_t>(get(all.data(), 4));
  pos = 4;
  UCCL_EP_CHECK_RUNTIME(count == static_cast<uint32_t>(options_.num_ranks), "bootstrap: ", what,
                        ": result holds ", count, " ranks, expected ", options_.num_ranks);
  for (uint32_t r = 0; r < count; ++r) {
    need(8);
    const uint64_t len = get(all.data() + pos, 8);
    pos += 8;
    need(len);
    out.emplace_back(all.begin() + pos, all.begin() + pos + len);
    pos += len;
  }
  UCCL_EP_CHECK_RUNTIME(pos == all.size(), "bootstrap: ", what, ": trailing bytes in the result");
  return out;
}

std::vector<std::vector<uint8_t>> TcpBootstrap::gather_root(const std::vector<uint8_t>& local,
                                                            const std::string& what) {
  const uint64_t seq = seq_;
  const auto deadline = deadline_after(options_.timeout_secs);
  std::vector<std::vector<uint8_t>> out(options_.num_ranks);
  out[0] = local;
  std::set<int> missing;
  for (int r = 1; r < options_.num_ranks; ++r) missing.insert(r);
  while (!missing.empty()) {
    std::vector<pollfd> fds;
    for (int r : missing) fds.push_back(pollfd{fds_[r], POLLIN, 0});
    const int ready = ::poll(fds.data(), fds.size(), millis_left(deadline));
    if (ready < 0 && errno == EINTR) continue;
    UCCL_EP_CHECK_RUNTIME(ready >= 0, "bootstrap: ", what, ": poll failed (errno ", errno, ")");
    if (ready == 0) {
      throw Error(ErrorKind::kTimeout,
                  str_cat("bootstrap: ", what, " timed out after ", options_.timeout_secs,
                          " s waiting for ranks [", list(missing), "] (",
                          options_.num_ranks - 1 - missing.size(), " of ", options_.num_ranks - 1,
                          " arrived)"));
    }
    for (const pollfd& p : fds) {
      if (p.revents == 0) continue;
      int rank = 0;
      while (fds_[rank] != p.fd) ++rank;
      out[rank] = recv_message(p.fd, MsgType::kGather, seq, deadline,
                               str_cat(what, " receiving from rank ", rank));
      missing.erase(rank);
    }
  }
  std::vector<uint8_t> result;
  put(result, static_cast<uint32_t>(options_.num_ranks), 4);
  for (const auto& v : out) {
    put(result, v.size(), 8);
    result.insert(result.end(), v.begin(), v.end());
  }
  for (int r = 1; r < options_.num_ranks; ++r)
    send_message(fds_[r], MsgType::kResult, seq, result, deadline,
                 str_cat(what, " sending the result to rank ", r));
  return out;
}

}  // namespace uccl::ep::bootstrap
