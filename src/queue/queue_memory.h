// Allocation of a set of GPU->CPU command queues: slots and control words of every queue in
// one allocation both sides address, producer state in producer-side memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "queue/consumer.h"
#include "queue/queue_layout.h"

namespace uccl::ep::queue {

constexpr uint32_t kMaxQueues = 4096;        // queues of one QueueSet
constexpr uint32_t kMaxCapacity = 1u << 24;  // slots of one queue (256 MiB of commands)
constexpr size_t kQueueAlignment = 128;      // every queue's slots and control start here

/// One allocation seen at two addresses: `host` for the CPU consumer, `device` for producers
/// (equal for plain host memory).
struct SharedBlock {
  void* host = nullptr;
  void* device = nullptr;
};

/// Where a QueueSet's memory comes from. Every allocation is zeroed and aligned to
/// kQueueAlignment; failures throw uccl::ep::Error.
class QueueAllocator {
 public:
  virtual ~QueueAllocator() = default;
  /// Memory for slots and control words, read and written by the consumer (host address) and
  /// the producers (device address): pinned host memory mapped into the device for CUDA.
  virtual SharedBlock allocate_shared(size_t bytes) = 0;
  virtual void free_shared(const SharedBlock& block) noexcept = 0;
  /// Memory for ProducerState, used by producers only: device memory for CUDA.
  virtual void* allocate_producer(size_t bytes) = 0;
  virtual void free_producer(void* p) noexcept = 0;
  /// True when the host may access allocate_producer() memory (host producers need it).
  virtual bool producer_memory_on_host() const = 0;
  /// "host", "cuda:0", ...: for messages.
  virtual const char* name() const = 0;
};

/// Plain aligned host memory for everything: CPU tests, the CPU benchmark, host producers.
std::unique_ptr<QueueAllocator> make_host_queue_allocator();

/// CUDA memory on `device`: cudaHostAlloc(Mapped | Portable) for slots and control (device
/// alias from cudaHostGetDevicePointer), cudaMalloc for producer state. Defined in the
/// library uccl_ep_queue_cuda (queue_memory_cuda.cc), not in uccl_ep_queue.
std::unique_ptr<QueueAllocator> make_cuda_queue_allocator(int device);

/// Byte offsets inside a QueueSet's allocations: the control words of every queue, then the
/// slots of every queue (each queue's slots start on a kQueueAlignment boundary).
struct QueueSetLayout {
  uint32_t num_queues = 0;
  uint32_t capacity = 0;

  size_t control_offset(uint32_t queue) const { return queue * sizeof(QueueControl); }
  size_t slots_stride() const {
    const size_t bytes = size_t{capacity} * sizeof(protocol::Command);
    return (bytes + kQueueAlignment - 1) / kQueueAlignment * kQueueAlignment;
  }
  size_t slots_offset(uint32_t queue) const {
    return num_queues * sizeof(QueueControl) + queue * slots_stride();
  }
  size_t shared_bytes() const { return slots_offset(num_queues); }
  size_t producer_bytes() const { return num_queues * sizeof(ProducerState); }
};

/// Owns the memory of `num_queues` queues of `capacity` slots each and hands out the views
/// producers and consumers use. Queue memory must outlive every kernel, proxy thread and host
/// producer using it.
class QueueSet {
 public:
  /// Throws Error(kValue) unless 1 <= num_queues <= kMaxQueues and capacity is a power of two
  /// in [1, kMaxCapacity]; allocation failures throw from the allocator.
  QueueSet(uint32_t num_queues, uint32_t capacity, std::unique_ptr<QueueAllocator> allocator);
  ~QueueSet();
  QueueSet(QueueSet&& other) noexcept;
  QueueSet& operator=(QueueSet&& other) noexcept;
  QueueSet(const QueueSet&) = delete;
  QueueSet& operator=(const QueueSet&) = delete;

  uint32_t num_queues() const { return layout_.num_queues; }
  uint32_t capacity() const { return layout_.capacity; }
  const QueueSetLayout& layout() const { return layout_; }
  const char* allocator_name() const;

  /// What a kernel needs to push into `queue` (device addresses). Throws Error(kValue) for an
  /// index out of range (as do the other accessors).
  QueueDeviceHandle device_handle(uint32_t queue) const;
  /// device_handle() of every queue, in order (e.g. to copy into kernel arguments).
  std::vector<QueueDeviceHandle> device_handles() const;
  /// What the consumer of `queue` needs (host addresses).
  QueueHostView host_view(uint32_t queue) const;
  /// A handle with host addresses only, for HostProducer. Throws Error(kValue) when the
  /// producer state is device memory (a CUDA allocator).
  QueueDeviceHandle host_producer_handle(uint32_t queue) const;

 private:
  void check_index(uint32_t queue) const;
  void release() noexcept;

  QueueSetLayout layout_;
  std::unique_ptr<QueueAllocator> allocator_;
  SharedBlock shared_;
  void* producer_ = nullptr;
};

}  // namespace uccl::ep::queue
