// Allocation of a set of command queues and the host-memory allocator (no CUDA here).
#include "queue/queue_memory.h"

#include <cstdlib>
#include <cstring>
#include <utility>

#include "common/error.h"

namespace uccl::ep::queue {
namespace {

static_assert(sizeof(QueueControl) == 4 * kQueueAlignment, "one 128-byte line per control word");
static_assert(sizeof(ProducerState) == kQueueAlignment);
static_assert(alignof(QueueControl) == kQueueAlignment && alignof(ProducerState) == 128);

void* aligned_zeroed(size_t bytes) {
  const size_t rounded = (bytes + kQueueAlignment - 1) / kQueueAlignment * kQueueAlignment;
  void* p = std::aligned_alloc(kQueueAlignment, rounded);
  UCCL_EP_CHECK(p != nullptr, ErrorKind::kRuntime, "out of host memory allocating ", rounded,
                " bytes of command queues");
  std::memset(p, 0, rounded);
  return p;
}

class HostQueueAllocator final : public QueueAllocator {
 public:
  SharedBlock allocate_shared(size_t bytes) override {
    void* p = aligned_zeroed(bytes);
    return {p, p};
  }
  void free_shared(const SharedBlock& block) noexcept override { std::free(block.host); }
  void* allocate_producer(size_t bytes) override { return aligned_zeroed(bytes); }
  void free_producer(void* p) noexcept override { std::free(p); }
  bool producer_memory_on_host() const override { return true; }
  const char* name() const override { return "host"; }
};

}  // namespace

std::unique_ptr<QueueAllocator> make_host_queue_allocator() {
  return std::make_unique<HostQueueAllocator>();
}

QueueSet::QueueSet(uint32_t num_queues, uint32_t capacity,
                   std::unique_ptr<QueueAllocator> allocator)
    : layout_{num_queues, capacity}, allocator_(std::move(allocator)) {
  UCCL_EP_CHECK_VALUE(allocator_ != nullptr, "QueueSet needs an allocator (got null)");
  UCCL_EP_CHECK_VALUE(num_queues >= 1 && num_queues <= kMaxQueues,
                      "QueueSet num_queues=", num_queues, " must be in [1, ", kMaxQueues, "]");
  UCCL_EP_CHECK_VALUE(capacity >= 1 && capacity <= kMaxCapacity && (capacity & (capacity - 1)) == 0,
                      "QueueSet capacity=", capacity, " must be a power of two in [1, ",
                      kMaxCapacity, "] (slots are indexed by ticket & (capacity - 1))");
  shared_ = allocator_->allocate_shared(layout_.shared_bytes());
  try {
    producer_ = allocator_->allocate_producer(layout_.producer_bytes());
  } catch (...) {
    allocator_->free_shared(shared_);
    throw;
  }
  const auto misaligned = [](const void* p) {
    return reinterpret_cast<uintptr_t>(p) % kQueueAlignment != 0;
  };
  if (misaligned(shared_.host) || misaligned(shared_.device) || misaligned(producer_)) {
    release();
    throw_error(ErrorKind::kRuntime,
                str_cat("queue allocator '", allocator_name(), "' returned memory not aligned to ",
                        kQueueAlignment, " bytes"));
  }
  // Every slot starts free: word0 == 0 and word1 == kEmptyWord1 (queue_layout.h, rule 3).
  for (uint32_t q = 0; q < num_queues; ++q) {
    protocol::Command* slots = host_view(q).slots;
    for (uint32_t i = 0; i < capacity; ++i) slots[i] = {0, protocol::kEmptyWord1};
  }
}

QueueSet::~QueueSet() {
  release();
}

QueueSet::QueueSet(QueueSet&& other) noexcept
    : layout_(other.layout_),
      allocator_(std::move(other.allocator_)),
      shared_(std::exchange(other.shared_, {})),
      producer_(std::exchange(other.producer_, nullptr)) {}

QueueSet& QueueSet::operator=(QueueSet&& other) noexcept {
  if (this != &other) {
    release();
    layout_ = other.layout_;
    allocator_ = std::move(other.allocator_);
    shared_ = std::exchange(other.shared_, {});
    producer_ = std::exchange(other.producer_, nullptr);
  }
  return *this;
}

void QueueSet::release() noexcept {
  if (allocator_ == nullptr) return;
  if (producer_ != nullptr) allocator_->free_producer(producer_);
  if (shared_.host != nullptr) allocator_->free_shared(shared_);
  producer_ = nullptr;
  shared_ = {};
}

const char* QueueSet::allocator_name() const {
  return allocator_ ? allocator_->name() : "(moved-from)";
}

void QueueSet::check_index(uint32_t queue) const {
  UCCL_EP_CHECK_VALUE(producer_ != nullptr, "QueueSet was moved from");
  UCCL_EP_CHECK_VALUE(queue < layout_.num_queues, "queue index ", queue, " out of range [0, ",
                      layout_.num_queues, ")");
}

QueueDeviceHandle QueueSet::device_handle(uint32_t queue) const {
  check_index(queue);
  auto* base = static_cast<uint8_t*>(shared_.device);
  return {reinterpret_cast<protocol::Command*>(base + layout_.slots_offset(queue)),
          reinterpret_cast<QueueControl*>(base + layout_.control_offset(queue)),
          static_cast<ProducerState*>(producer_) + queue, layout_.capacity, queue};
}

std::vector<QueueDeviceHandle> QueueSet::device_handles() const {
  std::vector<QueueDeviceHandle> out;
  out.reserve(layout_.num_queues);
  for (uint32_t q = 0; q < layout_.num_queues; ++q) out.push_back(device_handle(q));
  return out;
}

QueueHostView QueueSet::host_view(uint32_t queue) const {
  check_index(queue);
  auto* base = static_cast<uint8_t*>(shared_.host);
  return {reinterpret_cast<protocol::Command*>(base + layout_.slots_offset(queue)),
          reinterpret_cast<QueueControl*>(base + layout_.control_offset(queue)), layout_.capacity,
          queue};
}

QueueDeviceHandle QueueSet::host_producer_handle(uint32_t queue) const {
  check_index(queue);
  UCCL_EP_CHECK_VALUE(allocator_->producer_memory_on_host(), "queue ", queue,
                      ": a host producer needs host-addressable producer state, but allocator '",
                      allocator_->name(), "' puts it in device memory");
  const QueueHostView view = host_view(queue);
  return {view.slots, view.control, static_cast<ProducerState*>(producer_) + queue,
          layout_.capacity, queue};
}

}  // namespace uccl::ep::queue
