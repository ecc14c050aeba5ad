// SlabAllocator: hands out byte ranges of a fixed-size pool for KV chunk
// objects. It manages offsets only and never touches the pool's memory, so the
// host DRAM tier and the GPU tier share it.
//
// Layout:
//   pool  = page 0 | page 1 | ... | page P-1   (page_bytes each, 2 MiB default;
//                                              a tail shorter than a page is
//                                              not used)
//   - A page-run allocator hands out contiguous runs of pages: best fit over
//     the free runs (smallest run that fits, lowest address among equals),
//     splitting from the front and coalescing with both neighbours on free.
//   - Objects up to MaxSlabObjectBytes() (8 pages, 16 MiB by default) are
//     rounded up to a geometric size class and carved from a slab: a page run
//     that holds at least four objects of that class. A slab that becomes
//     empty goes back to the page-run allocator at once.
//   - Larger objects take a page run of their own.
//
// Size classes: 64, 128, ..., 512 bytes, then eight classes per doubling
// (2^k + j * 2^(k-3), j = 1..8). For any request of at least 512 bytes the
// class exceeds the request by less than 12.5% of the request; page runs
// exceed requests larger than MaxSlabObjectBytes() by less than one page,
// i.e. less than 12.5% as well. When no slab of the right class has room and
// no page run for a new slab is free, a small object falls back to a page run
// of its own (more rounding, but it is placed instead of being refused).
//
// Alignment: every offset is a multiple of 64 bytes; objects of 32 KiB and up
// are aligned to 4 KiB; page runs to page_bytes.
//
// Complexity: Allocate and Free are O(log n) in the number of free runs and
// slabs, plus O(pages of the run) when a run is taken or returned.
// Metadata: 4 bytes per slot of every live slab (the requested size), a few
// dozen bytes per slab or page run, and 8 bytes per page of the pool.
//
// Thread-compatible: const methods may run concurrently with each other; any
// call that mutates needs external synchronization (the tiers hold a mutex).
#ifndef KVDEPOT_STORE_ENGINE_MEMORY_SLAB_ALLOCATOR_H_
#define KVDEPOT_STORE_ENGINE_MEMORY_SLAB_ALLOCATOR_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvd {

struct SlabAllocatorOptions {
  // Bytes of the pool; only whole pages are used. REQUIRES >= page_bytes.
  uint64_t capacity_bytes = 0;
  // Page size: a power of two in [64 KiB, 256 MiB]. Tests use small pages to
  // exercise many pages in a small pool.
  uint64_t page_bytes = 2ull << 20;
};

// A snapshot of the pool's occupancy and fragmentation.
struct SlabAllocatorStats {
  uint64_t capacity_bytes = 0;  // whole pages only
  uint64_t page_bytes = 0;
  uint64_t total_pages = 0;
  uint64_t free_pages = 0;              // pages in free runs
  uint64_t largest_free_run_pages = 0;  // the largest object that fits now
  uint64_t free_runs = 0;
  uint64_t allocations = 0;      // live objects
  uint64_t requested_bytes = 0;  // sum of the sizes asked for
  uint64_t allocated_bytes = 0;  // sum of AllocationSize()
  uint64_t slabs = 0;
  uint64_t slab_pages = 0;       // pages held by slabs
  uint64_t slab_free_bytes = 0;  // free slots inside slabs
  uint64_t large_runs = 0;       // objects that own a page run
  uint64_t metadata_bytes = 0;   // DRAM held by the allocator (estimate)

  // Bytes lost to rounding up to a class or page: 1 - requested / allocated.
  double InternalFragmentation() const;
  // Free memory that the largest request cannot use:
  // 1 - largest_free_run_pages / free_pages (0 when nothing is free).
  double ExternalFragmentation() const;
};

class SlabAllocator {
 public:
  // kInvalidArgument (naming the field and bound) for a page size that is not
  // a power of two in range, or a capacity below one page or above 2^32 pages.
  static absl::StatusOr<std::unique_ptr<SlabAllocator>> Create(
      const SlabAllocatorOptions& options);

