// libfabric transport setup: resources, signal path, registration, address exchange, warm-up.
#include <rdma/fi_atomic.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_errno.h>

#include <algorithm>
#include <atomic>

#include "common/error.h"
#include "common/log.h"
#include "transport/libfabric/api.h"
#include "transport/libfabric/endpoint.h"
#include "transport/libfabric/fabric.h"
#include "transport/libfabric/provider_env.h"
#include "transport/wire.h"

namespace uccl::ep::transport::libfabric {
namespace {

constexpr uint32_t kAddressMagic = 0x46504555;  // "UEPF"
constexpr uint16_t kAddressVersion = 1;
constexpr uint32_t kMaxRxBuffers = 256;
constexpr size_t kMaxNameBytes = 1024;
// Keys we ask for where the provider lets the application choose (no FI_MR_PROV_KEY); they
// must be unique within the domain (a duplicate fails with -FI_ENOKEY).
constexpr uint64_t kStagingKey = 1, kRxKey = 2, kRdmaBufferKey = 3, kSignalKey = 4;

const char* path_name(SignalPath p) {
  switch (p) {
    case SignalPath::kRemoteCqData:
      return "remote CQ data";
    case SignalPath::kNativeAtomic:
      return "native fi_atomic";
    case SignalPath::kAuto:
      return "auto";
  }
  return "?";
}

std::string join_missing(const std::vector<uint32_t>& seen, int self) {
  std::string out;
  for (size_t r = 0; r < seen.size(); ++r)
    if (static_cast<int>(r) != self && seen[r] == 0) out += str_cat(out.empty() ? "" : ", ", r);
  return out;
}

}  // namespace

Endpoint::Endpoint(const TransportOptions& options) : options_(options) {
  hello_seen_.assign(options.num_ranks, 0);
  done_seen_.assign(options.num_ranks, 0);
  try {
    open_resources(cuda_device_count() > 0);
  } catch (...) {
    close_all();
    throw;
  }
}

Endpoint::~Endpoint() {
  close_all();
}

void Endpoint::close_all() noexcept {
  // The endpoint first (it references the CQ, AV and MRs), then what it used.
  if (ep_) fi_close(&ep_->fid);
  ep_ = nullptr;
  for (fid_mr** f : {&rdma_buffer_mr_, &sig_mr_, &staging_mr_, &rx_mr_}) {
    if (*f) fi_close(&(*f)->fid);
    *f = nullptr;
  }
  if (av_) fi_close(&av_->fid);
  if (cq_) fi_close(&cq_->fid);
  if (domain_) fi_close(&domain_->fid);
  if (fabric_) fi_close(&fabric_->fid);
  if (info_) api().freeinfo(info_);
  av_ = nullptr;
  cq_ = nullptr;
  domain_ = nullptr;
  fabric_ = nullptr;
  info_ = nullptr;
}

void Endpoint::open_resources(bool want_hmem) {
  apply_network_hints(options_.network);  // FI_* variables: before fi_getinfo reads them
  ProviderSelection sel = select_provider(options_.provider, options_.signal_path, want_hmem);
  info_ = sel.info;
  provider_ = sel.name;
  warn_ignored_hints(options_.network, provider_);
  virt_addr_ = (info_->domain_attr->mr_mode & FI_MR_VIRT_ADDR) != 0;
  mr_endpoint_ = (info_->domain_attr->mr_mode & FI_MR_ENDPOINT) != 0;
  immediate_bytes_ = static_cast<int>(info_->domain_attr->cq_data_size);
  // Completion means delivered at the target, for every operation (the raw loop's fi_writedata
  // included): the proxy's FENCE counts completions.
  info_->tx_attr->op_flags |= FI_DELIVERY_COMPLETE;

  if (int rc = api().fabric(info_->fabric_attr, &fabric_, nullptr))
    throw_fi("fi_fabric", rc, -1, -1);
  if (int rc = fi_domain(fabric_, info_, &domain_, nullptr)) throw_fi("fi_domain", rc, -1, -1);
  const uint32_t num_rx = std::min<uint32_t>(kMaxRxBuffers, info_->rx_attr->size);
  const uint32_t num_ops = options_.max_inflight + 2 * options_.num_ranks + 16;  // + control
  fi_cq_attr cq_attr{};
  cq_attr.format = FI_CQ_FORMAT_DATA;
  cq_attr.wait_obj = FI_WAIT_NONE;
  // Own operations and posted receives are bounded; remote CQ data from peers is not, so leave
  // room for a burst (the proxy's in-flight limits bound it in practice).
  cq_attr.size = num_ops + num_rx + 16384;
  if (int rc = fi_cq_open(domain_, &cq_attr, &cq_, nullptr)) throw_fi("fi_cq_open", rc, -1, -1);
  fi_av_attr av_attr{};
  av_attr.type = FI_AV_TABLE;
  av_attr.count = options_.num_ranks;
  if (int rc = fi_av_open(domain_, &av_attr, &av_, nullptr)) throw_fi("fi_av_open", rc, -1, -1);
  if (int rc = fi_endpoint(domain_, info_, &ep_, nullptr)) throw_fi("fi_endpoint", rc, -1, -1);
  if (int rc = fi_ep_bind(ep_, &cq_->fid, FI_TRANSMIT | FI_RECV))
    throw_fi("fi_ep_bind(cq)", rc, -1, -1);
  if (int rc = fi_ep_bind(ep_, &av_->fid, 0)) throw_fi("fi_ep_bind(av)", rc, -1, -1);
  if (int rc = fi_enable(ep_)) throw_fi("fi_enable", rc, -1, -1);

  choose_signal_path(sel.atomics);
  if (sel.hmem) {
    hmem_reason_ = probe_cuda_registration(domain_);
    hmem_ok_ = hmem_reason_.empty();
  } else {
    hmem_reason_ = want_hmem ? str_cat(provider_, " does not offer FI_HMEM")
                             : std::string("no CUDA device visible");
  }

  create_pools(num_ops, num_rx);
  log_choice(sel.tried);
}

void Endpoint::create_pools(uint32_t num_ops, uint32_t num_rx) {
  ops_.resize(num_ops);
  staging_.resize(num_ops);
  for (uint32_t i = 0; i < num_ops; ++i) ops_[i].next = i + 1 < num_ops ? i + 1 : UINT32_MAX;
  free_head_ = 0;
  staging_mr_ = register_memory(staging_.data(), staging_.size() * sizeof(Record),
                                FI_SEND | FI_WRITE | FI_READ, -1, kStagingKey, "staging records");
  staging_desc_ = fi_mr_desc(staging_mr_);
  rx_slots_.resize(num_rx);
  rx_records_.resize(num_rx);
  rx_mr_ = register_memory(rx_records_.data(), rx_records_.size() * sizeof(Record), FI_RECV, -1,
                           kRxKey, "receive pool");
  rx_desc_ = fi_mr_desc(rx_mr_);
  for (uint32_t i = 0; i < num_rx; ++i) post_receive(i);
}

void Endpoint::log_choice(const std::string& refused) const {
  static std::atomic<bool> logged{false};
  log_message(logged.exchange(true) ? LogLevel::kDebug : LogLevel::kInfo,
              str_cat("libfabric transport: provider ", provider_, " (",
                      refused.empty() ? "" : str_cat("refused: ", refused, "; "), "mr_mode ",
                      hex_text(static_cast<uint64_t>(info_->domain_attr->mr_mode)), ", ",
                      immediate_bytes_, "-byte remote CQ data), signals via ",
                      path_name(signal_path_), ", GPU memory registration ",
                      hmem_ok_ ? std::string("works")
                               : str_cat("unavailable (", hmem_reason_,
                                         "): the RDMA buffer must be host memory")));
}

void Endpoint::choose_signal_path(bool atomics_granted) {
  bool query_ok = false;
  std::string query_why = "FI_ATOMIC not requested";
  if (atomics_granted) {
    fi_atomic_attr attr{};
    const int rc = fi_query_atomic(domain_, FI_INT64, FI_SUM, &attr, 0);
    query_ok = rc == 0 && attr.count >= 1;
    query_why = rc == 0 ? str_cat("count ", attr.count) : fi_error_text(rc);
    // Capabilities can lie: a provider known to misapply fi_atomic is treated as lacking it.
    if (const std::string broken = native_atomics_broken(provider_); query_ok && !broken.empty()) {
      query_ok = false;
      query_why = broken;
    }
  }
  switch (options_.signal_path) {
    case SignalPath::kNativeAtomic:
      UCCL_EP_CHECK_RUNTIME(query_ok, "libfabric (", provider_,
                            "): native atomics requested but unusable: ", query_why,
                            " (fi_query_atomic(FI_INT64, FI_SUM) and the known-broken table); "
                            "use the remote-CQ-data signal path");
      signal_path_ = SignalPath::kNativeAtomic;
      break;
    case SignalPath::kAuto:
      signal_path_ = query_ok ? SignalPath::kNativeAtomic : SignalPath::kRemoteCqData;
      break;
    case SignalPath::kRemoteCqData:
      signal_path_ = SignalPath::kRemoteCqData;
      break;
  }
  if (signal_path_ == SignalPath::kRemoteCqData) {
    UCCL_EP_CHECK_RUNTIME(immediate_bytes_ >= 4, "libfabric (", provider_, "): carries ",
                          immediate_bytes_, " bytes of remote CQ data, signals need 4");
  }
}

fid_mr* Endpoint::register_memory(void* base, uint64_t bytes, uint64_t access, int cuda_device,
                                  uint64_t key, const char* what) {
  iovec iov{base, static_cast<size_t>(bytes)};
  fi_mr_attr attr{};
  attr.mr_iov = &iov;
  attr.iov_count = 1;
  attr.access = access;
  attr.requested_key = key;
  attr.iface = cuda_device >= 0 ? FI_HMEM_CUDA : FI_HMEM_SYSTEM;
  attr.device.cuda = cuda_device >= 0 ? cuda_device : 0;
  fid_mr* mr = nullptr;
  if (int rc = fi_mr_regattr(domain_, &attr, 0, &mr)) {
    throw Error(ErrorKind::kRuntime,
                str_cat("libfabric fi_mr_regattr of the ", what, " (", bytes, " bytes",
                        cuda_device >= 0 ? str_cat(", CUDA device ", cuda_device) : "",
                        ") failed (provider ", provider_, ", rank ", options_.rank,
                        "): ", fi_error_text(rc)));
  }
  if (mr_endpoint_) {
    int rc = fi_mr_bind(mr, &ep_->fid, 0);
    if (rc == 0) rc = fi_mr_enable(mr);
    if (rc != 0) {
      fi_close(&mr->fid);
      throw_fi("fi_mr_bind/fi_mr_enable (FI_MR_ENDPOINT)", rc, -1, -1);
    }
  }
  return mr;
}

void Endpoint::register_regions(const Region& rdma_buffer, const Region& signals) {
  UCCL_EP_CHECK_VALUE(rdma_buffer_mr_ == nullptr, "libfabric: register_regions() called twice");
  UCCL_EP_CHECK_VALUE(
      rdma_buffer.base && rdma_buffer.bytes > 0 && signals.base && signals.bytes >= 8,
      "libfabric: register_regions needs a non-empty RDMA buffer and at least "
      "one signal slot");
  UCCL_EP_CHECK_VALUE(reinterpret_cast<uintptr_t>(signals.base) % 8 == 0 && signals.bytes % 8 == 0,
                      "libfabric: the signal region must be 8-byte aligned int64 slots");
  for (const Region* r : {&rdma_buffer, &signals}) {
    UCCL_EP_CHECK_RUNTIME(!r->device || hmem_ok_, "libfabric (", provider_,
                          "): cannot register GPU memory for the ",
                          r == &rdma_buffer ? "RDMA buffer" : "signal region", ": ", hmem_reason_,
                          ". capabilities().device_memory is false: allocate it in host memory");
  }
  UCCL_EP_CHECK_VALUE(!signals.device || signal_path_ == SignalPath::kNativeAtomic, "libfabric (",
                      provider_, "): signals via ", path_name(signal_path_),
                      " are applied by the CPU, so the signal region must be host memory "
                      "(pinned and mapped for the GPU)");
  rdma_buffer_mr_ = register_memory(
      rdma_buffer.base, rdma_buffer.bytes, FI_WRITE | FI_READ | FI_REMOTE_WRITE | FI_REMOTE_READ,
      rdma_buffer.device ? cuda_device_of(rdma_buffer.base) : -1, kRdmaBufferKey, "RDMA buffer");
  rdma_buffer_desc_ = fi_mr_desc(rdma_buffer_mr_);
  sig_mr_ = register_memory(
      signals.base, signals.bytes, FI_WRITE | FI_READ | FI_REMOTE_WRITE | FI_REMOTE_READ,
      signals.device ? cuda_device_of(signals.base) : -1, kSignalKey, "signal region");
  rdma_buffer_ = rdma_buffer;
  signals_ = signals;
  num_slots_ = std::min<uint64_t>(signals.bytes / 8, kImmMaxSlots);
}

std::vector<uint8_t> Endpoint::local_address() const {
  UCCL_EP_CHECK_VALUE(rdma_buffer_mr_ != nullptr,
                      "libfabric: local_address() before register_regions()");
  std::vector<uint8_t> name(256);
  size_t len = name.size();
  int rc = fi_getname(&ep_->fid, name.data(), &len);
  if (rc == -FI_ETOOSMALL && len <= kMaxNameBytes) {
    name.resize(len);
    rc = fi_getname(&ep_->fid, name.data(), &len);
  }
  if (rc != 0) throw_fi("fi_getname", rc, -1, -1);
  ByteWriter w;
  w.u32(kAddressMagic);
  w.u16(kAddressVersion);
  w.u32(static_cast<uint32_t>(options_.rank));
  w.u32(static_cast<uint32_t>(options_.num_ranks));
  w.str(provider_);
  w.u8(static_cast<uint8_t>(signal_path_));
  w.u8(virt_addr_ ? 1 : 0);
  w.bytes(name.data(), len);
  w.u64(reinterpret_cast<uintptr_t>(rdma_buffer_.base));
  w.u64(rdma_buffer_.bytes);
  w.u64(fi_mr_key(rdma_buffer_mr_));
  w.u64(reinterpret_cast<uintptr_t>(signals_.base));
  w.u64(signals_.bytes);
  w.u64(fi_mr_key(sig_mr_));
  return w.take();
}

void Endpoint::parse_peer(int rank, const std::vector<uint8_t>& blob) {
  ByteReader in(blob, str_cat("libfabric address of rank ", rank));
  in.header(kAddressMagic, kAddressVersion);
  const uint32_t r = in.u32(), n = in.u32();
  UCCL_EP_CHECK_VALUE(
      r == static_cast<uint32_t>(rank) && n == static_cast<uint32_t>(options_.num_ranks), in.what(),
      " says rank ", r, " of ", n, " (expected ", rank, " of ", options_.num_ranks, ")");
  const std::string prov = in.str(64);
  const auto path = static_cast<SignalPath>(in.u8());
  const bool virt = in.u8() != 0;
  UCCL_EP_CHECK_VALUE(prov == provider_, "libfabric: rank ", rank, " uses provider ", prov,
                      ", rank ", options_.rank, " uses ", provider_,
                      ": set UCCL_EP_FI_PROVIDER to the same provider on every rank");
  UCCL_EP_CHECK_VALUE(path == signal_path_ && virt == virt_addr_, "libfabric: rank ", rank,
                      " carries signals via ", path_name(path), ", rank ", options_.rank, " via ",
                      path_name(signal_path_),
                      " (or FI_MR_VIRT_ADDR differs): every rank "
                      "must choose the same signal path");
  const std::vector<uint8_t> name = in.bytes(kMaxNameBytes);
  PeerInfo& p = peers_[rank];
  p.rdma_buffer_base = in.u64();
  p.rdma_buffer_bytes = in.u64();
  p.rdma_buffer_key = in.u64();
  p.sig_base = in.u64();
  p.sig_bytes = in.u64();
  p.sig_key = in.u64();
  in.finish();
  const int inserted = fi_av_insert(av_, name.data(), 1, &p.addr, 0, nullptr);
  if (inserted != 1) throw_fi("fi_av_insert", inserted < 0 ? inserted : -FI_EINVAL, rank, -1);
}

void Endpoint::connect(const std::vector<std::vector<uint8_t>>& addresses) {
  UCCL_EP_CHECK_VALUE(rdma_buffer_mr_ != nullptr && !connected_,
                      "libfabric: connect() needs register_regions() first and runs once");
  UCCL_EP_CHECK_VALUE(static_cast<int>(addresses.size()) == options_.num_ranks,
                      "libfabric: connect() got ", addresses.size(), " addresses for ",
                      options_.num_ranks, " ranks");
  peers_.assign(options_.num_ranks, PeerInfo{});
  for (int r = 0; r < options_.num_ranks; ++r) parse_peer(r, addresses[r]);
  warm_up();
  connected_ = true;
}

void Endpoint::post_receive(uint32_t index) {
  const long rc = fi_recv(ep_, &rx_records_[index], sizeof(Record), rx_desc_, FI_ADDR_UNSPEC,
                          &rx_slots_[index].ctx);
  if (rc != 0) throw_fi("fi_recv (receive pool)", rc, -1, -1);
}

void Endpoint::post_control(int peer, RecordKind kind, Clock::time_point deadline) {
  Completion sink[4];
  for (;;) {
    Op* op = alloc_op();
    UCCL_EP_CHECK_RUNTIME(op != nullptr, "libfabric: control operation pool exhausted");
    op->kind = OpKind::kControl;
    op->peer = peer;
    op->pipe = -1;
    const long rc = post_record(op, kind, 0, 0);
    if (rc == 0) {
      ++control_posted_;
      return;
    }
    free_op(op);
    if (rc != -FI_EAGAIN) throw_fi("fi_sendmsg (connect)", rc, peer, -1);
    poll(sink, 4);  // -FI_EAGAIN: rxm connects on demand; progress until it is up
    UCCL_EP_CHECK(Clock::now() < deadline, ErrorKind::kTimeout, "libfabric connect (", provider_,
                  "): rank ", options_.rank, " could not post to peer ", peer, " within ",
                  options_.timeout_secs, " s (-FI_EAGAIN throughout)");
  }
}

void Endpoint::post_probe_atomic(int peer, Clock::time_point deadline) {
  Completion sink[4];
  for (;;) {
    Op* op = alloc_op();
    UCCL_EP_CHECK_RUNTIME(op != nullptr, "libfabric: control operation pool exhausted");
    op->kind = OpKind::kControl;
    op->peer = peer;
    op->pipe = -1;
    op->slot = 0;
    op->value = 0;  // adds nothing: proves fi_atomic works on the peer's signal region
    const long rc = post_native_atomic(op);
    if (rc == 0) {
      ++control_posted_;
      return;
    }
    free_op(op);
    if (rc != -FI_EAGAIN) {
      throw Error(ErrorKind::kRuntime,
                  str_cat("libfabric (", provider_, "): fi_atomic probe to peer ", peer,
                          " failed although fi_query_atomic agreed: ", fi_error_text(rc),
                          "; use the remote-CQ-data signal path"));
    }
    poll(sink, 4);
    UCCL_EP_CHECK(Clock::now() < deadline, ErrorKind::kTimeout, "libfabric connect (", provider_,
                  "): rank ", options_.rank, " could not post the atomic probe to peer ", peer);
  }
}

void Endpoint::wait_control(Clock::time_point deadline, const char* phase,
                            const std::vector<uint32_t>& seen) {
  Completion sink[4];
  for (;;) {
    poll(sink, 4);
    const std::string missing = join_missing(seen, options_.rank);
    if (missing.empty() && control_completed_ == control_posted_) return;
    if (Clock::now() >= deadline) {
      throw Error(
          ErrorKind::kTimeout,
          str_cat("libfabric connect (", provider_, "): rank ", options_.rank, " timed out after ",
                  options_.timeout_secs, " s in the ", phase, " exchange; no ", phase,
                  " yet from ranks [", missing, "]; ", control_completed_, " of ", control_posted_,
                  " of its own control operations completed"));
    }
  }
}

void Endpoint::warm_up() {
  // rxm connects on demand: the first operations to a peer see -FI_EAGAIN until the
  // connection is up. A hello to every peer brings every connection up now; the done round
  // makes sure no rank leaves while a peer still needs its progress to finish the hellos.
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(options_.timeout_secs));
  for (int p = 0; p < options_.num_ranks; ++p)
    if (p != options_.rank) post_control(p, RecordKind::kHello, deadline);
  if (signal_path_ == SignalPath::kNativeAtomic) {
    for (int p = 0; p < options_.num_ranks; ++p)
      if (p != options_.rank) post_probe_atomic(p, deadline);
  }
  wait_control(deadline, "hello", hello_seen_);
  for (int p = 0; p < options_.num_ranks; ++p)
    if (p != options_.rank) post_control(p, RecordKind::kDone, deadline);
  wait_control(deadline, "done", done_seen_);
}

Capabilities Endpoint::capabilities() const {
  return Capabilities{
      .name = str_cat("libfabric:", provider_),
      .native_atomics = signal_path_ == SignalPath::kNativeAtomic,
      .ordered_delivery = false,  // rxm drops WAW/SAW once atomics are on, SRD has none
      .device_memory = hmem_ok_,
      .target_progress = true,  // manual progress everywhere we run (and our CQ-data signals)
      .immediate_bytes = immediate_bytes_,
      .max_fused_signal_value =
          signal_path_ == SignalPath::kRemoteCqData ? kImmMaxValue : INT64_MAX,
      .max_signal_slots = kImmMaxSlots,
  };
}

void Endpoint::throw_fi(const char* call, long rc, int peer, int pipe) const {
  throw Error(ErrorKind::kRuntime,
              str_cat("libfabric ", call, " failed (provider ", provider_.empty() ? "?" : provider_,
                      ", rank ", options_.rank, peer >= 0 ? str_cat(", peer ", peer) : "",
                      pipe >= 0 ? str_cat(", pipe ", pipe) : "", "): ", fi_error_text(rc)));
}

}  // namespace uccl::ep::transport::libfabric
