#include "store/engine/memory/slab_allocator.h"

#include <algorithm>
#include <bit>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/check.h"

namespace kvd {
namespace {

constexpr uint64_t kMinPageBytes = 64ull << 10;
constexpr uint64_t kMaxPageBytes = 256ull << 20;
constexpr uint64_t kQuantum = 64;        // smallest class and alignment
constexpr int kLinearClasses = 8;        // 64 .. 512 in steps of 64
constexpr int kFirstGeometricShift = 9;  // 512
constexpr int kClassesPerDoubling = 8;   // spacing 2^(k-3): <= 12.5%
constexpr uint32_t kMinSlotsPerSlab = 4;
// Slab sizes are chosen so the tail that no slot fits in wastes at most this
// fraction of the slab, when a size up to twice the minimum achieves it.
constexpr double kMaxSlabTailWaste = 1.0 / 64;
// Objects up to this many pages use size classes; larger ones take a page run.
constexpr uint64_t kMaxClassPages = 8;

int ClassIndexOf(uint64_t size) {
  if (size <= kQuantum * kLinearClasses) {
    return static_cast<int>((size + kQuantum - 1) / kQuantum) - 1;
  }
  // 2^k < size <= 2^(k+1)
  const int k = 63 - std::countl_zero(size - 1);
  const uint64_t step = uint64_t{1} << (k - 3);
  const uint64_t j = (size - (uint64_t{1} << k) + step - 1) / step;  // 1..8
  return kLinearClasses + (k - kFirstGeometricShift) * kClassesPerDoubling +
         static_cast<int>(j) - 1;
}

uint64_t ClassBytesOf(int index) {
  if (index < kLinearClasses) return kQuantum * (index + 1);
  const int g = (index - kLinearClasses) / kClassesPerDoubling;
  const uint64_t j = (index - kLinearClasses) % kClassesPerDoubling + 1;
  const int k = kFirstGeometricShift + g;
  return (uint64_t{1} << k) + j * (uint64_t{1} << (k - 3));
}

// Pages of one slab of `class_bytes` objects: at least kMinSlotsPerSlab slots
// and one page, then the smallest size up to twice that whose unusable tail
// is small.
uint32_t SlabPagesFor(uint64_t class_bytes, uint64_t page_bytes) {
  const uint64_t min_bytes =
      std::max(class_bytes * kMinSlotsPerSlab, page_bytes);
  const uint64_t min_pages = (min_bytes + page_bytes - 1) / page_bytes;
  uint64_t best = min_pages;
  double best_waste = 1.0;
  for (uint64_t n = min_pages; n <= 2 * min_pages; ++n) {
    const uint64_t bytes = n * page_bytes;
    const double waste = static_cast<double>(bytes % class_bytes) / bytes;
    if (waste <= kMaxSlabTailWaste) return static_cast<uint32_t>(n);
    if (waste < best_waste) {
      best_waste = waste;
      best = n;
    }
  }
  return static_cast<uint32_t>(best);
}

}  // namespace

struct SlabAllocator::Slab {
  uint64_t class_bytes = 0;
  int class_index = 0;
  uint32_t num_slots = 0;
  uint32_t used = 0;
  uint32_t next_fresh = 0;           // slots >= next_fresh never handed out
  std::vector<uint32_t> free_slots;  // freed slots below next_fresh
  std::unique_ptr<uint32_t[]> requested;  // per slot: requested size, 0 = free
};

struct SlabAllocator::Run {
  uint32_t pages = 0;
  uint64_t requested = 0;      // large runs only
  std::unique_ptr<Slab> slab;  // null for a large run
};

double SlabAllocatorStats::InternalFragmentation() const {
  if (allocated_bytes == 0) return 0.0;
  return 1.0 - static_cast<double>(requested_bytes) / allocated_bytes;
}

double SlabAllocatorStats::ExternalFragmentation() const {
  if (free_pages == 0) return 0.0;
  return 1.0 - static_cast<double>(largest_free_run_pages) / free_pages;
}

absl::StatusOr<std::unique_ptr<SlabAllocator>> SlabAllocator::Create(
    const SlabAllocatorOptions& options) {
  const uint64_t page = options.page_bytes;
  if (!std::has_single_bit(page) || page < kMinPageBytes ||
      page > kMaxPageBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_bytes=", page, " must be a power of two in [",
                     kMinPageBytes, ", ", kMaxPageBytes, "]"));
  }
  if (options.capacity_bytes < page) {
    return absl::InvalidArgumentError(
        absl::StrCat("capacity_bytes=", options.capacity_bytes,
                     " is below page_bytes=", page));
  }
  const uint64_t pages = options.capacity_bytes / page;
  if (pages >= kNoPage) {
    return absl::InvalidArgumentError(
        absl::StrCat("capacity_bytes=", options.capacity_bytes, " exceeds ",
                     uint64_t{kNoPage} - 1, " pages of page_bytes=", page));
  }
  return std::unique_ptr<SlabAllocator>(
      new SlabAllocator(page, static_cast<uint32_t>(pages)));
}

