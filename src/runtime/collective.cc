// Collective set-up steps: local work, then an all-gather of every rank's outcome.
#include "runtime/collective.h"

#include <exception>

#include "common/error.h"
#include "transport/wire.h"

namespace uccl::ep::runtime {
namespace {

constexpr uint32_t kMagic = 0x53544550;  // "PETS": a set-up step
constexpr uint16_t kVersion = 1;
constexpr size_t kMaxMessage = 1 << 16;
constexpr size_t kMaxPayload = 1 << 26;

Bytes encode(int rank, bool ok, const std::string& message, const Bytes& payload) {
  transport::ByteWriter w;
  w.u32(kMagic);
  w.u16(kVersion);
  w.u32(static_cast<uint32_t>(rank));
  w.u8(ok ? 1 : 0);
  w.str(message.substr(0, kMaxMessage));
  w.bytes(payload.data(), payload.size());
  return w.take();
}

}  // namespace

Bytes encode_step_failure(int rank, const std::string& message) {
  return encode(rank, false, message, {});
}

std::vector<Bytes> collective_step(const AllGather& all_gather, int rank, int num_ranks,
                                   const std::string& what, const std::function<Bytes()>& local) {
  Bytes payload;
  std::exception_ptr failure;
  std::string message;
  try {
    payload = local();
  } catch (const Error& e) {
    failure = std::current_exception();
    message = e.what();
  } catch (const std::exception& e) {
    failure = std::current_exception();
    message = e.what();
  }
  const std::vector<Bytes> gathered = all_gather(encode(rank, !failure, message, payload));
  UCCL_EP_CHECK_RUNTIME(static_cast<int>(gathered.size()) == num_ranks, what,
                        ": the all-gather returned ", gathered.size(), " messages for ", num_ranks,
                        " ranks");
  std::vector<Bytes> payloads(gathered.size());
  std::string others;
  for (int r = 0; r < num_ranks; ++r) {
    transport::ByteReader in(gathered[r], str_cat(what, ": the message of rank ", r));
    in.header(kMagic, kVersion);
    const uint32_t sender = in.u32();
    const bool ok = in.u8() != 0;
    const std::string text = in.str(kMaxMessage);
    payloads[r] = in.bytes(kMaxPayload);
    in.finish();
    UCCL_EP_CHECK_RUNTIME(sender == static_cast<uint32_t>(r), in.what(), " says it is rank ",
                          sender, " (every rank must pass its own rank, in the group's order)");
    if (!ok && r != rank) others += str_cat(others.empty() ? "" : "; ", "rank ", r, ": ", text);
  }
  if (failure) std::rethrow_exception(failure);
  UCCL_EP_CHECK_RUNTIME(others.empty(), what, " failed on other ranks: ", others);
  return payloads;
}

}  // namespace uccl::ep::runtime
