// GPU test of the command path: GPU kernels push WRITE / WRITE_SIGNAL / FENCE commands from
// many warps; CPU proxies execute them through the ipc transport (GPU 0 -> GPU 1), libfabric
// tcp;ofi_rxm (host-pinned buffers, two processes), and probe/fake transports for
// back-pressure and deadlines. Run by tests/gpu/test_command_path_gpu.py.
//
//   uccl_ep_command_path_gpu_test [--only NAME[,NAME]] [--quick] [--timeout-secs S]
//
// Prints PASS / FAIL / SKIP per scenario. Exit status: 0 all ran scenarios passed, 1 a
// failure, 2 bad flags, 77 no CUDA device (skipped).
#include <cuda_runtime.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "bootstrap/testing/child_process.h"
#include "command_path_scenarios.h"
#include "common/log.h"

namespace {

namespace gt = uccl::ep::gpu_test;

struct Scenario {
  const char* name;
  std::function<std::string(const gt::TestEnv&)> run;
};

const std::vector<Scenario>& scenarios() {
  static const std::vector<Scenario> all = {
      {"ipc_shared_queues", [](const gt::TestEnv& e) { return gt::run_ipc(e, 4); }},
      {"ipc_in_kernel_fences", [](const gt::TestEnv& e) { return gt::run_ipc(e, 1); }},
      {"ipc_lane_producers", [](const gt::TestEnv& e) { return gt::run_ipc(e, 1, true); }},
      {"libfabric_tcp_host_pinned", gt::run_libfabric},
      {"backpressure", gt::run_backpressure},
      {"proxy_deadline", gt::run_proxy_deadline},
      {"device_deadline", gt::run_device_deadline},
  };
  return all;
}

bool selected(const std::string& only, const char* name) {
  if (only.empty()) return true;
  return ("," + only + ",").find(std::string(",") + name + ",") != std::string::npos;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);  // a dead peer must surface as an error, not end this process
  namespace testing = uccl::ep::testing;
  bool child = false, quick = false;
  std::string only;
  gt::TestEnv env;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--libfabric-child")
      child = true;
    else if (a == "--quick")
      quick = true;
    else if (a == "--only" && i + 1 < argc)
      only = argv[++i];
    else if (a == "--timeout-secs" && i + 1 < argc)
      env.timeout_secs = std::atof(argv[++i]);
    else if (a.rfind("--port=", 0) != 0) {
      std::fprintf(stderr, "usage: %s [--only NAME[,NAME]] [--quick] [--timeout-secs S]\n",
                   argv[0]);
      return 2;
    }
  }
  if (child)
    return gt::run_libfabric_child(
        static_cast<uint16_t>(std::atoi(testing::arg_value(argc, argv, "port").c_str())));
  env.quick = quick;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIP all: no CUDA device\n");
    return 77;
  }
  uccl::ep::set_log_level(uccl::ep::LogLevel::kWarn);
  int failed = 0, passed = 0;
  for (const Scenario& s : scenarios()) {
    if (!selected(only, s.name)) continue;
    std::printf("RUN  %s\n", s.name);
    std::fflush(stdout);
    std::string failure;
    try {
      failure = s.run(env);
    } catch (const gt::Skip& skip) {
      std::printf("SKIP %s: %s\n", s.name, skip.why.c_str());
      continue;
    } catch (const std::exception& e) {
      failure = std::string("exception: ") + e.what();
    }
    if (failure.empty()) {
      ++passed;
      std::printf("PASS %s\n", s.name);
    } else {
      ++failed;
      std::printf("FAIL %s: %s\n", s.name, failure.c_str());
    }
    std::fflush(stdout);
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
