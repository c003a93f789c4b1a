// A TCP rendezvous implementing Bootstrap: rank 0 listens on host:port, the others connect to
// it; all_gather is a star through rank 0. Messages carry a magic, a version, a type, a
// sequence number and a checked length, encoded field by field (never raw struct copies).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bootstrap/bootstrap.h"

namespace uccl::ep::bootstrap {

struct TcpBootstrapOptions {
  int rank = 0;
  int num_ranks = 1;
  std::string host = "127.0.0.1";  // rank 0's address: rank 0 binds it, the others connect
  uint16_t port = 0;               // rank 0's port (rank 0 with port 0: any free port)
  double timeout_secs = 100;       // deadline of each step (connect, each collective)
  /// UCCL_SOCKET_IFNAME: when set, rank 0 listens on this interface's IPv4 address (instead of
  /// `host`) and the other ranks connect from theirs, so the bootstrap's traffic uses it.
  std::string interface{};
};

/// Rank 0's listening socket, created before the other ranks start so they can be told the port
/// (tests bind port 0 and pass port() to the children). Move-only; closes on destruction.
class TcpListener {
 public:
  TcpListener() = default;
  /// Binds host:port (0: any free port) and listens. Throws Error(kRuntime).
  static TcpListener bind(const std::string& host, uint16_t port);
  /// Binds the IPv4 address of network interface `interface` (UCCL_SOCKET_IFNAME) at `port`.
  /// Throws Error(kValue) when the interface does not exist or has no IPv4 address.
  static TcpListener bind_interface(const std::string& interface, uint16_t port);
  TcpListener(TcpListener&& other) noexcept;
  TcpListener& operator=(TcpListener&& other) noexcept;
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;
  ~TcpListener();
  bool valid() const { return fd_ >= 0; }
  uint16_t port() const { return port_; }
  /// The address it listens on, as given to bind (the interface's, with bind_interface).
  const std::string& host() const { return host_; }
  /// Hands the socket over (the listener becomes empty).
  int release();

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::string host_{};
};

class TcpBootstrap final : public Bootstrap {
 public:
  /// Rank 0 accepts the other num_ranks - 1 ranks on `listener` (or binds options.host:port when
  /// it is empty); the other ranks connect to options.host:port, retrying until the deadline.
  /// Returns when every rank is connected; throws Error(kTimeout) naming the missing ranks.
  explicit TcpBootstrap(const TcpBootstrapOptions& options, TcpListener listener = {});
  ~TcpBootstrap() override;
  TcpBootstrap(const TcpBootstrap&) = delete;
  TcpBootstrap& operator=(const TcpBootstrap&) = delete;

  int rank() const override { return options_.rank; }
  int num_ranks() const override { return options_.num_ranks; }
  std::vector<std::vector<uint8_t>> all_gather(const std::vector<uint8_t>& local) override;
  void barrier() override;

 private:
  void accept_all(int listen_fd);
  std::vector<std::vector<uint8_t>> gather(const std::vector<uint8_t>& local, const char* op);
  std::vector<std::vector<uint8_t>> gather_root(const std::vector<uint8_t>& local,
                                                const std::string& what);

  TcpBootstrapOptions options_;
  std::vector<int> fds_;  // rank 0: the socket of each rank (fds_[0] unused); others: fds_[0]
  uint64_t seq_ = 0;      // collectives so far
};

}  // namespace uccl::ep::bootstrap
