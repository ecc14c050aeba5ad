// SlabPool: a SlabAllocator behind a mutex, with the range checks and usage
// figures every pool-backed MemoryTier (host DRAM, GPU) needs. It manages
// offsets only; the tier owns the memory they index.
//
// Thread-safe.
#ifndef KVDEPOT_STORE_ENGINE_MEMORY_SLAB_POOL_H_
#define KVDEPOT_STORE_ENGINE_MEMORY_SLAB_POOL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "store/engine/memory/slab_allocator.h"
#include "store/engine/tier.h"

namespace kvd {

class SlabPool {
 public:
  // `name` prefixes error messages ("host tier: ...").
  SlabPool(absl::string_view name, std::unique_ptr<SlabAllocator> allocator);

  // As SlabAllocator::Allocate, messages prefixed with the pool name.
  absl::StatusOr<uint64_t> Allocate(uint64_t size);
  // Crashes on a handle that is not live (double free).
  void Free(uint64_t handle);

  // kOutOfRange (naming offset, size and the allocation size) when
  // [offset, offset + size) does not lie inside the allocation `handle`.
  // Crashes on a handle that is not live.
  absl::Status CheckRange(uint64_t handle, uint64_t offset,
                          uint64_t size) const;

  TierUsage Usage() const;
  SlabAllocatorStats Stats() const;

 private:
  const std::string name_;
  mutable absl::Mutex mu_;
  std::unique_ptr<SlabAllocator> allocator_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_ENGINE_MEMORY_SLAB_POOL_H_
