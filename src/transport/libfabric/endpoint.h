// The state behind LibfabricTransport: libfabric objects, the operation pool, the receive pool
// and each peer's keys. Setup lives in endpoint_setup.cc, the hot path in endpoint_ops.cc.
#pragma once

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "transport/libfabric/immediate.h"
#include "transport/transport.h"

namespace uccl::ep::transport::libfabric {

enum class OpKind : uint8_t {
  kWrite,            // fi_writemsg, no remote CQ data
  kWriteSignal,      // fi_writemsg with the signal in remote CQ data
  kWriteThenAtomic,  // native path: the write, then (stage 1) an fi_atomic for its signal
  kAtomic,           // native fi_atomic
  kAtomicMessage,    // emulated atomic: a Record the target applies
  kControl,          // connect(): hello / done records, native-atomic probes
  kRaw,              // raw_writedata_loop
};

/// One posted operation; its address is the operation context (fi_context2 first, as
/// FI_CONTEXT / FI_CONTEXT2 ask).
struct Op {
  fi_context2 ctx;
  uint64_t id = 0;
  uint64_t bytes = 0;
  int64_t value = 0;
  uint32_t slot = 0;
  int32_t peer = 0;
  int32_t pipe = 0;
  OpKind kind = OpKind::kWrite;
  uint8_t stage = 0;
  uint32_t next = 0;  // free list / deferred list link
};

/// One posted receive buffer of the pool (its Record lives in rx_records_ at the same index).
struct RxSlot {
  fi_context2 ctx;
};

/// What this rank knows of a peer after connect().
struct PeerInfo {
  fi_addr_t addr = FI_ADDR_UNSPEC;
  uint64_t rdma_buffer_base = 0, rdma_buffer_bytes = 0, rdma_buffer_key = 0;
  uint64_t sig_base = 0, sig_bytes = 0, sig_key = 0;
};

class Endpoint {
 public:
  explicit Endpoint(const TransportOptions& options);
  ~Endpoint();
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  Capabilities capabilities() const;
  void register_regions(const Region& rdma_buffer, const Region& signals);
  std::vector<uint8_t> local_address() const;
  void connect(const std::vector<std::vector<uint8_t>>& addresses);
  PostStatus post_write(int pipe, int peer, uint64_t local_offset, uint64_t remote_offset,
                        uint64_t bytes, const Signal* signal, uint64_t id);
  PostStatus post_atomic_add(int pipe, int peer, uint32_t slot, int64_t value, uint64_t id);
  int poll(Completion* out, int max);
  double raw_writedata_loop(int peer, uint64_t bytes, uint64_t iterations, int window,
                            double timeout_secs);

  const std::string& provider() const { return provider_; }
  SignalPath signal_path() const { return signal_path_; }

 private:
  using Clock = std::chrono::steady_clock;

  // Setup (endpoint_setup.cc).
  void open_resources(bool want_hmem);
  void choose_signal_path(bool atomics_granted);
  void create_pools(uint32_t num_ops, uint32_t num_rx);
  void log_choice(const std::string& refused) const;
  fid_mr* register_memory(void* base, uint64_t bytes, uint64_t access, int cuda_device,
                          uint64_t key, const char* what);
  void post_receive(uint32_t index);
  void parse_peer(int rank, const std::vector<uint8_t>& blob);
  void warm_up();
  void wait_control(Clock::time_point deadline, const char* phase,
                    const std::vector<uint32_t>& seen);
  void post_control(int peer, RecordKind kind, Clock::time_point deadline);
  void post_probe_atomic(int peer, Clock::time_point deadline);
  void close_all() noexcept;

  // Hot path (endpoint_ops.cc).
  Op* alloc_op();
  void free_op(Op* op);
  Op* as_op(void* ctx) const;
  long as_rx(void* ctx) const;  // index into the receive pool, or -1
  uint32_t index_of(const Op* op) const { return static_cast<uint32_t>(op - ops_.data()); }
  long post_rma(Op* op, uint64_t local_offset, uint64_t remote_offset, uint64_t bytes,
                bool with_data, uint64_t data);
  long post_native_atomic(Op* op);
  long post_record(Op* op, RecordKind kind, uint32_t slot, int64_t value);
  void defer(Op* op);
  void retry_deferred();
  int handle_entry(const fi_cq_data_entry& e, Completion* out);
  int handle_error(Completion* out);
  int complete_op(Op* op, Completion* out);
  void apply_immediate(uint64_t data);
  void apply_record(uint32_t rx_index, size_t len);
  void add_signal(uint32_t slot, int64_t value, int from_rank);  // from_rank -1: unknown
  void check_target(int pipe, int peer) const;
  uint64_t remote_addr(uint64_t base, uint64_t offset) const {
    return virt_addr_ ? base + offset : offset;
  }
  [[noreturn]] void throw_fi(const char* call, long rc, int peer, int pipe) const;
  std::string describe(const Op& op) const;

  TransportOptions options_;
  std::string provider_;
  SignalPath signal_path_ = SignalPath::kRemoteCqData;
  bool hmem_ok_ = false;
  std::string hmem_reason_;
  bool virt_addr_ = false;
  bool mr_endpoint_ = false;
  bool connected_ = false;
  int immediate_bytes_ = 0;

  fi_info* info_ = nullptr;
  fid_fabric* fabric_ = nullptr;
  fid_domain* domain_ = nullptr;
  fid_cq* cq_ = nullptr;
  fid_av* av_ = nullptr;
  fid_ep* ep_ = nullptr;
  fid_mr* rdma_buffer_mr_ = nullptr;
  fid_mr* sig_mr_ = nullptr;
  fid_mr* staging_mr_ = nullptr;
  fid_mr* rx_mr_ = nullptr;
  void* rdma_buffer_desc_ = nullptr;
  void* staging_desc_ = nullptr;
  void* rx_desc_ = nullptr;

  Region rdma_buffer_{}, signals_{};
  uint64_t num_slots_ = 0;
  std::vector<PeerInfo> peers_;

  // Operation pool: ops_[i] pairs with staging_[i] (the source of its message or operand).
  std::vector<Op> ops_;
  std::vector<Record> staging_;
  uint32_t free_head_ = 0;
  uint32_t deferred_head_ = UINT32_MAX, deferred_tail_ = UINT32_MAX;
  uint64_t user_inflight_ = 0;

  // Receive pool: always posted, reposted after each completion.
  std::vector<RxSlot> rx_slots_;
  std::vector<Record> rx_records_;

  // connect() bookkeeping and the raw loop's counter.
  std::vector<uint32_t> hello_seen_, done_seen_;
  uint64_t control_posted_ = 0, control_completed_ = 0;
  uint64_t raw_completed_ = 0;
};

}  // namespace uccl::ep::transport::libfabric