SlabAllocator::SlabAllocator(uint64_t page_bytes, uint32_t total_pages)
    : page_bytes_(page_bytes),
      page_shift_(std::countr_zero(page_bytes)),
      total_pages_(total_pages),
      page_head_(total_pages, kNoPage),
      runs_(total_pages) {
  max_class_bytes_ = kMaxClassPages * page_bytes_;
  num_classes_ = ClassIndexOf(max_class_bytes_) + 1;
  KVD_CHECK(ClassBytesOf(num_classes_ - 1) == max_class_bytes_, "class table");
  class_slab_pages_.resize(num_classes_);
  for (int c = 0; c < num_classes_; ++c) {
    class_slab_pages_[c] = SlabPagesFor(ClassBytesOf(c), page_bytes_);
  }
  partial_slabs_.resize(num_classes_);
  free_by_start_.emplace(0, total_pages_);
  free_by_size_.emplace(total_pages_, 0);
  free_pages_ = total_pages_;
}

SlabAllocator::~SlabAllocator() = default;

uint64_t SlabAllocator::ClassSizeFor(uint64_t size) const {
  if (size == 0 || size > max_class_bytes_) return 0;
  return ClassBytesOf(ClassIndexOf(size));
}

uint32_t SlabAllocator::TakePages(uint32_t pages) {
  auto it = free_by_size_.lower_bound({pages, 0});
  if (it == free_by_size_.end()) return kNoPage;
  const auto [len, first] = *it;
  free_by_size_.erase(it);
  free_by_start_.erase(first);
  if (len > pages) {
    free_by_start_.emplace(first + pages, len - pages);
    free_by_size_.emplace(len - pages, first + pages);
  }
  free_pages_ -= pages;
  return first;
}

void SlabAllocator::ReturnPages(uint32_t first, uint32_t pages) {
  uint32_t start = first;
  uint32_t len = pages;
  // btree erasure invalidates iterators: look each neighbour up afresh.
  auto next = free_by_start_.lower_bound(first);
  KVD_CHECK(next == free_by_start_.end() || next->first >= first + pages,
            "returned pages overlap a free run");
  if (next != free_by_start_.end() && next->first == first + pages) {
    len += next->second;
    free_by_size_.erase({next->second, next->first});
    free_by_start_.erase(next);
  }
  auto after = free_by_start_.lower_bound(first);
  if (after != free_by_start_.begin()) {
    auto prev = std::prev(after);
    KVD_CHECK(prev->first + prev->second <= first,
              "returned pages overlap a free run");
    if (prev->first + prev->second == first) {
      start = prev->first;
      len += prev->second;
      free_by_size_.erase({prev->second, prev->first});
      free_by_start_.erase(prev);
    }
  }
  free_by_start_.emplace(start, len);
  free_by_size_.emplace(len, start);
  free_pages_ += pages;
}

absl::Status SlabAllocator::NoRoom(uint64_t size, uint64_t pages_needed) const {
  const uint64_t largest =
      free_by_size_.empty() ? 0 : free_by_size_.rbegin()->first;
  return absl::ResourceExhaustedError(absl::StrCat(
      "no room for size=", size, ": needs a run of ", pages_needed,
      " pages of page_bytes=", page_bytes_, ", free_pages=", free_pages_,
      ", largest_free_run=", largest, " pages, capacity=", capacity_bytes()));
}

