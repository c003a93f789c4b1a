// Little-endian, bounds-checked encoding of the address blobs transports exchange through the
// bootstrap: explicit fields with a magic and a version, never raw struct copies.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace uccl::ep::transport {

/// Appends fixed-width little-endian fields and length-prefixed byte strings.
class ByteWriter {
 public:
  void u8(uint8_t v) { out_.push_back(v); }
  void u16(uint16_t v) { put(v, 2); }
  void u32(uint32_t v) { put(v, 4); }
  void u64(uint64_t v) { put(v, 8); }
  /// A u32 length followed by the bytes.
  void bytes(const void* data, size_t n) {
    u32(static_cast<uint32_t>(n));
    const auto* p = static_cast<const uint8_t*>(data);
    out_.insert(out_.end(), p, p + n);
  }
  void str(std::string_view s) { bytes(s.data(), s.size()); }
  std::vector<uint8_t> take() { return std::move(out_); }

 private:
  void put(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::vector<uint8_t> out_;
};

/// Reads what ByteWriter wrote; every read checks the remaining length and throws
/// Error(kValue) naming `what` (e.g. "libfabric address of rank 3") when the blob is short.
class ByteReader {
 public:
  ByteReader(const std::vector<uint8_t>& in, std::string what) : in_(in), what_(std::move(what)) {}
  uint8_t u8() { return static_cast<uint8_t>(get(1)); }
  uint16_t u16() { return static_cast<uint16_t>(get(2)); }
  uint32_t u32() { return static_cast<uint32_t>(get(4)); }
  uint64_t u64() { return get(8); }
  std::vector<uint8_t> bytes(size_t max_len) {
    const uint32_t n = u32();
    UCCL_EP_CHECK_VALUE(n <= max_len && n <= in_.size() - pos_, what_, ": field of ", n,
                        " bytes at offset ", pos_, " exceeds the blob (", in_.size(),
                        " bytes) or its limit of ", max_len);
    std::vector<uint8_t> v(in_.begin() + pos_, in_.begin() + pos_ + n);
    pos_ += n;
    return v;
  }
  std::string str(size_t max_len) {
    const std::vector<uint8_t> v = bytes(max_len);
    return std::string(v.begin(), v.end());
  }
  /// Checks the magic and version at the start of a blob.
  void header(uint32_t magic, uint16_t version) {
    const uint32_t m = u32();
    UCCL_EP_CHECK_VALUE(m == magic, what_, ": bad magic 0x", hex(m), " (expected 0x", hex(magic),
                        "): not an address of this transport");
    const uint16_t v = u16();
    UCCL_EP_CHECK_VALUE(v == version, what_, ": version ", v, ", this build speaks version ",
                        version, " (mixed uccl-ep builds?)");
  }
  /// Throws unless every byte was consumed.
  void finish() {
    UCCL_EP_CHECK_VALUE(pos_ == in_.size(), what_, ": ", in_.size() - pos_,
                        " unexpected trailing bytes");
  }
  const std::string& what() const { return what_; }

 private:
  uint64_t get(int n) {
    UCCL_EP_CHECK_VALUE(in_.size() - pos_ >= static_cast<size_t>(n), what_, ": truncated (",
                        in_.size(), " bytes, needed ", pos_ + n, ")");
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(in_[pos_ + i]) << (8 * i);
    pos_ += n;
    return v;
  }
  static std::string hex(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof(buf), "%llx", static_cast<unsigned long long>(v));
    return buf;
  }
  const std::vector<uint8_t>& in_;
  std::string what_;
  size_t pos_ = 0;
};

}  // namespace uccl::ep::transport
