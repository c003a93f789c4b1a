// Parsing of the environment-variable registry.
#include <gtest/gtest.h>

#include <cstdlib>
#include <set>
#include <string>

#include "common/env.h"
#include "runtime/error_report.h"
#include "uccl_ep/error.h"

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

TEST(Env, ReadsTheCombineTailShare) {
  unsetenv("UCCL_EP_COMBINE_TAIL_SHARE");
  EXPECT_EQ(read_env_settings().combine_tail_share, 0);
  setenv("UCCL_EP_COMBINE_TAIL_SHARE", "25", 1);
  EXPECT_EQ(read_env_settings().combine_tail_share, 25);
  for (const char* bad : {"91", "-1", "x", ""}) {
    setenv("UCCL_EP_COMBINE_TAIL_SHARE", bad, 1);
    try {
      read_env_settings();
      ADD_FAILURE() << "no error for '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kValue);
      EXPECT_NE(std::string(e.what()).find("UCCL_EP_COMBINE_TAIL_SHARE='"), std::string::npos);
    }
  }
  unsetenv("UCCL_EP_COMBINE_TAIL_SHARE");
}

TEST(Env, RegistryNamesAreUniqueAndPrefixed) {
  std::set<std::string> names;
  for (const auto& v : kEnvVars) {
    EXPECT_TRUE(names.insert(v.name).second) << v.name;
    EXPECT_EQ(std::string(v.name).rfind("UCCL_", 0), 0u) << v.name;
  }
}

TEST(ErrorReport, NamesRankPeerChannelAndCounters) {
  protocol::HostErrorRecord r{};
  r.flag = 1;
  r.site = static_cast<int32_t>(protocol::WaitSite::kDispatchTail);
  r.rank = 3;
  r.peer = 1;
  r.channel = 5;
  r.expected = 17;
  r.observed = 12;
  r.waited_ns = 5'000'000'000ull;
  const std::string m = runtime::describe_timeout(r, 5.0);
  for (const char* part : {"rank 3", "peer 1", "channel 5", "expected 17", "observed 12",
                           "timed out", "ring tail", "5.0 s"})
    EXPECT_NE(m.find(part), std::string::npos) << part << " missing in: " << m;
  r.site = static_cast<int32_t>(protocol::WaitSite::kDispatchPublish);
  EXPECT_NE(runtime::describe_timeout(r, 5.0).find("copy warps' progress"), std::string::npos);
  r.site = static_cast<int32_t>(protocol::WaitSite::kRecvOverflow);
  EXPECT_NE(runtime::describe_timeout(r, 5.0).find("num_worst_tokens"), std::string::npos);
}

}  // namespace
}  // namespace uccl::ep