absl::StatusOr<uint64_t> SlabAllocator::Allocate(uint64_t size) {
  if (size == 0) {
    return absl::InvalidArgumentError(
        "size=0: allocations must be at least 1 byte");
  }
  if (size > capacity_bytes()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "size=", size, " exceeds the pool capacity=", capacity_bytes(),
        " bytes"));
  }
  if (size <= max_class_bytes_) return AllocateSmall(size, ClassIndexOf(size));
  return AllocateLarge(size);
}

absl::StatusOr<uint64_t> SlabAllocator::AllocateLarge(uint64_t size) {
  const uint64_t pages = (size + page_bytes_ - 1) >> page_shift_;
  const uint32_t first = TakePages(static_cast<uint32_t>(pages));
  if (first == kNoPage) return NoRoom(size, pages);
  auto run = std::make_unique<Run>();
  run->pages = static_cast<uint32_t>(pages);
  run->requested = size;
  std::fill_n(page_head_.begin() + first, pages, first);
  runs_[first] = std::move(run);
  ++allocations_;
  ++large_runs_;
  requested_bytes_ += size;
  allocated_bytes_ += pages * page_bytes_;
  return uint64_t{first} << page_shift_;
}

absl::StatusOr<uint64_t> SlabAllocator::AllocateSmall(uint64_t size,
                                                      int class_index) {
  auto& partial = partial_slabs_[class_index];
  if (partial.empty()) {
    const uint32_t pages = class_slab_pages_[class_index];
    const uint32_t first = TakePages(pages);
    if (first == kNoPage) {
      // No room for a whole slab: place the object in a run of its own when
      // that needs fewer pages.
      const uint64_t own_pages = (size + page_bytes_ - 1) >> page_shift_;
      if (own_pages < pages) return AllocateLarge(size);
      return NoRoom(size, pages);
    }
    auto slab = std::make_unique<Slab>();
    slab->class_index = class_index;
    slab->class_bytes = ClassBytesOf(class_index);
    slab->num_slots = static_cast<uint32_t>((uint64_t{pages} << page_shift_) /
                                            slab->class_bytes);
    slab->requested = std::make_unique<uint32_t[]>(slab->num_slots);
    slot_meta_bytes_ += sizeof(Slab) + slab->num_slots * sizeof(uint32_t);
    auto run = std::make_unique<Run>();
    run->pages = pages;
    run->slab = std::move(slab);
    std::fill_n(page_head_.begin() + first, pages, first);
    runs_[first] = std::move(run);
    partial.insert(first);
    ++slabs_;
    slab_pages_ += pages;
    slab_free_bytes_ +=
        runs_[first]->slab->num_slots * runs_[first]->slab->class_bytes;
  }
  const uint32_t first = *partial.begin();
  Slab& slab = *runs_[first]->slab;
  uint32_t slot;
  if (!slab.free_slots.empty()) {
    slot = slab.free_slots.back();
    slab.free_slots.pop_back();
  } else {
    KVD_CHECK(slab.next_fresh < slab.num_slots,
              "partial slab has no free slot");
    slot = slab.next_fresh++;
  }
  KVD_CHECK(slab.requested[slot] == 0, "free slot is marked live");
  slab.requested[slot] = static_cast<uint32_t>(size);
  if (++slab.used == slab.num_slots) partial.erase(partial.begin());
  ++allocations_;
  requested_bytes_ += size;
  allocated_bytes_ += slab.class_bytes;
  slab_free_bytes_ -= slab.class_bytes;
  return (uint64_t{first} << page_shift_) + uint64_t{slot} * slab.class_bytes;
}

SlabAllocator::Run& SlabAllocator::RunAt(uint64_t offset) const {
  KVD_CHECK(
      offset < capacity_bytes(),
      absl::StrCat("offset=", offset, " is beyond capacity=", capacity_bytes())
          .c_str());
  const uint32_t head = page_head_[offset >> page_shift_];
  KVD_CHECK(
      head != kNoPage,
      absl::StrCat("offset=", offset, " is not a live allocation (free page)")
          .c_str());
  return *runs_[head];
}

uint32_t SlabAllocator::LiveSlot(const Run& run, uint64_t offset) const {
  const Slab& slab = *run.slab;
  const uint64_t head = offset >> page_shift_;
  const uint64_t rel = offset - (uint64_t{page_head_[head]} << page_shift_);
  KVD_CHECK(
      rel % slab.class_bytes == 0,
      absl::StrCat("offset=", offset, " is not the start of a slot of class ",
                   slab.class_bytes)
          .c_str());
  const uint64_t slot = rel / slab.class_bytes;
  KVD_CHECK(slot < slab.next_fresh && slab.requested[slot] != 0,
            absl::StrCat("offset=", offset,
                         " is not a live allocation (double free?)")
                .c_str());
  return static_cast<uint32_t>(slot);
}

