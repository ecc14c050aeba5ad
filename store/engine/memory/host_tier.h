// HostTier: the host DRAM tier, one pre-faulted anonymous mapping carved by a
// SlabAllocator (DESIGN.md §3.5).
//
// The pool is mapped once at Create and unmapped by the destructor. Huge pages
// are tried in order — MAP_HUGETLB (2 MiB, needs reserved hugetlbfs pages),
// then a 2 MiB-aligned normal mapping with madvise(MADV_HUGEPAGE)
// (transparent huge pages), then plain 4 KiB pages — and huge_pages_mode()
// reports which one the pool got. Every page is faulted in at Create so that
// puts never page-fault.
//
// Thread-safe: Allocate, Free and Usage take an internal mutex; Write and Read
// validate the range under the mutex and copy outside it, so copies into
// different allocations run in parallel. The caller must not Free a handle
// while a Write/Read/HostAddress use of it is in flight (the engine pins).
#ifndef KVDEPOT_STORE_ENGINE_MEMORY_HOST_TIER_H_
#define KVDEPOT_STORE_ENGINE_MEMORY_HOST_TIER_H_

#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "store/engine/memory/slab_allocator.h"
#include "store/engine/memory/slab_pool.h"
#include "store/engine/tier.h"

namespace kvd {

struct HostTierOptions {
  // Bytes of the pool, rounded up to whole 2 MiB pages. REQUIRES > 0.
  uint64_t capacity_bytes = 0;
  // Try MAP_HUGETLB, then transparent huge pages. false: plain pages only.
  bool huge_pages = true;
};

enum class HugePagesMode : uint8_t { kNone = 0, kThp = 1, kHugetlb = 2 };
std::string_view HugePagesModeName(
    HugePagesMode mode);  // "none" | "thp" | "hugetlb"

class HostTier final : public MemoryTier {
 public:
  // Maps and pre-faults the pool. kInvalidArgument for capacity_bytes 0;
  // kResourceExhausted when the memory cannot be mapped.
  static absl::StatusOr<std::unique_ptr<HostTier>> Create(
      const HostTierOptions& options);

  ~HostTier() override;
  HostTier(const HostTier&) = delete;
  HostTier& operator=(const HostTier&) = delete;

  TierKind kind() const override { return TierKind::kHost; }

  // Handles are byte offsets into the pool.
  absl::StatusOr<uint64_t> Allocate(uint64_t size) override;
  // Crashes on a handle that is not live (double free).
  void Free(uint64_t handle) override;

  // kOutOfRange (naming offset, size and the allocation size) when the range
  // does not lie inside the allocation. Crashes on a handle that is not live.
  absl::Status Write(uint64_t handle, uint64_t offset,
                     absl::Span<const uint8_t> src) override;
  absl::Status Read(uint64_t handle, uint64_t offset,
                    absl::Span<uint8_t> dst) override;

  // Never null: the pool is host memory. REQUIRES: `handle` is live.
  uint8_t* HostAddress(uint64_t handle) override { return base_ + handle; }

  TierUsage Usage() const override;
  SlabAllocatorStats AllocatorStats() const;

  // The whole pool, e.g. for registering it with a transport once.
  uint8_t* pool_base() const { return base_; }
  uint64_t pool_bytes() const { return mapped_bytes_; }

  HugePagesMode huge_pages_mode() const { return mode_; }
  std::string_view huge_pages_mode_name() const {
    return HugePagesModeName(mode_);
  }

 private:
  HostTier(uint8_t* base, uint64_t mapped_bytes, HugePagesMode mode,
           std::unique_ptr<SlabAllocator> allocator);

  uint8_t* const base_;
  const uint64_t mapped_bytes_;
  const HugePagesMode mode_;

  SlabPool pool_;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_ENGINE_MEMORY_HOST_TIER_H_
