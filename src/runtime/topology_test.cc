// make_topology: NVLink domains from host names, the num_local_ranks option and the override.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "uccl_ep/error.h"
#include "uccl_ep/topology.h"

namespace uccl::ep {
namespace {

std::vector<std::string> hosts(std::initializer_list<const char*> names) {
  return {names.begin(), names.end()};
}

std::string error_of(const std::vector<std::string>& h, int local, int env) {
  try {
    make_topology(0, h, local, env);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kValue);
    return e.what();
  }
  return "";
}

TEST(Topology, GroupsRanksByHost) {
  const auto h = hosts({"a", "a", "a", "a", "b", "b", "b", "b"});
  const Topology t = make_topology(5, h, 0, 0);
  EXPECT_EQ(t.num_local_ranks, 4);
  EXPECT_EQ(t.num_nodes(), 2);
  EXPECT_EQ(t.node(), 1);
  EXPECT_EQ(t.local_rank(), 1);
  EXPECT_EQ(t.local_base(), 4);
  EXPECT_TRUE(t.is_local(7));
  EXPECT_FALSE(t.is_local(3));
  EXPECT_FALSE(t.single_host);
  EXPECT_FALSE(t.all_local());
}

TEST(Topology, OneHostIsOneDomain) {
  const Topology t = make_topology(2, hosts({"a", "a", "a", "a"}), 0, 0);
  EXPECT_EQ(t.num_local_ranks, 4);
  EXPECT_TRUE(t.all_local());
  EXPECT_TRUE(t.single_host);
  EXPECT_EQ(t.describe(), "1 node x 4 ranks");
}

TEST(Topology, OverrideSplitsOneHostIntoEmulatedNodes) {
  const auto h = hosts({"a", "a", "a", "a", "a", "a"});
  for (int local : {1, 2, 3, 6}) {
    const Topology t = make_topology(4, h, 0, local);
    EXPECT_EQ(t.num_local_ranks, local);
    EXPECT_EQ(t.node(), 4 / local);
    EXPECT_TRUE(t.single_host);
  }
  EXPECT_EQ(make_topology(4, h, 0, 2).describe(), "3 nodes x 2 ranks (emulated on one host)");
  // The environment wins over the option; the option wins over the host grouping.
  EXPECT_EQ(make_topology(0, h, 3, 2).num_local_ranks, 2);
  EXPECT_EQ(make_topology(0, h, 3, 0).num_local_ranks, 3);
}

TEST(Topology, RejectsSizesThatDoNotDivideOrSpanHosts) {
  EXPECT_NE(error_of(hosts({"a", "a", "a", "a", "a", "a"}), 0, 4)
                .find("UCCL_EP_NUM_LOCAL_RANKS=4 must divide the number of ranks (6)"),
            std::string::npos);
  EXPECT_NE(error_of(hosts({"a", "a", "b", "b"}), 4, 0).find("different hosts"), std::string::npos);
  EXPECT_NE(error_of(hosts({"a", "a", "b", "b", "b", "b"}), 0, 0).find("consecutive ranks"),
            std::string::npos);
  EXPECT_NE(error_of(hosts({"a", "b", "a", "b"}), 0, 0).find("consecutive ranks"),
            std::string::npos);
  EXPECT_NE(error_of(hosts({"a", "a", "b"}), 0, 0).find("do not split"), std::string::npos);
  EXPECT_NE(error_of(hosts({"a", "a"}), -1, 0).find("num_local_ranks=-1"), std::string::npos);
}

}  // namespace
TEST(Topology, IpcHostMemoryWhenEmulatedNodesShareAGpu) {
  const std::vector<std::string> one_host(4, "h");
  const Topology nodes = make_topology(0, one_host, 0, 2);   // 2 emulated nodes of 2
  const Topology domain = make_topology(0, one_host, 0, 0);  // one NVLink domain
  const std::vector<std::string> own{"h/0", "h/1", "h/2", "h/3"};
  const std::vector<std::string> shared{"h/0", "h/0", "h/0", "h/0"};
  EXPECT_FALSE(ipc_uses_host_memory("auto", nodes, own));
  EXPECT_TRUE(ipc_uses_host_memory("auto", nodes, shared));
  EXPECT_FALSE(ipc_uses_host_memory("auto", domain, shared));  // direct stores stay
  EXPECT_TRUE(ipc_uses_host_memory("host", domain, own));
  EXPECT_FALSE(ipc_uses_host_memory("device", nodes, shared));
  // The same bus id on two hosts is two GPUs.
  const std::vector<std::string> hosts{"a", "a", "b", "b"};
  const Topology two = make_topology(0, hosts, 0, 0);
  EXPECT_FALSE(ipc_uses_host_memory("auto", two, {"a/0", "a/1", "b/0", "b/1"}));
}

}  // namespace uccl::ep
