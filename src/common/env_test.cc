// Parsing of the environment-variable registry.
#include <gtest/gtest.h>

#include <cstdlib>
#include <set>
#include <string>

#include "common/env.h"
#include "common/error.h"

namespace uccl::ep {
namespace {

TEST(Env, ParsesTimeout) {
  EXPECT_DOUBLE_EQ(parse_timeout_secs("2.5"), 2.5);
  for (const char* bad : {"", "0", "-1", "abc", "5s", "inf", "nan"})
    EXPECT_THROW(parse_timeout_secs(bad), Error) << bad;
}

TEST(Env, ParsesLogLevel) {
  EXPECT_EQ(parse_log_level("debug"), LogLevel::kDebug);
  EXPECT_EQ(parse_log_level("error"), LogLevel::kError);
  EXPECT_THROW(parse_log_level("verbose"), Error);
}

TEST(Env, ReadsAndReportsTheVariable) {
  setenv("UCCL_EP_TIMEOUT_SECS", "7", 1);
  EXPECT_DOUBLE_EQ(read_env_settings().timeout_secs, 7.0);
  setenv("UCCL_EP_TIMEOUT_SECS", "never", 1);
  try {
    read_env_settings();
    ADD_FAILURE() << "no error for a bad value";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kValue);
    EXPECT_NE(std::string(e.what()).find("UCCL_EP_TIMEOUT_SECS='never'"), std::string::npos);
  }
  unsetenv("UCCL_EP_TIMEOUT_SECS");
  EXPECT_DOUBLE_EQ(read_env_settings().timeout_secs, 100.0);
}

// The message of the Error(kValue) `f` throws ("" and a test failure when it throws nothing
// or another kind).
template <typename F>
std::string value_error(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kValue) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(Env, ParsesSocketInterface) {
  EXPECT_EQ(parse_socket_ifname("lo"), "lo");   // every Linux host has a loopback interface
  EXPECT_EQ(parse_socket_ifname("=lo"), "lo");  // NCCL's exact-match prefix
  EXPECT_TRUE(contains(value_error([] { parse_socket_ifname("lo,eth0"); }),
                       "UCCL_SOCKET_IFNAME='lo,eth0' is invalid: a list"));
  EXPECT_TRUE(contains(value_error([] { parse_socket_ifname("^docker"); }),
                       "UCCL_SOCKET_IFNAME='^docker' is invalid: excluding"));
  const std::string unknown = value_error([] { parse_socket_ifname("uccl_no_if9"); });
  EXPECT_TRUE(contains(unknown,
                       "UCCL_SOCKET_IFNAME='uccl_no_if9' is invalid: no network "
                       "interface named 'uccl_no_if9'"))
      << unknown;
  EXPECT_TRUE(contains(unknown, "lo")) << "the message lists the host's interfaces: " << unknown;
  for (const char* bad : {"", "=", "a/b", "eth 0", "a_name_of_16_chr"})
    EXPECT_TRUE(contains(value_error([&] { parse_socket_ifname(bad); }),
                         str_cat("UCCL_SOCKET_IFNAME='", bad, "' is invalid")))
        << bad;
}

TEST(Env, ParsesBooleans) {
  EXPECT_TRUE(parse_bool_var("UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC", "1"));
  EXPECT_FALSE(parse_bool_var("UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC", "0"));
  for (const char* bad : {"", "true", "yes", "2", " 1"})
    EXPECT_TRUE(contains(
        value_error([&] { parse_bool_var("UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC", bad); }),
        str_cat("UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC='", bad, "' is invalid: expected 0 or 1")))
        << bad;
}

// The variables UCCL-EP users set: defaults, values, ranges, and empty meaning unset.
TEST(Env, ReadsTheUcclEpNetworkVariables) {
  const char* vars[] = {"UCCL_SOCKET_IFNAME", "UCCL_IB_GID_INDEX", "UCCL_IB_SL", "UCCL_IB_TC",
                        "UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC"};
  for (const char* v : vars) unsetenv(v);
  EnvSettings s = read_env_settings();
  EXPECT_EQ(s.socket_ifname, "");
  EXPECT_EQ(s.ib_gid_index, -1);
  EXPECT_EQ(s.ib_service_level, -1);
  EXPECT_EQ(s.ib_traffic_class, -1);
  EXPECT_FALSE(s.aggressive_atomic);

  setenv("UCCL_SOCKET_IFNAME", "lo", 1);
  setenv("UCCL_IB_GID_INDEX", "255", 1);
  setenv("UCCL_IB_SL", "15", 1);
  setenv("UCCL_IB_TC", "0", 1);
  setenv("UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC", "1", 1);
  s = read_env_settings();
  EXPECT_EQ(s.socket_ifname, "lo");
  EXPECT_EQ(s.ib_gid_index, 255);
  EXPECT_EQ(s.ib_service_level, 15);
  EXPECT_EQ(s.ib_traffic_class, 0);
  EXPECT_TRUE(s.aggressive_atomic);

  setenv("UCCL_SOCKET_IFNAME", "", 1);  // empty: unset
  setenv("UCCL_IB_GID_INDEX", "", 1);
  s = read_env_settings();
  EXPECT_EQ(s.socket_ifname, "");
  EXPECT_EQ(s.ib_gid_index, -1);

  const struct {
    const char* name;
    const char* value;
    const char* message;
  } bad[] = {
      {"UCCL_IB_GID_INDEX", "256",
       "UCCL_IB_GID_INDEX='256' is invalid: expected an integer in [0, 255]"},
      {"UCCL_IB_GID_INDEX", "-1", "UCCL_IB_GID_INDEX='-1' is invalid"},
      {"UCCL_IB_SL", "16", "UCCL_IB_SL='16' is invalid: expected an integer in [0, 15]"},
      {"UCCL_IB_TC", "0x68", "UCCL_IB_TC='0x68' is invalid: expected an integer in [0, 255]"},
      {"UCCL_IB_TC", "256", "UCCL_IB_TC='256' is invalid"},
      {"UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC", "on", "UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC='on'"},
      {"UCCL_SOCKET_IFNAME", "uccl_no_if9", "UCCL_SOCKET_IFNAME='uccl_no_if9' is invalid"},
  };
  for (const auto& b : bad) {
    for (const char* v : vars) unsetenv(v);
    setenv(b.name, b.value, 1);
    EXPECT_TRUE(contains(value_error([] { read_env_settings(); }), b.message)) << b.message;
  }
  for (const char* v : vars) unsetenv(v);
}

TEST(Env, ParsesIpcMemory) {
  unsetenv("UCCL_EP_IPC_MEMORY");
  EXPECT_EQ(read_env_settings().ipc_memory, "auto");
  for (const char* v : {"auto", "device", "host"}) {
    setenv("UCCL_EP_IPC_MEMORY", v, 1);
    EXPECT_EQ(read_env_settings().ipc_memory, v);
  }
  setenv("UCCL_EP_IPC_MEMORY", "gpu", 1);
  EXPECT_TRUE(contains(value_error([] { read_env_settings(); }),
                       "UCCL_EP_IPC_MEMORY='gpu' is invalid: expected one of auto, device, host"));
  unsetenv("UCCL_EP_IPC_MEMORY");
}

TEST(Env, RegistryDocumentsTheUcclEpVariables) {
  auto find = [](const std::string& name) -> const EnvVarInfo* {
    for (const auto& v : kEnvVars)
      if (name == v.name) return &v;
    return nullptr;
  };
  const struct {
    const char* name;
    const char* default_value;
    const char* maps_to;  // what the meaning must name
  } expected[] = {
      {"UCCL_SOCKET_IFNAME", "unset", "FI_TCP_IFACE"},
      {"UCCL_IB_GID_INDEX", "unset", "FI_VERBS_GID_IDX"},
      {"UCCL_IB_SL", "unset", "warning"},
      {"UCCL_IB_TC", "unset", "warning"},
      {"UCCL_IB_MAX_INFLIGHT_BYTES", "unlimited", "proxy threads"},
      {"UCCL_IB_MAX_INFLIGHT_NORMAL", "8", "Normal"},
      {"UCCL_IB_MAX_INFLIGHT_LOW_LATENCY", "32", "Low-latency"},
      {"UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC", "0", "fence.acq_rel.sys"},
  };
  for (const auto& e : expected) {
    const EnvVarInfo* v = find(e.name);
    ASSERT_NE(v, nullptr) << e.name;
    EXPECT_STREQ(v->default_value, e.default_value) << e.name;
    EXPECT_TRUE(contains(v->meaning, e.maps_to)) << e.name << ": " << v->meaning;
  }
}

TEST(Env, RegistryNamesAreUniqueAndPrefixed) {
  std::set<std::string> names;
  for (const auto& v : kEnvVars) {
    EXPECT_TRUE(names.insert(v.name).second) << v.name;
    EXPECT_EQ(std::string(v.name).rfind("UCCL_", 0), 0u) << v.name;
  }
}

}  // namespace
}  // namespace uccl::ep
