// The memory tiers of a node: byte-addressable pools (GPU device memory, host
// DRAM) behind one interface. The SSD tier is key-addressed and has its own
// class (store/engine/ssd_tier.h).
#ifndef KVDEPOT_STORE_ENGINE_TIER_H_
#define KVDEPOT_STORE_ENGINE_TIER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace kvd {

// Hottest first; the order is the demotion order.
enum class TierKind : uint8_t { kGpu = 0, kHost = 1, kSsd = 2 };
inline constexpr int kNumTiers = 3;

inline absl::string_view TierName(TierKind kind) {
  switch (kind) {
    case TierKind::kGpu:
      return "gpu";
    case TierKind::kHost:
      return "host";
    case TierKind::kSsd:
      return "ssd";
  }
  return "invalid";
}

struct TierUsage {
  uint64_t capacity_bytes = 0;   // what the tier may hold
  uint64_t allocated_bytes = 0;  // taken from the pool, with allocator rounding
  uint64_t stored_bytes = 0;     // bytes of the objects themselves
  uint64_t objects = 0;
};

// A byte-addressable pool of fixed capacity. Handles are opaque 64-bit values
// returned by Allocate. Thread-safe.
class MemoryTier {
 public:
  virtual ~MemoryTier() = default;

  virtual TierKind kind() const = 0;

  // Reserves `size` bytes. kResourceExhausted when there is no room now (the
  // caller demotes and retries), or, with the sizes in the message, when
  // `size` exceeds the capacity; kInvalidArgument for size 0.
  virtual absl::StatusOr<uint64_t> Allocate(uint64_t size) = 0;

  // Returns an allocation to the pool. REQUIRES: `handle` came from Allocate
  // and was not freed.
  virtual void Free(uint64_t handle) = 0;

  // Copies host bytes into / out of [offset, offset + size) of an allocation.
  // REQUIRES: the range lies inside the allocation.
  virtual absl::Status Write(uint64_t handle, uint64_t offset,
                             absl::Span<const uint8_t> src) = 0;
  virtual absl::Status Read(uint64_t handle, uint64_t offset,
                            absl::Span<uint8_t> dst) = 0;

  // A host pointer to the allocation's first byte, or nullptr when the pool is
  // not host-addressable (GPU). Valid until Free(handle).
  virtual uint8_t* HostAddress(uint64_t handle) = 0;

  virtual TierUsage Usage() const = 0;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_ENGINE_TIER_H_
