// Bit-level I/O for the entropy coder's side info and raw streams
// (compress/entropy/entropy_coder.h): LSB-first bit fields in bytes. Not
// thread-safe; a writer or reader belongs to one call.
#ifndef KVDEPOT_COMPRESS_ENTROPY_INTERNAL_BIT_IO_H_
#define KVDEPOT_COMPRESS_ENTROPY_INTERNAL_BIT_IO_H_

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/types/span.h"

namespace kvd::compress::entropy_internal {

// Bits needed to write v: 0 for 0, else floor(log2(v)) + 1.
inline int BitWidth(uint32_t v) { return static_cast<int>(std::bit_width(v)); }

// LSB-first bit packing.
class BitWriter {
 public:
  void Put(uint64_t value, int bits) {  // REQUIRES: bits <= 32
    acc_ |= (value & ((uint64_t{1} << bits) - 1)) << fill_;
    for (fill_ += bits; fill_ >= 8; fill_ -= 8, acc_ >>= 8) {
      bytes_.push_back(static_cast<uint8_t>(acc_));
    }
  }
  void PutVar(uint32_t v) { Put(BitWidth(v), 6), Put(v, BitWidth(v)); }
  void PutRice(uint32_t v, int k) {  // v >> k ones, a zero, k low bits
    uint32_t q = v >> k;
    for (; q >= 32; q -= 32) Put(~0u, 32);
    Put((uint64_t{1} << q) - 1, static_cast<int>(q) + 1);
    Put(v, k);
  }
  void Align() { Put(0, (8 - fill_) % 8); }
  std::vector<uint8_t> Finish() && { return Align(), std::move(bytes_); }

 private:
  std::vector<uint8_t> bytes_;
  uint64_t acc_ = 0;
  int fill_ = 0;
};

static_assert(std::endian::native == std::endian::little);  // BitReader::Get

// Reads what BitWriter wrote. Reads past the end give zero bits and set
// overrun(). The bytes must outlive the reader.
class BitReader {
 public:
  explicit BitReader(absl::Span<const uint8_t> b) : b_(b) {}
  uint32_t Get(int bits) {  // REQUIRES: bits <= 32
    uint64_t v = 0;
    if (const uint64_t at = pos_ >> 3; at + 8 <= b_.size()) {
      std::memcpy(&v, b_.data() + at, 8);
    } else {
      for (uint64_t i = 0; i < 5 && at + i < b_.size(); ++i) {
        v |= uint64_t{b_[at + i]} << (8 * i);
      }
    }
    v >>= pos_ & 7;
    pos_ += bits;
    return static_cast<uint32_t>(v & ((uint64_t{1} << bits) - 1));
  }
  uint32_t GetVar() {
    const uint32_t w = Get(6);
    if (w > 32) pos_ = b_.size() * 8 + 1;  // overrun
    return Get(static_cast<int>(std::min(w, 32u)));
  }
  uint64_t pos() const { return pos_; }
  void Seek(uint64_t pos) { pos_ = pos; }
  bool overrun() const { return pos_ > b_.size() * 8; }

 private:
  absl::Span<const uint8_t> b_;
  uint64_t pos_ = 0;
};

}  // namespace kvd::compress::entropy_internal

#endif  // KVDEPOT_COMPRESS_ENTROPY_INTERNAL_BIT_IO_H_
