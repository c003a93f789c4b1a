// The TCP rendezvous: ranks as threads and as processes, all_gather contents, barriers, and
// deadlines that name the missing rank; malformed peers are refused.
#include "bootstrap/tcp_bootstrap.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "bootstrap/socket.h"
#include "bootstrap/testing/child_process.h"
#include "common/error.h"

namespace uccl::ep::bootstrap {
namespace {

// Rank r contributes r * 3 bytes (rank 0: nothing) of value r + round.
std::vector<uint8_t> contribution(int rank, int round) {
  return std::vector<uint8_t>(rank * 3, static_cast<uint8_t>(rank + round));
}

// What every rank runs: three all_gathers with checks and a barrier between them.
void exercise(Bootstrap& b) {
  for (int round = 0; round < 3; ++round) {
    const auto all = b.all_gather(contribution(b.rank(), round));
    UCCL_EP_CHECK_RUNTIME(static_cast<int>(all.size()) == b.num_ranks(), "wrong rank count");
    for (int r = 0; r < b.num_ranks(); ++r)
      UCCL_EP_CHECK_RUNTIME(all[r] == contribution(r, round), "rank ", b.rank(),
                            " got a wrong contribution of rank ", r, " in round ", round);
    b.barrier();
  }
}

// The shared-memory objects a dead child left go with it; those of other pids stay.
TEST(ChildProcess, RemovesTheShmObjectsADeadChildLeft) {
  const pid_t dead = 2000000000;  // above any pid_max: no live process has it
  const std::string p = std::to_string(dead), other = std::to_string(dead + 1);
  const std::vector<std::string> left = {"/uccl_ep_" + p + "_sig_0_ab", "/" + p + ":0:0"};
  const std::string keep = "/uccl_ep_" + other + "_sig_0_ab";
  for (const std::string& n : left) close(shm_open(n.c_str(), O_RDWR | O_CREAT, 0600));
  close(shm_open(keep.c_str(), O_RDWR | O_CREAT, 0600));
  uccl::ep::testing::remove_shm_leftovers(dead);
  for (const std::string& n : left) {
    EXPECT_LT(shm_open(n.c_str(), O_RDONLY, 0), 0) << n << " was not removed";
    shm_unlink(n.c_str());
  }
  const int fd = shm_open(keep.c_str(), O_RDONLY, 0);
  EXPECT_GE(fd, 0) << keep << " belongs to another pid and must stay";
  if (fd >= 0) close(fd);
  shm_unlink(keep.c_str());
}

TEST(TcpBootstrap, RanksAsThreads) {
  constexpr int kRanks = 5;
  TcpListener listener = TcpListener::bind("127.0.0.1", 0);
  const uint16_t port = listener.port();
  std::vector<std::string> errors(kRanks);
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r) {
    threads.emplace_back([&, r] {
      try {
        TcpBootstrapOptions o{.rank = r, .num_ranks = kRanks, .port = port, .timeout_secs = 20};
        TcpBootstrap b(o, r == 0 ? std::move(listener) : TcpListener{});
        exercise(b);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < kRanks; ++r)
    EXPECT_TRUE(errors[r].empty()) << "rank " << r << ": " << errors[r];
}

TEST(TcpBootstrap, RanksAsProcesses) {
  constexpr int kRanks = 4;
  TcpListener listener = TcpListener::bind("127.0.0.1", 0);
  const std::string port = std::to_string(listener.port());
  std::vector<testing::ChildProcess> children;
  for (int r = 1; r < kRanks; ++r)
    children.push_back(
        testing::ChildProcess::spawn({"--child=exercise", "--rank=" + std::to_string(r),
                                      "--ranks=" + std::to_string(kRanks), "--port=" + port}));
  TcpBootstrap b({.rank = 0, .num_ranks = kRanks, .timeout_secs = 20}, std::move(listener));
  exercise(b);
  for (int r = 1; r < kRanks; ++r) {
    const testing::ChildExit e = children[r - 1].wait(20);
    EXPECT_TRUE(e.ok()) << "rank " << r << ": " << e.describe();
  }
}

TEST(TcpBootstrap, MissingRankIsNamedAtTheDeadline) {
  TcpListener listener = TcpListener::bind("127.0.0.1", 0);
  const uint16_t port = listener.port();
  std::thread r1([port] {
    try {
      TcpBootstrap b({.rank = 1, .num_ranks = 3, .port = port, .timeout_secs = 5});
    } catch (const Error&) {
      // rank 0 gives up and closes; rank 1 may see that later
    }
  });
  try {
    TcpBootstrap b({.rank = 0, .num_ranks = 3, .timeout_secs = 0.5}, std::move(listener));
    FAIL() << "rank 2 never came, yet the bootstrap completed";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kTimeout);
    const std::string m = e.what();
    EXPECT_NE(m.find("waiting for ranks [2]"), std::string::npos) << m;
    EXPECT_NE(m.find("1 of 2 connected"), std::string::npos) << m;
  }
  r1.join();
}

TEST(TcpBootstrap, RankThatLeavesMidCollectiveIsReported) {
  TcpListener listener = TcpListener::bind("127.0.0.1", 0);
  const std::string port = std::to_string(listener.port());
  testing::ChildProcess child =
      testing::ChildProcess::spawn({"--child=leave", "--rank=1", "--ranks=2", "--port=" + port});
  TcpBootstrap b({.rank = 0, .num_ranks = 2, .timeout_secs = 10}, std::move(listener));
  b.barrier();  // the child leaves after this one
  const auto start = Clock::now();
  try {
    b.all_gather({1, 2, 3});
    FAIL() << "no error although rank 1 exited";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kRuntime) << e.what();
    const std::string m = e.what();
    EXPECT_NE(m.find("from rank 1"), std::string::npos) << m;
    EXPECT_NE(m.find("closed the connection"), std::string::npos) << m;
  }
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  EXPECT_TRUE(child.wait(10).ok());
}

TEST(TcpBootstrap, RefusesAPeerThatIsNotABootstrap) {
  TcpListener listener = TcpListener::bind("127.0.0.1", 0);
  const uint16_t port = listener.port();
  std::thread intruder([port] {
    const int fd = connect_until("127.0.0.1", port, deadline_after(5), "intruder");
    const char junk[32] = "GET / HTTP/1.0\r\n\r\n";
    send_all(fd, junk, sizeof(junk), deadline_after(5), "intruder");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    close_fd(fd);
  });
  try {
    TcpBootstrap b({.rank = 0, .num_ranks = 2, .timeout_secs = 5}, std::move(listener));
    FAIL() << "accepted a non-bootstrap peer";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad magic"), std::string::npos) << e.what();
  }
  intruder.join();
}

// UCCL_SOCKET_IFNAME: rank 0 listens on the interface's address, the others connect from theirs.
TEST(TcpBootstrap, InterfaceGivesTheAddresses) {
  constexpr int kRanks = 3;
  TcpListener listener = TcpListener::bind_interface("lo", 0);
  EXPECT_EQ(listener.host(), "127.0.0.1");
  const uint16_t port = listener.port();
  const std::string host = listener.host();
  std::vector<std::string> errors(kRanks);
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r) {
    threads.emplace_back([&, r] {
      try {
        TcpBootstrap b({.rank = r,
                        .num_ranks = kRanks,
                        .host = host,
                        .port = port,
                        .timeout_secs = 20,
                        .interface = "lo"},
                       r == 0 ? std::move(listener) : TcpListener{});
        exercise(b);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < kRanks; ++r)
    EXPECT_TRUE(errors[r].empty()) << "rank " << r << ": " << errors[r];
}

TEST(TcpBootstrap, UnknownInterfaceIsAValueErrorNamingIt) {
  for (int rank : {0, 1}) {
    try {
      TcpBootstrap b({.rank = rank, .num_ranks = 2, .port = 1, .interface = "uccl_no_if9"});
      ADD_FAILURE() << "rank " << rank << " accepted an interface that does not exist";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kValue);
      const std::string what = e.what();
      EXPECT_NE(what.find("UCCL_SOCKET_IFNAME"), std::string::npos) << what;
      EXPECT_NE(what.find("no network interface named 'uccl_no_if9'"), std::string::npos) << what;
    }
  }
}

// The connection leaves from the source address asked for (127.0.0.2 is a loopback address
// that is not lo's primary one, so the peer sees the difference).
TEST(Socket, ConnectsFromTheSourceAddress) {
  uint16_t port = 0;
  const int listen_fd = listen_on("127.0.0.1", 0, &port);
  const auto deadline = deadline_after(10);
  const int fd = connect_until("127.0.0.1", port, deadline, "test", "127.0.0.2");
  const int accepted = accept_until(listen_fd, deadline);
  ASSERT_GE(accepted, 0);
  sockaddr_in peer{};
  socklen_t len = sizeof(peer);
  ASSERT_EQ(getpeername(accepted, reinterpret_cast<sockaddr*>(&peer), &len), 0);
  char text[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &peer.sin_addr, text, sizeof(text));
  EXPECT_STREQ(text, "127.0.0.2");
  close_fd(accepted);
  close_fd(fd);
  close_fd(listen_fd);
  try {
    connect_until("127.0.0.1", port, deadline, "test", "not-an-address");
    ADD_FAILURE() << "a source that is not an IPv4 address was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kValue);
  }
}

TEST(TcpBootstrap, SingleRankNeedsNoNetwork) {
  TcpBootstrap b({.rank = 0, .num_ranks = 1});
  const auto all = b.all_gather({9});
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0], std::vector<uint8_t>{9});
  b.barrier();
}

// Child roles: --child=exercise (run the checks) or --child=leave (one barrier, then exit).
int run_child(int argc, char** argv) {
  const std::string role = testing::arg_value(argc, argv, "child");
  TcpBootstrapOptions o;
  o.rank = std::stoi(testing::arg_value(argc, argv, "rank"));
  o.num_ranks = std::stoi(testing::arg_value(argc, argv, "ranks"));
  o.port = static_cast<uint16_t>(std::stoi(testing::arg_value(argc, argv, "port")));
  o.timeout_secs = 20;
  try {
    TcpBootstrap b(o);
    if (role == "exercise") exercise(b);
    if (role == "leave") b.barrier();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "child rank %d: %s\n", o.rank, e.what());
    return 1;
  }
}

}  // namespace
}  // namespace uccl::ep::bootstrap

int main(int argc, char** argv) {
  if (!uccl::ep::testing::arg_value(argc, argv, "child").empty())
    return uccl::ep::bootstrap::run_child(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
