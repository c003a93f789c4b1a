// The ipc transport: ranks on one host (emulated nodes) reach each other's RDMA buffer (GPU
// memory) through CUDA IPC; a write is a copy-engine cudaMemcpyAsync on the pipe's stream, and its
// signal is applied by this (the initiating) process only after an event recorded behind the
// copy has completed. Signal regions live in POSIX shared memory (host-visible, registered
// with the GPU by their owner), so the initiator adds to a peer's slot directly.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <vector>

#include "transport/transport.h"

namespace uccl::ep::transport::ipc {

/// Implements Transport with CUDA IPC and the copy engine. Per pipe: one non-blocking stream
/// and a ring of (event, pending operation); completions are reported in post order per
/// pipe, so a later atomic on the pipe lands after every earlier write
/// (ordered_delivery). An atomic posted while nothing is in flight on its pipe is applied at
/// once, without the GPU (barriers never wait on a stream). Needs a CUDA device.
/// Host mode (an RDMA buffer in host memory, POSIX shared memory named by Region::shared_name,
/// the same on every rank): writes are CPU copies between the mapped buffers, each complete
/// with its signal applied when post_write returns, and no GPU stream is involved.
class IpcTransport final : public Transport {
 public:
  explicit IpcTransport(const TransportOptions& options);
  ~IpcTransport() override;
  IpcTransport(const IpcTransport&) = delete;
  IpcTransport& operator=(const IpcTransport&) = delete;

  Capabilities capabilities() const override;
  void register_regions(const Region& rdma_buffer, const Region& signals) override;
  std::vector<uint8_t> local_address() const override;
  void connect(const std::vector<std::vector<uint8_t>>& addresses) override;
  PostStatus post_write(int pipe, int peer, uint64_t local_offset, uint64_t remote_offset,
                        uint64_t bytes, const Signal* signal, uint64_t id) override;
  PostStatus post_atomic_add(int pipe, int peer, uint32_t slot, int64_t value,
                             uint64_t id) override;
  int poll(Completion* out, int max) override;

 private:
  struct Pending {
    uint64_t id = 0;
    int32_t peer = 0;
    bool has_signal = false;
    uint32_t slot = 0;
    int64_t value = 0;
    uint64_t bytes = 0;
  };
  struct Pipe {
    cudaStream_t stream = nullptr;
    std::vector<cudaEvent_t> events;  // ring, one per pending slot
    std::vector<Pending> ring;
    uint32_t head = 0, count = 0;
  };
  struct Peer {
    char* rdma_buffer = nullptr;  // mapped RDMA buffer (this process's view)
    uint64_t rdma_buffer_bytes = 0;
    int64_t* signals = nullptr;  // mapped signal slots
    uint64_t signal_slots = 0;
    void* ipc_base = nullptr;  // cudaIpcOpenMemHandle result (to close)
    void* shm_map = nullptr;   // mmap of the peer's shared signal region (to unmap)
    size_t shm_bytes = 0;
    void* buffer_map = nullptr;  // host mode: mmap of the peer's RDMA buffer (to unmap)
  };

  /// Host mode: the RDMA buffers are POSIX shared memory; a write is a CPU copy.
  bool host_mode() const { return !rdma_buffer_.device; }
  void* map_shared(const std::string& name, uint64_t bytes, int rank, const char* what) const;

  void ensure_device() const;
  void check_post(int pipe, int peer, uint32_t slot, bool has_slot) const;
  PostStatus enqueue(int pipe, const Pending& p, uint64_t local_offset, uint64_t remote_offset);
  void open_peer(int rank, const std::vector<uint8_t>& blob);
  void enable_peer_access(const void* peer_buffer, int rank);
  void create_pipes();
  void warm_up_copies();
  void release() noexcept;

  TransportOptions options_;
  int device_ = 0;
  Region rdma_buffer_{}, signals_{};
  uint64_t rdma_buffer_offset_ = 0;  // rdma_buffer_.base minus the start of its cudaMalloc
  cudaIpcMemHandle_t rdma_buffer_handle_{};
  std::string host_id_;  // boot id: equal for processes of one host
  std::vector<Peer> peers_;
  std::vector<Pipe> pipes_;
  /// Atomics applied at post time (nothing was in flight on their pipe): ids poll() reports.
  std::vector<uint64_t> done_at_post_;
  uint64_t inflight_ = 0;
  uint32_t next_pipe_ = 0;  // round-robin start of poll()
  bool registered_ = false, connected_ = false;
};

}  // namespace uccl::ep::transport::ipc
