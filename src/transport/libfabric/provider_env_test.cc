// NetworkHints as libfabric provider variables: what each hint maps to, that a variable the
// user set wins, which hints a provider cannot take, and the range checks of the options.
#include "transport/libfabric/provider_env.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "common/error.h"
#include "transport/transport.h"

namespace uccl::ep::transport::libfabric {
namespace {

const char* const kVariables[] = {"FI_TCP_IFACE", "FI_VERBS_IFACE", "FI_VERBS_GID_IDX"};

std::string env_or_unset(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "<unset>" : v;
}

class ProviderEnv : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : kVariables) unsetenv(v);
  }
  void TearDown() override {
    for (const char* v : kVariables) unsetenv(v);
  }
};

TEST_F(ProviderEnv, UnsetHintsMapToNothing) {
  EXPECT_TRUE(provider_variables(NetworkHints{}).empty());
  EXPECT_TRUE(export_provider_variables(NetworkHints{}).empty());
  for (const char* v : kVariables) EXPECT_EQ(env_or_unset(v), "<unset>") << v;
  EXPECT_TRUE(ignored_hints(NetworkHints{}, "tcp;ofi_rxm").empty());
}

TEST_F(ProviderEnv, InterfaceAndGidIndexAreExported) {
  const NetworkHints hints{.interface = "lo", .gid_index = 3};
  const auto vars = provider_variables(hints);
  ASSERT_EQ(vars.size(), 3u);
  EXPECT_EQ(vars[0].name, "FI_TCP_IFACE");
  EXPECT_EQ(vars[1].name, "FI_VERBS_IFACE");
  EXPECT_EQ(vars[2].name, "FI_VERBS_GID_IDX");
  EXPECT_EQ(vars[2].hint, "UCCL_IB_GID_INDEX");
  EXPECT_TRUE(export_provider_variables(hints).empty());
  EXPECT_EQ(env_or_unset("FI_TCP_IFACE"), "lo");
  EXPECT_EQ(env_or_unset("FI_VERBS_IFACE"), "lo");
  EXPECT_EQ(env_or_unset("FI_VERBS_GID_IDX"), "3");
  // Exporting again with the same values changes nothing and reports nothing.
  EXPECT_TRUE(export_provider_variables(hints).empty());
  EXPECT_EQ(env_or_unset("FI_VERBS_GID_IDX"), "3");
}

TEST_F(ProviderEnv, AVariableTheUserSetWins) {
  setenv("FI_TCP_IFACE", "eth7", 1);
  setenv("FI_VERBS_GID_IDX", "1", 1);
  const auto kept = export_provider_variables(NetworkHints{.interface = "lo", .gid_index = 3});
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0], "libfabric: FI_TCP_IFACE='eth7' is set and wins over UCCL_SOCKET_IFNAME='lo'");
  EXPECT_NE(kept[1].find("FI_VERBS_GID_IDX='1' is set and wins over UCCL_IB_GID_INDEX='3'"),
            std::string::npos)
      << kept[1];
  EXPECT_EQ(env_or_unset("FI_TCP_IFACE"), "eth7");
  EXPECT_EQ(env_or_unset("FI_VERBS_IFACE"), "lo");  // this one was unset: exported
  EXPECT_EQ(env_or_unset("FI_VERBS_GID_IDX"), "1");
}

TEST_F(ProviderEnv, HintsAProviderCannotTakeAreNamed) {
  const NetworkHints all{
      .interface = "lo", .gid_index = 2, .service_level = 3, .traffic_class = 104};
  const auto verbs = ignored_hints(all, "verbs;ofi_rxm");
  ASSERT_EQ(verbs.size(), 2u);  // verbs takes the GID index
  EXPECT_NE(verbs[0].find("UCCL_IB_SL=3 is ignored: libfabric provider verbs;ofi_rxm"),
            std::string::npos)
      << verbs[0];
  EXPECT_NE(verbs[1].find("UCCL_IB_TC=104 is ignored"), std::string::npos) << verbs[1];
  const auto tcp = ignored_hints(all, "tcp;ofi_rxm");
  ASSERT_EQ(tcp.size(), 3u);
  EXPECT_NE(tcp[0].find("UCCL_IB_GID_INDEX=2 is ignored: libfabric provider tcp;ofi_rxm"),
            std::string::npos)
      << tcp[0];
  // The interface alone is never reported: tcp and verbs take it, the bootstrap uses it.
  EXPECT_TRUE(ignored_hints(NetworkHints{.interface = "lo"}, "efa").empty());
}

TEST(TransportOptionsCheck, NetworkHintsAreRangeChecked) {
  auto message = [](const NetworkHints& n) -> std::string {
    TransportOptions o;
    o.network = n;
    try {
      check_transport_options(o);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kValue);
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(message(NetworkHints{.gid_index = 255, .service_level = 15, .traffic_class = 255}), "");
  EXPECT_NE(message(NetworkHints{.gid_index = 256}).find("network.gid_index=256"),
            std::string::npos);
  EXPECT_NE(message(NetworkHints{.service_level = 16}).find("UCCL_IB_SL"), std::string::npos);
  EXPECT_NE(message(NetworkHints{.traffic_class = -2}).find("network.traffic_class=-2"),
            std::string::npos);
}

}  // namespace
}  // namespace uccl::ep::transport::libfabric
