// Parsing of the environment-variable registry.
#include <gtest/gtest.h>

#include <cstdlib>
#include <set>
#include <string>

#include "common/env.h"
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

TEST(Env, RegistryNamesAreUniqueAndPrefixed) {
  std::set<std::string> names;
  for (const auto& v : kEnvVars) {
    EXPECT_TRUE(names.insert(v.name).second) << v.name;
    EXPECT_EQ(std::string(v.name).rfind("UCCL_", 0), 0u) << v.name;
  }
}

}  // namespace
}  // namespace uccl::ep
