// The fake transport: argument checks and address exchange on top of FakeFabric, its factory
// and the per-process fabrics shared by key.
#include "transport/fake/fake_transport.h"

#include <map>
#include <mutex>
#include <utility>

#include "common/error.h"
#include "transport/wire.h"

namespace uccl::ep::transport::fake {
namespace {
constexpr uint32_t kMagic = 0x4b504555;  // "UEPK"
constexpr uint16_t kVersion = 1;
}  // namespace

FakeTransport::FakeTransport(const TransportOptions& options, std::shared_ptr<FakeFabric> fabric)
    : options_(options), fabric_(std::move(fabric)) {
  UCCL_EP_CHECK_VALUE(fabric_ != nullptr,
                      "fake transport: no fabric (create one FakeFabric and share it between the "
                      "ranks of this process, or use shared_fabric())");
  UCCL_EP_CHECK_VALUE(fabric_->num_ranks() == options.num_ranks, "fake transport: the fabric has ",
                      fabric_->num_ranks(), " ranks but num_ranks=", options.num_ranks);
}

Capabilities FakeTransport::capabilities() const {
  const FakeFabricOptions& o = fabric_->options();
  return Capabilities{.name = "fake",
                      .native_atomics = o.native_atomics,
                      .ordered_delivery = o.ordered_delivery,
                      .device_memory = false,
                      .target_progress = o.target_progress,
                      .immediate_bytes = 4,
                      .max_fused_signal_value = o.max_fused_signal_value,
                      .max_signal_slots = o.max_signal_slots};
}

void FakeTransport::register_regions(const Region& rdma_buffer, const Region& signals) {
  UCCL_EP_CHECK_VALUE(!rdma_buffer.device && !signals.device,
                      "fake transport: regions must be host memory (capabilities().device_memory "
                      "is false)");
  fabric_->register_rank(options_.rank, rdma_buffer, signals);
  registered_ = true;
}

std::vector<uint8_t> FakeTransport::local_address() const {
  UCCL_EP_CHECK_VALUE(registered_, "fake transport: local_address() before register_regions()");
  ByteWriter w;
  w.u32(kMagic);
  w.u16(kVersion);
  w.u32(static_cast<uint32_t>(options_.rank));
  w.u32(static_cast<uint32_t>(options_.num_ranks));
  return w.take();
}

void FakeTransport::connect(const std::vector<std::vector<uint8_t>>& addresses) {
  UCCL_EP_CHECK_VALUE(static_cast<int>(addresses.size()) == options_.num_ranks,
                      "fake transport: connect() got ", addresses.size(), " addresses for ",
                      options_.num_ranks, " ranks");
  for (int r = 0; r < options_.num_ranks; ++r) {
    ByteReader in(addresses[r], str_cat("fake address of rank ", r));
    in.header(kMagic, kVersion);
    const uint32_t rank = in.u32();
    const uint32_t num_ranks = in.u32();
    in.finish();
    UCCL_EP_CHECK_VALUE(
        rank == static_cast<uint32_t>(r) && num_ranks == static_cast<uint32_t>(options_.num_ranks),
        in.what(), " says rank ", rank, " of ", num_ranks);
    fabric_->check_registered(options_.rank, r);
  }
  connected_ = true;
}

void FakeTransport::check_post(int pipe, int peer) const {
  UCCL_EP_CHECK_VALUE(connected_, "fake transport: rank ", options_.rank,
                      " posts before connect()");
  UCCL_EP_CHECK_VALUE(pipe >= 0 && pipe < options_.num_pipes, "fake transport: pipe ", pipe,
                      " out of [0, ", options_.num_pipes, ")");
  UCCL_EP_CHECK_VALUE(peer >= 0 && peer < options_.num_ranks && peer != options_.rank,
                      "fake transport: peer ", peer, " out of [0, ", options_.num_ranks,
                      ") or this rank (", options_.rank, "): local moves bypass the transport");
}

PostStatus FakeTransport::post_write(int pipe, int peer, uint64_t local_offset,
                                     uint64_t remote_offset, uint64_t bytes, const Signal* signal,
                                     uint64_t id) {
  check_post(pipe, peer);
  return fabric_->post(FakeOp{.kind = FakeOpKind::kWrite,
                              .rank = options_.rank,
                              .peer = peer,
                              .pipe = pipe,
                              .local_offset = local_offset,
                              .remote_offset = remote_offset,
                              .bytes = bytes,
                              .has_signal = signal != nullptr,
                              .slot = signal ? signal->slot : 0,
                              .value = signal ? signal->value : 0,
                              .id = id},
                       options_.max_inflight);
}

PostStatus FakeTransport::post_atomic_add(int pipe, int peer, uint32_t slot, int64_t value,
                                          uint64_t id) {
  check_post(pipe, peer);
  return fabric_->post(FakeOp{.kind = FakeOpKind::kAtomicAdd,
                              .rank = options_.rank,
                              .peer = peer,
                              .pipe = pipe,
                              .slot = slot,
                              .value = value,
                              .id = id},
                       options_.max_inflight);
}

int FakeTransport::poll(Completion* out, int max) {
  return fabric_->progress(options_.rank, out, max);
}

std::unique_ptr<Transport> make_fake_transport(const TransportOptions& options,
                                               std::shared_ptr<FakeFabric> fabric) {
  check_transport_options(options);
  return std::make_unique<FakeTransport>(options, std::move(fabric));
}

std::shared_ptr<FakeFabric> shared_fabric(const std::string& key, int plane, int num_ranks,
                                          const FakeFabricOptions& options) {
  static std::mutex mu;
  static std::map<std::pair<std::string, int>, std::weak_ptr<FakeFabric>> fabrics;
  std::lock_guard<std::mutex> lock(mu);
  std::erase_if(fabrics, [](const auto& entry) { return entry.second.expired(); });
  std::weak_ptr<FakeFabric>& slot = fabrics[{key, plane}];
  if (auto fabric = slot.lock()) {
    UCCL_EP_CHECK_VALUE(fabric->num_ranks() == num_ranks, "fake fabric '", key, "' plane ", plane,
                        " has ", fabric->num_ranks(), " ranks, not ", num_ranks);
    return fabric;
  }
  auto fabric = std::make_shared<FakeFabric>(num_ranks, options);
  slot = fabric;
  return fabric;
}

}  // namespace uccl::ep::transport::fake
