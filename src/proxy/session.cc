// One rank's command path: queues, signal region, one transport per proxy thread, the
// address exchange, and the Proxy.
#include "proxy/session.h"

#include <utility>

#include "common/error.h"
#include "common/log.h"
#include "transport/wire.h"

namespace uccl::ep::proxy {
namespace {

constexpr uint32_t kMagic = 0x53504555;  // "UEPS"
constexpr uint16_t kVersion = 1;
constexpr size_t kMaxPlaneAddress = 1 << 20;

SessionOptions normalized(SessionOptions o) {
  UCCL_EP_CHECK_VALUE(o.num_queues >= 1, "proxy session: num_queues=", o.num_queues,
                      " must be >= 1");
  UCCL_EP_CHECK_VALUE(o.num_signal_slots > kNumBarrierGroups && o.num_signal_slots <= (1u << 24),
                      "proxy session: num_signal_slots=", o.num_signal_slots, " must be in [",
                      kNumBarrierGroups + 1, ", 16777216]");
  UCCL_EP_CHECK_VALUE(o.rdma_buffer.base != nullptr && o.rdma_buffer.bytes > 0,
                      "proxy session: the RDMA buffer is empty (base ",
                      o.rdma_buffer.base == nullptr ? "null" : "set", ", ", o.rdma_buffer.bytes,
                      " bytes)");
  if (static_cast<uint32_t>(o.proxy.num_threads) > o.num_queues) {
    log_message(LogLevel::kInfo,
                str_cat("proxy session: ", o.proxy.num_threads, " threads for ", o.num_queues,
                        " queues: using ", o.num_queues, " threads"));
    o.proxy.num_threads = static_cast<int>(o.num_queues);
  }
  validate_options(o.proxy);
  return o;
}

}  // namespace

ProxySession::ProxySession(const SessionOptions& options,
                           std::unique_ptr<queue::QueueAllocator> allocator)
    : options_(normalized(options)),
      queues_(options_.num_queues, options_.queue_capacity, std::move(allocator)) {
  signal_memory_ = transport::SharedMemory::create(transport::SharedMemory::unique_name("sig"),
                                                   size_t{options_.num_signal_slots} * 8);
  ProxyOptions& p = options_.proxy;
  p.signals = signals();
  p.num_signal_slots = options_.num_signal_slots;
  p.barrier_slot = num_user_signal_slots();
  p.num_barrier_groups = kNumBarrierGroups;
  const transport::Region sig{signal_memory_.data(), signal_memory_.bytes(), false,
                              signal_memory_.name()};
  for (int t = 0; t < p.num_threads; ++t) {
    transports_.push_back(create_transport(t));
    transports_.back()->register_regions(options_.rdma_buffer, sig);
  }
  caps_ = transports_.front()->capabilities();
}

ProxySession::~ProxySession() {
  if (proxy_ == nullptr) return;
  const StopResult r = proxy_->stop(StopMode::kAbandon);
  if (r.status == StopStatus::kFailed && r.message.find("did not exit") != std::string::npos) {
    // A proxy thread may still touch the queues and signals: leak them rather than free them.
    new queue::QueueSet(std::move(queues_));
    new transport::SharedMemory(std::move(signal_memory_));
    (void)proxy_.release();
  }
}

std::unique_ptr<transport::Transport> ProxySession::create_transport(int thread) {
  const ProxyOptions& p = options_.proxy;
  transport::TransportOptions t;
  t.rank = p.rank;
  t.num_ranks = p.num_ranks;
  t.num_pipes = num_pipes_of_thread(options_.num_queues, p.num_threads, thread);
  t.max_inflight = max_inflight_of_thread(p, options_.num_queues, thread);
  t.provider = options_.fi_provider;
  t.network = options_.network;
  t.signal_path = options_.signal_path;
  t.timeout_secs = p.timeout_secs;
  t.cuda_device = options_.cuda_device;
  std::unique_ptr<transport::Transport> out =
      options_.make_transport ? options_.make_transport(thread, options_.transport, t)
                              : transport::make_transport(options_.transport, t);
  UCCL_EP_CHECK_RUNTIME(out != nullptr,
                        "proxy session: the transport factory returned null for thread ", thread);
  return out;
}

std::vector<uint8_t> ProxySession::local_address() const {
  UCCL_EP_CHECK_VALUE(!transports_.empty(), "proxy session: local_address() after start()");
  transport::ByteWriter w;
  w.u32(kMagic);
  w.u16(kVersion);
  w.u32(static_cast<uint32_t>(options_.proxy.rank));
  w.u32(static_cast<uint32_t>(options_.proxy.num_ranks));
  w.u32(static_cast<uint32_t>(options_.proxy.num_threads));
  w.u32(options_.num_queues);
  w.str(caps_.name);
  for (const auto& t : transports_) {
    const std::vector<uint8_t> a = t->local_address();
    w.bytes(a.data(), a.size());
  }
  return w.take();
}

void ProxySession::connect(const std::vector<std::vector<uint8_t>>& addresses) {
  UCCL_EP_CHECK_VALUE(!connected_ && !transports_.empty(),
                      "proxy session: connect() runs once, before start()");
  const ProxyOptions& p = options_.proxy;
  UCCL_EP_CHECK_VALUE(static_cast<int>(addresses.size()) == p.num_ranks,
                      "proxy session: ", addresses.size(), " addresses for ", p.num_ranks,
                      " ranks");
  std::vector<std::vector<std::vector<uint8_t>>> planes(
      static_cast<size_t>(p.num_threads), std::vector<std::vector<uint8_t>>(addresses.size()));
  for (int r = 0; r < p.num_ranks; ++r) {
    transport::ByteReader in(addresses[r], str_cat("proxy address of rank ", r));
    in.header(kMagic, kVersion);
    const uint32_t rank = in.u32(), num_ranks = in.u32(), threads = in.u32(), queues = in.u32();
    const std::string name = in.str(256);
    UCCL_EP_CHECK_VALUE(
        rank == static_cast<uint32_t>(r) && num_ranks == static_cast<uint32_t>(p.num_ranks),
        in.what(), " says rank ", rank, " of ", num_ranks);
    UCCL_EP_CHECK_VALUE(
        threads == static_cast<uint32_t>(p.num_threads) && queues == options_.num_queues,
        "proxy session: rank ", r, " runs ", threads, " proxy thread(s) over ", queues,
        " queue(s), rank ", p.rank, " ", p.num_threads, " over ", options_.num_queues,
        ": every rank needs the same UCCL_EP_NUM_PROXY_THREADS and queue count");
    UCCL_EP_CHECK_VALUE(name == caps_.name, "proxy session: rank ", r, " uses transport '", name,
                        "', rank ", p.rank, " '", caps_.name,
                        "' (UCCL_EP_TRANSPORT and "
                        "UCCL_EP_FI_PROVIDER must agree on every rank)");
    for (int t = 0; t < p.num_threads; ++t) planes[t][r] = in.bytes(kMaxPlaneAddress);
    in.finish();
  }
  for (int t = 0; t < p.num_threads; ++t) transports_[t]->connect(planes[t]);
  connected_ = true;
}

void ProxySession::connect(bootstrap::Bootstrap& boot) {
  UCCL_EP_CHECK_VALUE(
      boot.rank() == options_.proxy.rank && boot.num_ranks() == options_.proxy.num_ranks,
      "proxy session: bootstrap is rank ", boot.rank(), " of ", boot.num_ranks(),
      ", the session rank ", options_.proxy.rank, " of ", options_.proxy.num_ranks);
  connect(boot.all_gather(local_address()));
}

void ProxySession::start() {
  UCCL_EP_CHECK_VALUE(connected_, "proxy session: start() before connect()");
  UCCL_EP_CHECK_VALUE(proxy_ == nullptr, "proxy session: start() called twice");
  std::vector<queue::QueueHostView> views;
  for (uint32_t q = 0; q < options_.num_queues; ++q) views.push_back(queues_.host_view(q));
  proxy_ = std::make_unique<Proxy>(options_.proxy, views, std::move(transports_));
  transports_.clear();
  proxy_->start();
}

StopResult ProxySession::stop(StopMode mode) {
  if (proxy_ == nullptr) return StopResult{StopStatus::kNotStarted, 0, 0, "proxy: never started"};
  return proxy_->stop(mode);
}

void ProxySession::check() const {
  if (proxy_ != nullptr) proxy_->check();
}

}  // namespace uccl::ep::proxy
