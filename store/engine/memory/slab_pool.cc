#include "store/engine/memory/slab_pool.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace kvd {

SlabPool::SlabPool(absl::string_view name,
                   std::unique_ptr<SlabAllocator> allocator)
    : name_(name), allocator_(std::move(allocator)) {}

absl::StatusOr<uint64_t> SlabPool::Allocate(uint64_t size) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<uint64_t> handle = allocator_->Allocate(size);
  if (!handle.ok()) return Annotate(handle.status(), name_);
  return handle;
}

void SlabPool::Free(uint64_t handle) {
  absl::MutexLock lock(&mu_);
  allocator_->Free(handle);
}

absl::Status SlabPool::CheckRange(uint64_t handle, uint64_t offset,
                                  uint64_t size) const {
  absl::MutexLock lock(&mu_);
  const uint64_t object = allocator_->RequestedSize(handle);
  if (offset > object || size > object - offset) {
    return absl::OutOfRangeError(absl::StrCat(
        name_, ": offset=", offset, " size=", size,
        " exceeds the allocation of ", object, " bytes at handle=", handle));
  }
  return absl::OkStatus();
}

TierUsage SlabPool::Usage() const {
  SlabAllocatorStats s = Stats();
  return TierUsage{.capacity_bytes = s.capacity_bytes,
                   .allocated_bytes = s.allocated_bytes,
                   .stored_bytes = s.requested_bytes,
                   .objects = s.allocations};
}

SlabAllocatorStats SlabPool::Stats() const {
  absl::MutexLock lock(&mu_);
  return allocator_->Stats();
}

}  // namespace kvd
