// AlignedBuffer: an owned, zero-initialised heap buffer whose address is a
// multiple of kIoAlignment, as O_DIRECT requires of user buffers.
#ifndef KVDEPOT_STORE_ENGINE_SSD_ALIGNED_BUFFER_H_
#define KVDEPOT_STORE_ENGINE_SSD_ALIGNED_BUFFER_H_

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/types/span.h"
#include "core/check.h"

namespace kvd {

// O_DIRECT alignment of buffers, file offsets and lengths.
inline constexpr uint64_t kIoAlignment = 4096;

inline constexpr uint64_t AlignUp(uint64_t n, uint64_t a = kIoAlignment) {
  return (n + a - 1) / a * a;
}
inline constexpr bool IsAligned(uint64_t n, uint64_t a = kIoAlignment) {
  return n % a == 0;
}

// Move-only. Not thread-safe. The capacity is rounded up to kIoAlignment.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  // Allocates `size` bytes (rounded up to kIoAlignment), zero-filled. Aborts
  // when the allocation fails (out of memory is not a recoverable state).
  explicit AlignedBuffer(uint64_t size) { Reset(size); }
  ~AlignedBuffer() { std::free(data_); }
  AlignedBuffer(AlignedBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        capacity_(std::exchange(o.capacity_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
      std::free(data_);
      data_ = std::exchange(o.data_, nullptr);
      capacity_ = std::exchange(o.capacity_, 0);
    }
    return *this;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  // Makes room for at least `size` bytes; keeps the allocation when it is
  // already big enough (contents are then unspecified), else reallocates.
  void Reserve(uint64_t size) {
    if (size > capacity_) Reset(size);
  }

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  uint64_t capacity() const { return capacity_; }
  absl::Span<uint8_t> span(uint64_t n) {
    KVD_CHECK(n <= capacity_, "AlignedBuffer span past capacity");
    return absl::Span<uint8_t>(data_, n);
  }

 private:
  void Reset(uint64_t size) {
    std::free(data_);
    capacity_ = AlignUp(size == 0 ? 1 : size);
    data_ = static_cast<uint8_t*>(std::aligned_alloc(kIoAlignment, capacity_));
    KVD_CHECK(data_ != nullptr, "aligned_alloc failed");
    std::memset(data_, 0, capacity_);
  }

  uint8_t* data_ = nullptr;
  uint64_t capacity_ = 0;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_ENGINE_SSD_ALIGNED_BUFFER_H_