  SlabAllocator(const SlabAllocator&) = delete;
  SlabAllocator& operator=(const SlabAllocator&) = delete;
  ~SlabAllocator();

  // Reserves `size` bytes and returns their offset in [0, capacity).
  // kInvalidArgument for size 0; kResourceExhausted naming the size and the
  // capacity when size exceeds the capacity; kResourceExhausted naming the
  // free pages and the largest free run when there is no room now.
  absl::StatusOr<uint64_t> Allocate(uint64_t size);

  // Returns an allocation. Crashes (KVD_CHECK) on an offset that is not the
  // start of a live allocation: a double free or a stray offset is a broken
  // invariant of the caller.
  void Free(uint64_t offset);

  // Usable bytes at `offset` (>= the requested size, class or page rounded).
  // Crashes like Free on an offset that is not a live allocation.
  uint64_t AllocationSize(uint64_t offset) const;
  // The size passed to Allocate for the allocation at `offset`. Crashes like
  // Free on an offset that is not a live allocation.
  uint64_t RequestedSize(uint64_t offset) const;

  SlabAllocatorStats Stats() const;

  uint64_t capacity_bytes() const { return total_pages_ * page_bytes_; }
  uint64_t page_bytes() const { return page_bytes_; }
  // Largest object served from slabs; larger ones take a page run.
  uint64_t MaxSlabObjectBytes() const { return max_class_bytes_; }

  // The size class a request of `size` bytes is rounded to, or 0 when `size`
  // is 0 or above MaxSlabObjectBytes(). Exposed for tests and the benchmark.
  uint64_t ClassSizeFor(uint64_t size) const;

 private:
  struct Slab;
  struct Run;

  SlabAllocator(uint64_t page_bytes, uint32_t total_pages);

  // Page-run allocator over [0, total_pages_).
  // Best fit: returns the first page of a run of exactly `pages` pages, or
  // nullopt-like kNoPage when no free run is long enough.
  uint32_t TakePages(uint32_t pages);
  void ReturnPages(uint32_t first, uint32_t pages);

  absl::StatusOr<uint64_t> AllocateLarge(uint64_t size);
  absl::StatusOr<uint64_t> AllocateSmall(uint64_t size, int class_index);
  absl::Status NoRoom(uint64_t size, uint64_t pages_needed) const;

  // The run holding `offset`; crashes when it is free.
  Run& RunAt(uint64_t offset) const;
  // Crashes unless `offset` starts the page run (large allocation) it is in.
  void CheckRunStart(uint64_t offset) const;
  // Slot index of `offset` in `run`'s slab; crashes when not a live slot.
  uint32_t LiveSlot(const Run& run, uint64_t offset) const;

  static constexpr uint32_t kNoPage = UINT32_MAX;

  const uint64_t page_bytes_;
  const int page_shift_;
  const uint32_t total_pages_;
  uint64_t max_class_bytes_ = 0;
  int num_classes_ = 0;
  std::vector<uint32_t> class_slab_pages_;  // per class: pages of one slab

  // Free runs: by first page (for coalescing) and by (length, first page)
  // (for best fit).
  absl::btree_map<uint32_t, uint32_t> free_by_start_;
  absl::btree_set<std::pair<uint32_t, uint32_t>> free_by_size_;
  uint64_t free_pages_ = 0;

  // Per page: the first page of the allocated run that holds it, or kNoPage.
  std::vector<uint32_t> page_head_;
  // Per page: the run descriptor when the page is the head of a live run.
  std::vector<std::unique_ptr<Run>> runs_;
  // Per class: first pages of the slabs with at least one free slot. The
  // lowest address is used first so that slabs high in the pool drain.
  std::vector<absl::btree_set<uint32_t>> partial_slabs_;

  uint64_t allocations_ = 0;
  uint64_t requested_bytes_ = 0;
  uint64_t allocated_bytes_ = 0;
  uint64_t slabs_ = 0;
  uint64_t slab_pages_ = 0;
  uint64_t slab_free_bytes_ = 0;
  uint64_t large_runs_ = 0;
  uint64_t slot_meta_bytes_ = 0;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_ENGINE_MEMORY_SLAB_ALLOCATOR_H_
