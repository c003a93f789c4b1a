// POSIX shared memory for host-visible regions that peer processes map by name.
#include "transport/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>

#include "common/error.h"

namespace uccl::ep::transport {

SharedMemory SharedMemory::create(const std::string& name, size_t bytes) {
  UCCL_EP_CHECK_VALUE(name.size() > 1 && name[0] == '/' && bytes > 0, "SharedMemory: name '", name,
                      "' must start with '/' and bytes must be > 0");
  const int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  UCCL_EP_CHECK_RUNTIME(fd >= 0, "SharedMemory: shm_open('", name,
                        "') failed: ", std::strerror(errno));
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    const int err = errno;
    close(fd);
    shm_unlink(name.c_str());
    throw Error(ErrorKind::kRuntime, str_cat("SharedMemory: ftruncate('", name, "', ", bytes,
                                             ") failed: ", std::strerror(err)));
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int err = errno;
  close(fd);
  if (p == MAP_FAILED) {
    shm_unlink(name.c_str());
    throw Error(ErrorKind::kRuntime,
                str_cat("SharedMemory: mmap('", name, "') failed: ", std::strerror(err)));
  }
  SharedMemory m;
  m.data_ = p;
  m.bytes_ = bytes;
  m.name_ = name;
  return m;  // ftruncate zero-fills
}

std::string SharedMemory::unique_name(const std::string& tag) {
  // The pid alone is not enough: a process killed before its destructors ran leaves its objects
  // behind, and a later process with the same pid would find its names taken (O_EXCL).
  static const uint64_t nonce = [] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
           static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }();
  static std::atomic<uint64_t> counter{0};
  char suffix[17];
  std::snprintf(suffix, sizeof(suffix), "%016llx", static_cast<unsigned long long>(nonce));
  return str_cat("/uccl_ep_", static_cast<int64_t>(getpid()), "_", tag, "_", counter++, "_",
                 suffix);
}

SharedMemory::SharedMemory(SharedMemory&& other) noexcept
    : data_(other.data_), bytes_(other.bytes_), name_(std::move(other.name_)) {
  other.data_ = nullptr;
  other.bytes_ = 0;
  other.name_.clear();
}

SharedMemory& SharedMemory::operator=(SharedMemory&& other) noexcept {
  if (this != &other) {
    reset();
    data_ = other.data_;
    bytes_ = other.bytes_;
    name_ = std::move(other.name_);
    other.data_ = nullptr;
    other.bytes_ = 0;
    other.name_.clear();
  }
  return *this;
}

SharedMemory::~SharedMemory() {
  reset();
}

void SharedMemory::reset() noexcept {
  if (data_) munmap(data_, bytes_);
  if (!name_.empty()) shm_unlink(name_.c_str());
  data_ = nullptr;
  bytes_ = 0;
  name_.clear();
}

}  // namespace uccl::ep::transport
