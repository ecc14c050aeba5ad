// Little-endian append-only writer and bounds-checked reader for the
// sections codecs write into an encoded layer. Every read names its field,
// so a truncated or corrupt payload yields kDataLoss saying what was short.
#ifndef KVDEPOT_COMPRESS_BYTE_IO_H_
#define KVDEPOT_COMPRESS_BYTE_IO_H_

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace kvd::compress {

class ByteWriter {
 public:
  template <typename T>
  void Put(T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    PutBytes(&value, sizeof(T));
  }
  template <typename T>
  void PutArray(absl::Span<const T> values) {
    static_assert(std::is_trivially_copyable_v<T>);
    PutBytes(values.data(), values.size() * sizeof(T));
  }
  void PutBytes(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    bytes_.insert(bytes_.end(), b, b + n);
  }
  // Appends n bytes and returns where they start, for the caller to fill.
  uint8_t* Extend(size_t n) {
    bytes_.resize(bytes_.size() + n);
    return bytes_.data() + bytes_.size() - n;
  }

  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

class ByteReader {
 public:
  explicit ByteReader(absl::Span<const uint8_t> bytes) : bytes_(bytes) {}

  template <typename T>
  absl::Status Get(absl::string_view field, T* value) {
    static_assert(std::is_trivially_copyable_v<T>);
    const uint8_t* p;
    if (absl::Status s = Take(field, sizeof(T), &p); !s.ok()) return s;
    std::memcpy(value, p, sizeof(T));
    return absl::OkStatus();
  }
  template <typename T>
  absl::Status GetArray(absl::string_view field, size_t count,
                        std::vector<T>* values) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (count > remaining() / sizeof(T)) return Short(field, count * sizeof(T));
    values->resize(count);
    const uint8_t* p;
    if (absl::Status s = Take(field, count * sizeof(T), &p); !s.ok()) return s;
    if (count > 0) std::memcpy(values->data(), p, count * sizeof(T));
    return absl::OkStatus();
  }
  // Points `*p` at the next n bytes and skips them.
  absl::Status Take(absl::string_view field, size_t n, const uint8_t** p) {
    if (n > remaining()) return Short(field, n);
    *p = bytes_.data() + pos_;
    pos_ += n;
    return absl::OkStatus();
  }
  // kDataLoss unless every byte was read.
  absl::Status ExpectEnd(absl::string_view what) const {
    if (remaining() == 0) return absl::OkStatus();
    return absl::DataLossError(
        absl::StrCat(what, ": ", remaining(), " trailing bytes"));
  }

  size_t remaining() const { return bytes_.size() - pos_; }

 private:
  absl::Status Short(absl::string_view field, size_t n) const {
    return absl::DataLossError(
        absl::StrCat(field, ": needs ", n, " bytes, ", remaining(), " left"));
  }

  absl::Span<const uint8_t> bytes_;
  size_t pos_ = 0;
};

}  // namespace kvd::compress

#endif  // KVDEPOT_COMPRESS_BYTE_IO_H_
