// A POSIX shared-memory object mapped into this process: the host-visible signal region that
// ipc peers map by name (Region::shared_name). Owners register it with the GPU themselves
// (cudaHostRegister with cudaHostRegisterMapped) so their kernels can poll it.
#pragma once

#include <cstddef>
#include <string>

namespace uccl::ep::transport {

class SharedMemory {
 public:
  /// Creates (exclusively) and maps `bytes` zeroed bytes under `name` ("/uccl_ep_..."). The
  /// destructor unmaps and unlinks it. Throws Error(kRuntime) with the errno text.
  static SharedMemory create(const std::string& name, size_t bytes);
  /// A name unique to this process and `tag` ("/uccl_ep_<pid>_<tag>_<counter>_<nonce>"; the
  /// random nonce keeps a new process clear of objects a killed one with the same pid left).
  static std::string unique_name(const std::string& tag);

  SharedMemory() = default;
  SharedMemory(SharedMemory&& other) noexcept;
  SharedMemory& operator=(SharedMemory&& other) noexcept;
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  ~SharedMemory();

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  const std::string& name() const { return name_; }

 private:
  void reset() noexcept;
  void* data_ = nullptr;
  size_t bytes_ = 0;
  std::string name_;
};

}  // namespace uccl::ep::transport