void SlabAllocator::Free(uint64_t offset) {
  Run& run = RunAt(offset);
  const uint32_t head = page_head_[offset >> page_shift_];
  if (run.slab == nullptr) {
    KVD_CHECK(
        (offset & (page_bytes_ - 1)) == 0 && head == (offset >> page_shift_),
        absl::StrCat("offset=", offset, " is inside a page run, not its start")
            .c_str());
    const uint32_t pages = run.pages;
    --allocations_;
    --large_runs_;
    requested_bytes_ -= run.requested;
    allocated_bytes_ -= uint64_t{pages} << page_shift_;
    std::fill_n(page_head_.begin() + head, pages, kNoPage);
    runs_[head].reset();
    ReturnPages(head, pages);
    return;
  }
  Slab& slab = *run.slab;
  const uint32_t slot = LiveSlot(run, offset);
  --allocations_;
  requested_bytes_ -= slab.requested[slot];
  allocated_bytes_ -= slab.class_bytes;
  slab_free_bytes_ += slab.class_bytes;
  slab.requested[slot] = 0;
  auto& partial = partial_slabs_[slab.class_index];
  if (slab.used == slab.num_slots) partial.insert(head);
  if (--slab.used > 0) {
    slab.free_slots.push_back(slot);
    return;
  }
  // The slab is empty: give its pages back.
  partial.erase(head);
  const uint32_t pages = run.pages;
  --slabs_;
  slab_pages_ -= pages;
  slab_free_bytes_ -= uint64_t{slab.num_slots} * slab.class_bytes;
  slot_meta_bytes_ -= sizeof(Slab) + slab.num_slots * sizeof(uint32_t);
  std::fill_n(page_head_.begin() + head, pages, kNoPage);
  runs_[head].reset();
  ReturnPages(head, pages);
}

void SlabAllocator::CheckRunStart(uint64_t offset) const {
  KVD_CHECK(
      offset == (uint64_t{page_head_[offset >> page_shift_]} << page_shift_),
      absl::StrCat("offset=", offset, " is inside a page run, not its start")
          .c_str());
}

uint64_t SlabAllocator::AllocationSize(uint64_t offset) const {
  const Run& run = RunAt(offset);
  if (run.slab == nullptr) {
    CheckRunStart(offset);
    return uint64_t{run.pages} << page_shift_;
  }
  LiveSlot(run, offset);
  return run.slab->class_bytes;
}

uint64_t SlabAllocator::RequestedSize(uint64_t offset) const {
  const Run& run = RunAt(offset);
  if (run.slab == nullptr) {
    CheckRunStart(offset);
    return run.requested;
  }
  return run.slab->requested[LiveSlot(run, offset)];
}

SlabAllocatorStats SlabAllocator::Stats() const {
  SlabAllocatorStats s;
  s.capacity_bytes = capacity_bytes();
  s.page_bytes = page_bytes_;
  s.total_pages = total_pages_;
  s.free_pages = free_pages_;
  s.largest_free_run_pages =
      free_by_size_.empty() ? 0 : free_by_size_.rbegin()->first;
  s.free_runs = free_by_start_.size();
  s.allocations = allocations_;
  s.requested_bytes = requested_bytes_;
  s.allocated_bytes = allocated_bytes_;
  s.slabs = slabs_;
  s.slab_pages = slab_pages_;
  s.slab_free_bytes = slab_free_bytes_;
  s.large_runs = large_runs_;
  // Page tables, run descriptors, slot arrays, and about two words per btree
  // entry (nodes are mostly full).
  s.metadata_bytes = sizeof(*this) +
                     total_pages_ * (sizeof(uint32_t) + sizeof(runs_[0])) +
                     (large_runs_ + slabs_) * sizeof(Run) + slot_meta_bytes_ +
                     free_by_start_.size() * 3 * sizeof(uint64_t) +
                     class_slab_pages_.size() * sizeof(uint32_t);
  return s;
}

}  // namespace kvd
