// libfabric transport hot path: posting, completion handling, signal application, raw loop.
// Nothing here allocates except to build an error message.
#include <rdma/fi_atomic.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include <algorithm>
#include <atomic>

#include "common/error.h"
#include "transport/libfabric/api.h"
#include "transport/libfabric/endpoint.h"
#include "transport/libfabric/fabric.h"

namespace uccl::ep::transport::libfabric {
namespace {

constexpr int kPollBatch = 64;
constexpr uint64_t kOpFlags = FI_DELIVERY_COMPLETE | FI_COMPLETION;

const char* op_name(OpKind k) {
  switch (k) {
    case OpKind::kWrite:
      return "write";
    case OpKind::kWriteSignal:
      return "write+signal (remote CQ data)";
    case OpKind::kWriteThenAtomic:
      return "write+signal (write, then fi_atomic)";
    case OpKind::kAtomic:
      return "atomic add (fi_atomic)";
    case OpKind::kAtomicMessage:
      return "atomic add (message)";
    case OpKind::kControl:
      return "connect control message";
    case OpKind::kRaw:
      return "raw fi_writedata";
  }
  return "?";
}

}  // namespace

Op* Endpoint::alloc_op() {
  if (free_head_ == UINT32_MAX) return nullptr;
  Op* op = &ops_[free_head_];
  free_head_ = op->next;
  op->stage = 0;
  return op;
}

void Endpoint::free_op(Op* op) {
  op->next = free_head_;
  free_head_ = index_of(op);
}

Op* Endpoint::as_op(void* ctx) const {
  const auto* p = static_cast<const char*>(ctx);
  const auto* lo = reinterpret_cast<const char*>(ops_.data());
  if (p < lo || p >= lo + ops_.size() * sizeof(Op)) return nullptr;
  return const_cast<Op*>(&ops_[(p - lo) / sizeof(Op)]);
}

long Endpoint::as_rx(void* ctx) const {
  const auto* p = static_cast<const char*>(ctx);
  const auto* lo = reinterpret_cast<const char*>(rx_slots_.data());
  if (p < lo || p >= lo + rx_slots_.size() * sizeof(RxSlot)) return -1;
  return static_cast<long>((p - lo) / sizeof(RxSlot));
}

std::string Endpoint::describe(const Op& op) const {
  return str_cat(op_name(op.kind), " (", op.bytes, " bytes, id ", op.id, ") from rank ",
                 options_.rank, " to peer ", op.peer,
                 op.pipe >= 0 ? str_cat(" on pipe ", op.pipe) : "");
}

void Endpoint::check_target(int pipe, int peer) const {
  UCCL_EP_CHECK_VALUE(connected_, "libfabric: rank ", options_.rank, " posts before connect()");
  UCCL_EP_CHECK_VALUE(pipe >= 0 && pipe < options_.num_pipes, "libfabric: pipe ", pipe,
                      " out of [0, ", options_.num_pipes, ")");
  UCCL_EP_CHECK_VALUE(peer >= 0 && peer < options_.num_ranks && peer != options_.rank,
                      "libfabric: peer ", peer, " out of [0, ", options_.num_ranks,
                      ") or this rank (", options_.rank, "): local moves bypass the transport");
}

long Endpoint::post_rma(Op* op, uint64_t local_offset, uint64_t remote_offset, uint64_t bytes,
                        bool with_data, uint64_t data) {
  const PeerInfo& p = peers_[op->peer];
  iovec iov{static_cast<char*>(rdma_buffer_.base) + local_offset, static_cast<size_t>(bytes)};
  void* desc = rdma_buffer_desc_;
  fi_rma_iov rma{remote_addr(p.rdma_buffer_base, remote_offset), static_cast<size_t>(bytes),
                 p.rdma_buffer_key};
  fi_msg_rma msg{};
  msg.msg_iov = &iov;
  msg.desc = &desc;
  msg.iov_count = 1;
  msg.addr = p.addr;
  msg.rma_iov = &rma;
  msg.rma_iov_count = 1;
  msg.context = &op->ctx;
  msg.data = data;
  return fi_writemsg(ep_, &msg, kOpFlags | (with_data ? FI_REMOTE_CQ_DATA : 0));
}

long Endpoint::post_native_atomic(Op* op) {
  const PeerInfo& p = peers_[op->peer];
  Record& operand = staging_[index_of(op)];
  operand.value = op->value;
  fi_ioc ioc{&operand.value, 1};
  void* desc = staging_desc_;
  fi_rma_ioc rma{remote_addr(p.sig_base, uint64_t{op->slot} * 8), 1, p.sig_key};
  fi_msg_atomic msg{};
  msg.msg_iov = &ioc;
  msg.desc = &desc;
  msg.iov_count = 1;
  msg.addr = p.addr;
  msg.rma_iov = &rma;
  msg.rma_iov_count = 1;
  msg.datatype = FI_INT64;
  msg.op = FI_SUM;
  msg.context = &op->ctx;
  return fi_atomicmsg(ep_, &msg, kOpFlags);
}

long Endpoint::post_record(Op* op, RecordKind kind, uint32_t slot, int64_t value) {
  Record& r = staging_[index_of(op)];
  r = Record{};
  r.kind = static_cast<uint32_t>(kind);
  r.src_rank = static_cast<uint32_t>(options_.rank);
  r.slot = slot;
  r.value = value;
  iovec iov{&r, sizeof(Record)};
  void* desc = staging_desc_;
  fi_msg msg{};
  msg.msg_iov = &iov;
  msg.desc = &desc;
  msg.iov_count = 1;
  msg.addr = peers_[op->peer].addr;
  msg.context = &op->ctx;
  return fi_sendmsg(ep_, &msg, kOpFlags);
}

PostStatus Endpoint::post_write(int pipe, int peer, uint64_t local_offset, uint64_t remote_offset,
                                uint64_t bytes, const Signal* signal, uint64_t id) {
  check_target(pipe, peer);
  const PeerInfo& p = peers_[peer];
  UCCL_EP_CHECK_VALUE(
      local_offset <= rdma_buffer_.bytes && bytes <= rdma_buffer_.bytes - local_offset,
      "libfabric: write from rank ", options_.rank, ": local range [", local_offset, ", +", bytes,
      ") exceeds the RDMA buffer of ", rdma_buffer_.bytes, " bytes");
  UCCL_EP_CHECK_VALUE(
      remote_offset <= p.rdma_buffer_bytes && bytes <= p.rdma_buffer_bytes - remote_offset,
      "libfabric: write to peer ", peer, ": remote range [", remote_offset, ", +", bytes,
      ") exceeds its RDMA buffer of ", p.rdma_buffer_bytes, " bytes");
  if (signal) {
    UCCL_EP_CHECK_VALUE(signal->slot < std::min<uint64_t>(p.sig_bytes / 8, kImmMaxSlots),
                        "libfabric: signal slot ", signal->slot, " of peer ", peer,
                        " out of range");
    UCCL_EP_CHECK_VALUE(
        signal_path_ != SignalPath::kRemoteCqData ||
            (signal->value != 0 && signal->value >= kImmMinValue && signal->value <= kImmMaxValue),
        "libfabric: fused signal value ", signal->value, " must be non-zero and in [", kImmMinValue,
        ", ", kImmMaxValue, "] (32-bit remote CQ data)");
  }
  if (user_inflight_ >= static_cast<uint64_t>(options_.max_inflight)) return PostStatus::kRetry;
  Op* op = alloc_op();
  op->id = id;
  op->peer = peer;
  op->pipe = pipe;
  op->bytes = bytes;
  long rc;
  if (bytes == 0) {
    // Zero-length RMA is not portable (1.17's shm wedges its command queue on one): an empty
    // write travels as its signal alone, or as a no-op message that completes on delivery.
    op->slot = signal ? signal->slot : 0;
    op->value = signal ? signal->value : 0;
    if (signal && signal_path_ == SignalPath::kNativeAtomic) {
      op->kind = OpKind::kAtomic;
      rc = post_native_atomic(op);
    } else {
      op->kind = OpKind::kAtomicMessage;
      rc = post_record(op, signal ? RecordKind::kAtomicAdd : RecordKind::kNop, op->slot, op->value);
    }
  } else if (!signal) {
    op->kind = OpKind::kWrite;
    rc = post_rma(op, local_offset, remote_offset, bytes, false, 0);
  } else if (signal_path_ == SignalPath::kRemoteCqData) {
    op->kind = OpKind::kWriteSignal;
    rc = post_rma(op, local_offset, remote_offset, bytes, true,
                  encode_signal_imm(signal->slot, signal->value));
  } else {
    op->kind = OpKind::kWriteThenAtomic;
    op->slot = signal->slot;
    op->value = signal->value;
    rc = post_rma(op, local_offset, remote_offset, bytes, false, 0);
  }
  if (rc != 0) {
    free_op(op);
    if (rc == -FI_EAGAIN) return PostStatus::kRetry;
    throw_fi("fi_writemsg", rc, peer, pipe);
  }
  ++user_inflight_;
  return PostStatus::kPosted;
}

PostStatus Endpoint::post_atomic_add(int pipe, int peer, uint32_t slot, int64_t value,
                                     uint64_t id) {
  check_target(pipe, peer);
  UCCL_EP_CHECK_VALUE(slot < std::min<uint64_t>(peers_[peer].sig_bytes / 8, kImmMaxSlots),
                      "libfabric: atomic slot ", slot, " of peer ", peer, " out of range");
  if (user_inflight_ >= static_cast<uint64_t>(options_.max_inflight)) return PostStatus::kRetry;
  Op* op = alloc_op();
  op->id = id;
  op->peer = peer;
  op->pipe = pipe;
  op->bytes = 8;
  op->slot = slot;
  op->value = value;
  long rc;
  if (signal_path_ == SignalPath::kNativeAtomic) {
    op->kind = OpKind::kAtomic;
    rc = post_native_atomic(op);
  } else {
    op->kind = OpKind::kAtomicMessage;
    rc = post_record(op, RecordKind::kAtomicAdd, slot, value);
  }
  if (rc != 0) {
    free_op(op);
    if (rc == -FI_EAGAIN) return PostStatus::kRetry;
    throw_fi(signal_path_ == SignalPath::kNativeAtomic ? "fi_atomicmsg" : "fi_sendmsg", rc, peer,
             pipe);
  }
  ++user_inflight_;
  return PostStatus::kPosted;
}

void Endpoint::defer(Op* op) {
  op->next = UINT32_MAX;
  if (deferred_tail_ == UINT32_MAX) {
    deferred_head_ = index_of(op);
  } else {
    ops_[deferred_tail_].next = index_of(op);
  }
  deferred_tail_ = index_of(op);
}

void Endpoint::retry_deferred() {
  while (deferred_head_ != UINT32_MAX) {
    Op* op = &ops_[deferred_head_];
    const uint32_t next = op->next;
    const long rc = post_native_atomic(op);
    if (rc == -FI_EAGAIN) return;
    if (rc != 0) throw_fi("fi_atomicmsg (signal after write)", rc, op->peer, op->pipe);
    deferred_head_ = next;
    if (next == UINT32_MAX) deferred_tail_ = UINT32_MAX;
  }
}

int Endpoint::poll(Completion* out, int max) {
  UCCL_EP_CHECK_VALUE(max >= 1, "libfabric: poll(max=", max, ") needs max >= 1");
  retry_deferred();
  fi_cq_data_entry entries[kPollBatch];
  int n = 0;
  while (n < max) {
    // Every entry yields at most one completion, so never read more than there is room for.
    const size_t want = std::min<size_t>(kPollBatch, static_cast<size_t>(max - n));
    const ssize_t got = fi_cq_read(cq_, entries, want);
    if (got == -FI_EAGAIN) break;
    if (got == -FI_EAVAIL) {
      n += handle_error(out + n);
      continue;
    }
    if (got < 0) throw_fi("fi_cq_read", got, -1, -1);
    for (ssize_t i = 0; i < got; ++i) n += handle_entry(entries[i], out + n);
    if (static_cast<size_t>(got) < want) break;
  }
  return n;
}

int Endpoint::handle_entry(const fi_cq_data_entry& e, Completion* out) {
  if (Op* op = as_op(e.op_context)) return complete_op(op, out);
  const long rx = as_rx(e.op_context);
  // The CQ data arrives with (after) the data of its write: applying it now is data-first.
  if (e.flags & FI_REMOTE_CQ_DATA) apply_immediate(e.data);
  if (rx >= 0) {
    if ((e.flags & FI_RECV) && (e.flags & FI_MSG)) apply_record(static_cast<uint32_t>(rx), e.len);
    post_receive(static_cast<uint32_t>(rx));
  } else if (!(e.flags & FI_REMOTE_CQ_DATA)) {
    throw Error(ErrorKind::kRuntime, str_cat("libfabric (", provider_, "): rank ", options_.rank,
                                             " got a completion with no known operation (flags ",
                                             hex_text(e.flags), ")"));
  }
  return 0;
}

int Endpoint::complete_op(Op* op, Completion* out) {
  switch (op->kind) {
    case OpKind::kWriteThenAtomic:
      if (op->stage == 0) {
        // The write is delivered: its signal may go now, and lands after the data.
        op->stage = 1;
        const long rc = post_native_atomic(op);
        if (rc == -FI_EAGAIN) {
          defer(op);
        } else if (rc != 0) {
          throw_fi("fi_atomicmsg (signal after write)", rc, op->peer, op->pipe);
        }
        return 0;
      }
      break;
    case OpKind::kControl:
      ++control_completed_;
      free_op(op);
      return 0;
    case OpKind::kRaw:
      ++raw_completed_;
      free_op(op);
      return 0;
    default:
      break;
  }
  out->id = op->id;
  out->ok = true;
  out->error.clear();
  free_op(op);
  --user_inflight_;
  return 1;
}

int Endpoint::handle_error(Completion* out) {
  fi_cq_err_entry err{};
  const ssize_t rc = fi_cq_readerr(cq_, &err, 0);
  if (rc == -FI_EAGAIN) return 0;
  if (rc < 0) throw_fi("fi_cq_readerr", rc, -1, -1);
  char buf[256] = {};
  const char* detail = fi_cq_strerror(cq_, err.prov_errno, err.err_data, buf, sizeof(buf));
  const std::string text = str_cat(api().strerror(err.err), " (", -err.err, ", provider errno ",
                                   err.prov_errno, detail ? str_cat(": ", detail) : "", ")");
  if (Op* op = as_op(err.op_context)) {
    std::string what =
        str_cat("libfabric ", describe(*op), " failed (provider ", provider_, "): ", text);
    const OpKind kind = op->kind;
    const uint64_t id = op->id;
    free_op(op);
    if (kind == OpKind::kControl || kind == OpKind::kRaw) throw Error(ErrorKind::kRuntime, what);
    out->id = id;
    out->ok = false;
    out->error = std::move(what);
    --user_inflight_;
    return 1;
  }
  const long rx = as_rx(err.op_context);
  if (rx >= 0 && err.err == FI_ECANCELED) return 0;  // closing
  throw Error(ErrorKind::kRuntime,
              str_cat("libfabric (", provider_, "): rank ", options_.rank,
                      rx >= 0 ? " a posted receive failed: "
                              : str_cat(" completion error of no known operation (flags ",
                                        hex_text(err.flags), "): "),
                      text));
}

void Endpoint::add_signal(uint32_t slot, int64_t value, int from_rank) {
  if (slot >= num_slots_) {
    throw Error(
        ErrorKind::kRuntime,
        str_cat("libfabric (", provider_, "): rank ", options_.rank, " received a signal for slot ",
                slot, " beyond its ", num_slots_, " slots (from ",
                from_rank >= 0 ? str_cat("rank ", from_rank) : "a peer", ")"));
  }
  // Release: a reader that acquires the new value sees the data that arrived before it.
  std::atomic_ref<int64_t>(static_cast<int64_t*>(signals_.base)[slot])
      .fetch_add(value, std::memory_order_release);
}

void Endpoint::apply_immediate(uint64_t data) {
  const DecodedImm d = decode_imm(data);
  if (d.kind == kImmKindNone) return;
  if (d.kind != kImmKindSignal) {
    throw Error(ErrorKind::kRuntime, str_cat("libfabric (", provider_, "): rank ", options_.rank,
                                             " received remote CQ data ", data, " of unknown kind ",
                                             d.kind, " (mixed uccl-ep builds?)"));
  }
  add_signal(d.slot, d.value, -1);
}

void Endpoint::apply_record(uint32_t rx_index, size_t len) {
  const Record& r = rx_records_[rx_index];
  if (len != sizeof(Record) || r.magic != kRecordMagic ||
      r.src_rank >= static_cast<uint32_t>(options_.num_ranks)) {
    throw Error(ErrorKind::kRuntime,
                str_cat("libfabric (", provider_, "): rank ", options_.rank,
                        " received a malformed message (", len, " bytes, magic ", r.magic,
                        ", source rank ", r.src_rank, "; mixed uccl-ep builds?)"));
  }
  switch (static_cast<RecordKind>(r.kind)) {
    case RecordKind::kAtomicAdd:
      add_signal(r.slot, r.value, static_cast<int>(r.src_rank));
      return;
    case RecordKind::kHello:
      ++hello_seen_[r.src_rank];
      return;
    case RecordKind::kDone:
      ++done_seen_[r.src_rank];
      return;
    case RecordKind::kNop:
      return;
  }
  throw Error(ErrorKind::kRuntime,
              str_cat("libfabric (", provider_, "): rank ", options_.rank,
                      " received a message of unknown kind ", r.kind, " from rank ", r.src_rank));
}

double Endpoint::raw_writedata_loop(int peer, uint64_t bytes, uint64_t iterations, int window,
                                    double timeout_secs) {
  check_target(0, peer);
  const PeerInfo& p = peers_[peer];
  UCCL_EP_CHECK_VALUE(bytes <= rdma_buffer_.bytes && bytes <= p.rdma_buffer_bytes,
                      "raw loop: ", bytes, " bytes exceed an RDMA buffer");
  UCCL_EP_CHECK_VALUE(window >= 1 && window <= options_.max_inflight && user_inflight_ == 0,
                      "raw loop: window ", window,
                      " must be in [1, max_inflight] with nothing "
                      "else in flight");
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(timeout_secs));
  raw_completed_ = 0;
  uint64_t posted = 0;
  Completion sink[8];
  const auto start = Clock::now();
  while (raw_completed_ < iterations) {
    while (posted < iterations && posted - raw_completed_ < static_cast<uint64_t>(window)) {
      Op* op = alloc_op();
      op->kind = OpKind::kRaw;
      op->peer = peer;
      op->pipe = 0;
      op->bytes = bytes;
      op->id = posted;
      const ssize_t rc =
          fi_writedata(ep_, rdma_buffer_.base, bytes, rdma_buffer_desc_, 0, p.addr,
                       remote_addr(p.rdma_buffer_base, 0), p.rdma_buffer_key, &op->ctx);
      if (rc != 0) {
        free_op(op);
        if (rc == -FI_EAGAIN) break;
        throw_fi("fi_writedata (raw loop)", rc, peer, 0);
      }
      ++posted;
    }
    poll(sink, 8);
    UCCL_EP_CHECK(Clock::now() < deadline, ErrorKind::kTimeout, "raw fi_writedata loop (",
                  provider_, "): rank ", options_.rank, " timed out after ", timeout_secs,
                  " s with peer ", peer, ": posted ", posted, ", completed ", raw_completed_,
                  " of ", iterations);
  }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace uccl::ep::transport::libfabric
