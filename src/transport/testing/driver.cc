// Test and benchmark support: a Transport driver with deadlines, and byte patterns.
#include "transport/testing/driver.h"

#include <atomic>
#include <chrono>

#include "common/error.h"

namespace uccl::ep::transport::testing {
namespace {

double now_secs() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Operation ids carry the peer in the low 16 bits so completions can be counted per peer.
constexpr int kPeerBits = 16;

}  // namespace

Driver::Driver(Transport& transport, int rank, int num_ranks, double timeout_secs)
    : t_(transport),
      rank_(rank),
      num_ranks_(num_ranks),
      timeout_secs_(timeout_secs),
      posted_to_(num_ranks, 0),
      completed_to_(num_ranks, 0),
      buf_(64) {}

void Driver::check_deadline(const std::function<std::string()>& describe) const {
  if (now_secs() < deadline_) return;
  throw Error(ErrorKind::kTimeout,
              str_cat("rank ", rank_, " timed out after ", timeout_secs_, " s ", describe(),
                      " (posted ", posted_, ", completed ", completed_, outstanding(), ")"));
}

std::string Driver::outstanding() const {
  std::string out;
  for (int p = 0; p < num_ranks_; ++p) {
    if (posted_to_[p] != completed_to_[p])
      out += str_cat("; peer ", p, ": ", posted_to_[p] - completed_to_[p], " of ", posted_to_[p],
                     " outstanding");
  }
  return out;
}

int Driver::progress() {
  const int n = t_.poll(buf_.data(), static_cast<int>(buf_.size()));
  for (int i = 0; i < n; ++i) {
    const Completion& c = buf_[i];
    if (!c.ok) throw Error(ErrorKind::kRuntime, str_cat("rank ", rank_, ": ", c.error));
    ++completed_;
    ++completed_to_[c.id & ((1u << kPeerBits) - 1)];
  }
  return n;
}

void Driver::post(int peer, const std::function<PostStatus(uint64_t id)>& post_once) {
  const uint64_t id = (next_seq_++ << kPeerBits) | static_cast<uint64_t>(peer);
  deadline_ = now_secs() + timeout_secs_;
  while (post_once(id) == PostStatus::kRetry) {
    progress();
    check_deadline([&] { return str_cat("posting to peer ", peer, " (kRetry throughout)"); });
  }
  ++posted_;
  ++posted_to_[peer];
}

void Driver::write(int pipe, int peer, uint64_t local_offset, uint64_t remote_offset,
                   uint64_t bytes, const Signal* signal) {
  post(peer, [&](uint64_t id) {
    return t_.post_write(pipe, peer, local_offset, remote_offset, bytes, signal, id);
  });
}

void Driver::atomic_add(int pipe, int peer, uint32_t slot, int64_t value) {
  post(peer, [&](uint64_t id) { return t_.post_atomic_add(pipe, peer, slot, value, id); });
}

void Driver::wait_until(const std::function<bool()>& done,
                        const std::function<std::string()>& describe) {
  deadline_ = now_secs() + timeout_secs_;
  for (;;) {
    progress();
    if (done()) return;
    check_deadline(describe);
  }
}

void Driver::wait_all(const std::string& what) {
  wait_until([&] { return completed_ == posted_; },
             [&] { return str_cat("waiting for every operation to complete (", what, ")"); });
}

void Driver::handshake(uint32_t slot, const int64_t* signals) {
  wait_all("handshake fence");
  ++round_;
  for (int p = 0; p < num_ranks_; ++p)
    if (p != rank_) atomic_add(0, p, slot, 1);
  const int64_t expected = round_ * (num_ranks_ - 1);
  wait_until([&] { return completed_ == posted_ && load_signal(signals, slot) >= expected; },
             [&] {
               return str_cat("in handshake round ", round_, ": slot ", slot, " holds ",
                              load_signal(signals, slot), ", expected ", expected);
             });
}

int64_t load_signal(const int64_t* signals, uint32_t slot) {
  return std::atomic_ref<int64_t>(const_cast<int64_t*>(signals)[slot])
      .load(std::memory_order_acquire);
}

void fill_pattern(uint8_t* dst, uint64_t bytes, uint64_t seed, uint64_t first_offset) {
  for (uint64_t i = 0; i < bytes; ++i) dst[i] = pattern_byte(seed, first_offset + i);
}

int64_t first_mismatch(const uint8_t* data, uint64_t bytes, uint64_t seed, uint64_t first_offset) {
  for (uint64_t i = 0; i < bytes; ++i)
    if (data[i] != pattern_byte(seed, first_offset + i)) return static_cast<int64_t>(i);
  return -1;
}

}  // namespace uccl::ep::transport::testing
