// The fake transport: argument checks and address exchange on top of FakeFabric.
#include "transport/fake/fake_transport.h"

#include "common/error.h"
#include "transport/factories.h"
#include "transport/wire.h"

namespace uccl::ep::transport {
namespace fake {
namespace {
constexpr uint32_t kMagic = 0x4b504555;  // "UEPK"
constexpr uint16_t kVersion = 1;
}  // namespace

FakeTransport::FakeTransport(const TransportOptions& options)
    : options_(options), fabric_(options.fake_fabric) {
  UCCL_EP_CHECK_VALUE(fabric_ != nullptr,
                      "fake transport: TransportOptions::fake_fabric is not set (create one "
                      "FakeFabric and share it between the ranks of this process)");
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

void FakeTransport::register_regions(const Region& data, const Region& signals) {
  UCCL_EP_CHECK_VALUE(!data.device && !signals.device,
                      "fake transport: regions must be host memory (capabilities().device_memory "
                      "is false)");
  fabric_->register_rank(options_.rank, data, signals);
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

void FakeTransport::check_post(int channel, int peer) const {
  UCCL_EP_CHECK_VALUE(connected_, "fake transport: rank ", options_.rank,
                      " posts before connect()");
  UCCL_EP_CHECK_VALUE(channel >= 0 && channel < options_.num_channels, "fake transport: channel ",
                      channel, " out of [0, ", options_.num_channels, ")");
  UCCL_EP_CHECK_VALUE(peer >= 0 && peer < options_.num_ranks && peer != options_.rank,
                      "fake transport: peer ", peer, " out of [0, ", options_.num_ranks,
                      ") or this rank (", options_.rank, "): local moves bypass the transport");
}

PostStatus FakeTransport::post_write(int channel, int peer, uint64_t local_offset,
                                     uint64_t remote_offset, uint64_t bytes, const Signal* signal,
                                     uint64_t id) {
  check_post(channel, peer);
  return fabric_->post(FakeOp{.kind = FakeOpKind::kWrite,
                              .rank = options_.rank,
                              .peer = peer,
                              .channel = channel,
                              .local_offset = local_offset,
                              .remote_offset = remote_offset,
                              .bytes = bytes,
                              .has_signal = signal != nullptr,
                              .slot = signal ? signal->slot : 0,
                              .value = signal ? signal->value : 0,
                              .id = id},
                       options_.max_inflight);
}

PostStatus FakeTransport::post_atomic_add(int channel, int peer, uint32_t slot, int64_t value,
                                          uint64_t id) {
  check_post(channel, peer);
  return fabric_->post(FakeOp{.kind = FakeOpKind::kAtomicAdd,
                              .rank = options_.rank,
                              .peer = peer,
                              .channel = channel,
                              .slot = slot,
                              .value = value,
                              .id = id},
                       options_.max_inflight);
}

int FakeTransport::poll(Completion* out, int max) {
  return fabric_->progress(options_.rank, out, max);
}

}  // namespace fake

std::unique_ptr<Transport> make_fake_transport(const TransportOptions& options) {
  return std::make_unique<fake::FakeTransport>(options);
}

}  // namespace uccl::ep::transport
