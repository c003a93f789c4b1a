// The null transport: every post completes at once; nothing moves.
#include "transport/null/null_transport.h"

#include <cstdint>

#include "common/error.h"
#include "transport/wire.h"

namespace uccl::ep::transport {
namespace null {
namespace {
constexpr uint32_t kMagic = 0x4e504555;  // "UEPN"
constexpr uint16_t kVersion = 1;
}  // namespace

NullTransport::NullTransport(const TransportOptions& options)
    : options_(options), ring_(static_cast<size_t>(options.max_inflight)) {}

Capabilities NullTransport::capabilities() const {
  return Capabilities{.name = "null",
                      .native_atomics = true,
                      .ordered_delivery = true,
                      .device_memory = true,
                      .target_progress = false,
                      .immediate_bytes = 8,
                      .max_fused_signal_value = INT64_MAX,
                      .max_signal_slots = UINT32_MAX};
}

void NullTransport::register_regions(const Region&, const Region&) {}

std::vector<uint8_t> NullTransport::local_address() const {
  ByteWriter w;
  w.u32(kMagic);
  w.u16(kVersion);
  w.u32(static_cast<uint32_t>(options_.rank));
  w.u32(static_cast<uint32_t>(options_.num_ranks));
  return w.take();
}

void NullTransport::connect(const std::vector<std::vector<uint8_t>>& addresses) {
  UCCL_EP_CHECK_VALUE(static_cast<int>(addresses.size()) == options_.num_ranks,
                      "null transport: connect() got ", addresses.size(), " addresses for ",
                      options_.num_ranks, " ranks");
  for (int r = 0; r < options_.num_ranks; ++r) {
    ByteReader in(addresses[r], str_cat("null address of rank ", r));
    in.header(kMagic, kVersion);
    const uint32_t rank = in.u32(), num_ranks = in.u32();
    in.finish();
    UCCL_EP_CHECK_VALUE(
        rank == static_cast<uint32_t>(r) && num_ranks == static_cast<uint32_t>(options_.num_ranks),
        in.what(), " says rank ", rank, " of ", num_ranks);
  }
  connected_ = true;
}

void NullTransport::check_post(int pipe, int peer) const {
  UCCL_EP_CHECK_VALUE(connected_, "null transport: rank ", options_.rank,
                      " posts before connect()");
  UCCL_EP_CHECK_VALUE(pipe >= 0 && pipe < options_.num_pipes, "null transport: pipe ", pipe,
                      " out of [0, ", options_.num_pipes, ")");
  UCCL_EP_CHECK_VALUE(peer >= 0 && peer < options_.num_ranks && peer != options_.rank,
                      "null transport: peer ", peer, " out of [0, ", options_.num_ranks,
                      ") or this rank (", options_.rank, ")");
}

PostStatus NullTransport::push(uint64_t id) {
  if (count_ == ring_.size()) return PostStatus::kRetry;
  uint64_t pos = head_ + count_;  // no modulo: a division would cost more than the rest
  if (pos >= ring_.size()) pos -= ring_.size();
  ring_[pos] = id;
  ++count_;
  return PostStatus::kPosted;
}

PostStatus NullTransport::post_write(int pipe, int peer, uint64_t, uint64_t, uint64_t bytes,
                                     const Signal* signal, uint64_t id) {
  check_post(pipe, peer);
  const PostStatus s = push(id);
  if (s == PostStatus::kPosted) {
    ++stats_.writes;
    stats_.bytes += bytes;
    stats_.signals += signal != nullptr ? 1 : 0;
  }
  return s;
}

PostStatus NullTransport::post_atomic_add(int pipe, int peer, uint32_t, int64_t, uint64_t id) {
  check_post(pipe, peer);
  const PostStatus s = push(id);
  if (s == PostStatus::kPosted) ++stats_.atomics;
  return s;
}

int NullTransport::poll(Completion* out, int max) {
  UCCL_EP_CHECK_VALUE(max >= 1, "null transport: poll(max=", max, ") needs max >= 1");
  int n = 0;
  while (n < max && count_ > 0) {
    Completion& c = out[n++];
    c.id = ring_[head_];
    c.ok = true;
    c.error.clear();
    if (++head_ == ring_.size()) head_ = 0;
    --count_;
  }
  return n;
}

}  // namespace null

std::unique_ptr<Transport> make_null_transport(const TransportOptions& options) {
  return std::make_unique<null::NullTransport>(options);
}

}  // namespace uccl::ep::transport
