// Scenarios of the command-path GPU test (command_path_scenarios.cu); each returns "" when
// every check passed, else what failed. Throws only for setup errors.
#pragma once

#include <cstdint>
#include <string>

namespace uccl::ep::gpu_test {

/// Thrown (as a message) by a scenario that cannot run here: the harness prints SKIP.
struct Skip {
  std::string why;
};

struct TestEnv {
  double timeout_secs = 30;  // proxy and device deadlines of the healthy scenarios
  bool quick = false;
};

/// GPU 0 pushes WRITE / WRITE_SIGNAL / FENCE from many warps; the proxy executes them through
/// the ipc transport into GPU 1's buffer (ranks 0 and 1 in this process); a kernel on GPU 1
/// checks each signal is visible only after its data; then every byte and signal is checked.
/// `warps_per_queue` 1: in-kernel FENCE each round; more: a FENCE kernel at the end.
/// `lane_producers` (one warp per queue): lane 0 owns its queue (queue::LaneProducer) and
/// pushes the warp's writes and fences; a FENCE kernel with standard pushes follows.
std::string run_ipc(const TestEnv& env, uint32_t warps_per_queue, bool lane_producers = false);

/// The same traffic through libfabric tcp;ofi_rxm with host-pinned buffers: rank 0 here (GPU
/// producers), rank 1 a child process (CPU only) that checks what arrives.
std::string run_libfabric(const TestEnv& env);
/// The child's side of run_libfabric (exit status of the child process).
int run_libfabric_child(uint16_t port);

/// The proxy is paused: the GPU producers fill the queues and block; after resume() every
/// command is executed exactly once.
std::string run_backpressure(const TestEnv& env);

/// A dropped write (fake transport): the proxy's deadline fails the FENCE the kernel waits on;
/// the kernel stops and Proxy::check() raises a message naming rank, queue, ticket, peer and
/// counters.
std::string run_proxy_deadline(const TestEnv& env);

/// A paused proxy and a short device deadline: the GPU push times out and the error record
/// names rank, queue and the tail counters.
std::string run_device_deadline(const TestEnv& env);

}  // namespace uccl::ep::gpu_test
