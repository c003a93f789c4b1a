// The registry (names, option checks, stubs) and the environment variables that choose a
// transport.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <vector>

#include "common/env.h"
#include "transport/shared_memory.h"
#include "transport/transport.h"
#include "uccl_ep/error.h"

namespace uccl::ep::transport {
namespace {

ErrorKind kind_of(const std::function<void()>& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.kind();
  }
  ADD_FAILURE() << "no error";
  return ErrorKind::kNotImplemented;
}

TEST(Registry, BuildsTheNullTransport) {
  auto t = make_transport("null", {.rank = 1, .num_ranks = 2, .num_pipes = 3});
  EXPECT_EQ(t->capabilities().name, "null");
}

TEST(Registry, RejectsUnknownNamesAndBadOptions) {
  std::string m;
  EXPECT_EQ(kind_of([] { make_transport("verbs", {}); }, &m), ErrorKind::kValue);
  EXPECT_NE(m.find("auto, libfabric, ipc, null"), std::string::npos) << m;
  // The fake transport needs a fabric shared by the ranks: tests build it themselves.
  EXPECT_EQ(kind_of([] { make_transport("fake", {}); }, &m), ErrorKind::kValue);
  EXPECT_NE(m.find("unknown transport 'fake'"), std::string::npos) << m;
  EXPECT_EQ(kind_of([] { make_transport("null", {.rank = 2, .num_ranks = 2}); }),
            ErrorKind::kValue);
  EXPECT_EQ(kind_of([] { make_transport("null", {.num_pipes = 0}); }, &m), ErrorKind::kValue);
  EXPECT_NE(m.find("num_pipes=0"), std::string::npos) << m;
  EXPECT_EQ(kind_of([] { make_transport("null", {.num_pipes = kMaxPipes + 1}); }),
            ErrorKind::kValue);
  EXPECT_EQ(kind_of([] { make_transport("null", {.max_inflight = 0}); }), ErrorKind::kValue);
  EXPECT_EQ(kind_of([] { make_transport("null", {.timeout_secs = 0}); }), ErrorKind::kValue);
}

TEST(Registry, UnavailableTransportsSayWhy) {
  // This CI machine has no GPU (ipc needs one) and the TSan build replaces ipc by a stub; both
  // answer kRuntime with a reason.
  // On a GPU machine ipc may be built and work; then there is nothing to check here.
  try {
    make_transport("ipc", {.rank = 0, .num_ranks = 2});
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kRuntime);
    EXPECT_NE(std::string(e.what()).find("ipc transport unavailable"), std::string::npos)
        << e.what();
  }
}

TEST(Registry, AutoIsLibfabricOrSaysWhatWasTried) {
  // Built without libfabric (the stub) or with no working provider, "auto" names the reason;
  // otherwise it is the libfabric transport.
  try {
    auto t = make_transport("auto", {.rank = 0, .num_ranks = 1});
    EXPECT_EQ(t->capabilities().name.rfind("libfabric:", 0), 0u) << t->capabilities().name;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kRuntime);
    const std::string m = e.what();
    EXPECT_NE(m.find("transport 'auto'"), std::string::npos) << m;
    EXPECT_TRUE(m.find("built without libfabric") != std::string::npos ||
                m.find("no usable RDM provider") != std::string::npos)
        << m;
  }
}

TEST(SharedMemory, CreatesZeroedMappingAndUnlinks) {
  const std::string name = SharedMemory::unique_name("test");
  {
    SharedMemory m = SharedMemory::create(name, 4096);
    ASSERT_NE(m.data(), nullptr);
    EXPECT_EQ(static_cast<const char*>(m.data())[4095], 0);
    EXPECT_THROW(SharedMemory::create(name, 4096), Error);  // exclusive
  }
  SharedMemory again = SharedMemory::create(name, 64);  // unlinked by the destructor
  EXPECT_EQ(again.bytes(), 64u);
}

// A process killed before its destructors ran leaves its objects behind; a later process
// with the same pid must still get fresh names (the counter alone repeats the old ones).
TEST(SharedMemory, NamesAvoidWhatAProcessWithThisPidLeftBehind) {
  const std::string pid = std::to_string(getpid());
  std::vector<std::string> stale;
  for (int k = 0; k < 256; ++k) {
    stale.push_back("/uccl_ep_" + pid + "_sig_" + std::to_string(k));
    const int fd = shm_open(stale.back().c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd >= 0) close(fd);
  }
  const std::string a = SharedMemory::unique_name("sig"), b = SharedMemory::unique_name("sig");
  EXPECT_NE(a, b);
  EXPECT_EQ(a.rfind("/uccl_ep_" + pid + "_sig_", 0), 0u) << a;
  EXPECT_NO_THROW(SharedMemory::create(a, 64));
  for (const std::string& n : stale) shm_unlink(n.c_str());
}

TEST(Env, ParsesTransportAndProvider) {
  EXPECT_EQ(parse_transport_name("ipc"), "ipc");
  EXPECT_THROW(parse_transport_name("rdma"), Error);
  EXPECT_EQ(parse_fi_provider("tcp;ofi_rxm"), "tcp;ofi_rxm");
  EXPECT_EQ(parse_fi_provider("auto"), "auto");
  for (const char* bad : {"", "tcp ofi_rxm", "a/b", "x$(reboot)"})
    EXPECT_THROW(parse_fi_provider(bad), Error) << bad;
  setenv("UCCL_EP_TRANSPORT", "null", 1);
  setenv("UCCL_EP_FI_PROVIDER", "shm", 1);
  EnvSettings s = read_env_settings();
  EXPECT_EQ(s.transport, "null");
  EXPECT_EQ(s.fi_provider, "shm");
  setenv("UCCL_EP_TRANSPORT", "nccl", 1);
  std::string m;
  EXPECT_EQ(kind_of([] { read_env_settings(); }, &m), ErrorKind::kValue);
  EXPECT_NE(m.find("UCCL_EP_TRANSPORT='nccl'"), std::string::npos) << m;
  unsetenv("UCCL_EP_TRANSPORT");
  unsetenv("UCCL_EP_FI_PROVIDER");
  s = read_env_settings();
  EXPECT_EQ(s.transport, "auto");
  EXPECT_EQ(s.fi_provider, "auto");
}

}  // namespace
}  // namespace uccl::ep::transport
