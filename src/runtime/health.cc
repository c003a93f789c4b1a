// One rank's health: device record and abort flag, host failures, other sources.
#include "runtime/health.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "common/cuda_check.h"
#include "common/error.h"
#include "common/log.h"
#include "runtime/error_report.h"

namespace uccl::ep::runtime {

Health::Health(int rank, int device, double timeout_secs)
    : timeout_secs_(timeout_secs), device_(device) {
  DeviceGuard guard(device);
  record_.allocate();
  UCCL_EP_CUDA_CHECK(
      cudaMalloc(reinterpret_cast<void**>(&device_words_), sizeof(protocol::DeviceHealth)));
  UCCL_EP_CUDA_CHECK(cudaMemset(device_words_, 0, sizeof(protocol::DeviceHealth)));
  UCCL_EP_CUDA_CHECK(cudaStreamCreateWithFlags(&side_stream_, cudaStreamNonBlocking));
  diag_ = {record_.device(), &device_words_->abort_flag, static_cast<uint64_t>(timeout_secs * 1e9),
           rank};
}

Health::~Health() {
  if (side_stream_ != nullptr) cudaStreamDestroy(side_stream_);
  if (device_words_ != nullptr) cudaFree(device_words_);
}

bool Health::failed() const {
  if (!host_failure_.empty()) return true;
  if (std::atomic_ref<int32_t>(record_.host()->flag).load(std::memory_order_acquire) != 0)
    return true;
  for (const auto& source : sources_) {
    try {
      source();
    } catch (const Error&) {
      return true;
    }
  }
  return false;
}

void Health::check(const char* op) const {
  // The prefix is built only on the throwing paths: check() runs on every call.
  const auto prefix = [op] {
    return op != nullptr && *op != '\0' ? str_cat(op, ": ") : std::string();
  };
  const auto check_sources = [&] {
    for (const auto& source : sources_) {
      try {
        source();
      } catch (const Error& e) {
        throw_error(ErrorKind::kRuntime, prefix() + e.what());
      }
    }
  };
  if (std::atomic_ref<int32_t>(record_.host()->flag).load(std::memory_order_acquire) != 0) {
    protocol::HostErrorRecord r;
    std::memcpy(&r, record_.host(), sizeof(r));
    // A kernel that stopped on a failed proxy: the proxy's own message says more.
    if (static_cast<protocol::WaitSite>(r.site) == protocol::WaitSite::kProxyError) check_sources();
    throw_error(ErrorKind::kRuntime, prefix() + describe_error(r, timeout_secs_));
  }
  UCCL_EP_CHECK_RUNTIME(host_failure_.empty(), prefix(), host_failure_);
  check_sources();
}

void Health::wait_for_sequence(const int32_t* seq, int32_t want, const char* op, const char* what) {
  auto* word = const_cast<int32_t*>(seq);  // atomic_ref needs a non-const object; only loads
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_secs_);
  for (uint64_t iter = 0;; ++iter) {
    if (std::atomic_ref<int32_t>(*word).load(std::memory_order_acquire) == want) break;
    if ((iter & 1023) == 0) {
      check(op);  // a GPU error explains what is missing
      if (std::chrono::steady_clock::now() > deadline) {
        const std::string& msg =
            fail(str_cat("uccl-ep: rank ", diag_.rank, " timed out after ", timeout_secs_, " s in ",
                         op, " waiting for ", what, " (sequence ", want, ", last seen ",
                         std::atomic_ref<int32_t>(*word).load(),
                         "). The Buffer refuses further work "
                         "(UCCL_EP_TIMEOUT_SECS=",
                         timeout_secs_, ")"));
        throw_error(ErrorKind::kRuntime, msg);
      }
      if (iter > (1u << 16)) std::this_thread::yield();
    }
  }
  check(op);  // a kernel publishes its result even when it found an error: the record first
}

const std::string& Health::fail(std::string message) {
  if (!host_failure_.empty()) return host_failure_;
  host_failure_ = std::move(message);
  // Kernels queued later (graph replays included) must see the abort: raise the flag from a
  // stream of its own, which runs beside whatever the rank's streams are waiting on.
  DeviceGuard guard(device_);
  const cudaError_t err = cudaMemsetAsync(&device_words_->abort_flag, 0xff,
                                          sizeof(device_words_->abort_flag), side_stream_);
  if (err != cudaSuccess)
    log_message(LogLevel::kError,
                str_cat("raising the abort flag failed: ", cudaGetErrorString(err)));
  return host_failure_;
}

}  // namespace uccl::ep::runtime
