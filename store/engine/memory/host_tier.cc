#include "store/engine/memory/host_tier.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/status.h"

#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace kvd {
namespace {

constexpr uint64_t kHugePageBytes = 2ull << 20;

struct Mapping {
  uint8_t* base = nullptr;
  uint64_t bytes = 0;
  HugePagesMode mode = HugePagesMode::kNone;
};

// True when the kernel would back MADV_HUGEPAGE regions with huge pages.
bool ThpAvailable() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  if (!f || !std::getline(f, line)) return false;
  return line.find("[always]") != std::string::npos ||
         line.find("[madvise]") != std::string::npos;
}

// Faults in every page of [base, base + bytes) for writing.
absl::Status Prefault(uint8_t* base, uint64_t bytes) {
  if (madvise(base, bytes, MADV_POPULATE_WRITE) == 0) return absl::OkStatus();
  if (errno != EINVAL) {  // EINVAL: kernel older than 5.14, touch instead
    return ErrnoToStatus(
        errno, absl::StrCat("madvise(MADV_POPULATE_WRITE, bytes=", bytes, ")"));
  }
  const long page = sysconf(_SC_PAGESIZE);
  for (uint64_t off = 0; off < bytes; off += page) {
    reinterpret_cast<volatile uint8_t*>(base)[off] = 0;
  }
  return absl::OkStatus();
}

absl::StatusOr<Mapping> MapPool(uint64_t bytes, bool huge_pages) {
  constexpr int kProt = PROT_READ | PROT_WRITE;
  constexpr int kFlags = MAP_PRIVATE | MAP_ANONYMOUS;
  if (huge_pages) {
    void* p = mmap(nullptr, bytes, kProt,
                   kFlags | MAP_HUGETLB | MAP_HUGE_2MB | MAP_POPULATE, -1, 0);
    if (p != MAP_FAILED) {
      return Mapping{static_cast<uint8_t*>(p), bytes, HugePagesMode::kHugetlb};
    }
    // No reserved hugetlbfs pages (the usual case): try THP on an aligned map.
    void* raw = mmap(nullptr, bytes + kHugePageBytes, kProt, kFlags, -1, 0);
    if (raw == MAP_FAILED) {
      return ErrnoToStatus(errno,
                           absl::StrCat("mmap(capacity_bytes=", bytes, ")"));
    }
    const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t aligned =
        (start + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
    if (aligned > start) munmap(raw, aligned - start);
    const uintptr_t tail = start + bytes + kHugePageBytes - (aligned + bytes);
    if (tail > 0) munmap(reinterpret_cast<void*>(aligned + bytes), tail);
    uint8_t* base = reinterpret_cast<uint8_t*>(aligned);
    HugePagesMode mode = HugePagesMode::kNone;
    if (ThpAvailable() && madvise(base, bytes, MADV_HUGEPAGE) == 0)
      mode = HugePagesMode::kThp;
    if (absl::Status s = Prefault(base, bytes); !s.ok()) {
      munmap(base, bytes);
      return s;
    }
    return Mapping{base, bytes, mode};
  }
  void* p = mmap(nullptr, bytes, kProt, kFlags, -1, 0);
  if (p == MAP_FAILED) {
    return ErrnoToStatus(errno,
                         absl::StrCat("mmap(capacity_bytes=", bytes, ")"));
  }
  uint8_t* base = static_cast<uint8_t*>(p);
  // Keep THP=always kernels from handing out huge pages: the mode says none.
  madvise(base, bytes, MADV_NOHUGEPAGE);
  if (absl::Status s = Prefault(base, bytes); !s.ok()) {
    munmap(base, bytes);
    return s;
  }
  return Mapping{base, bytes, HugePagesMode::kNone};
}

}  // namespace

std::string_view HugePagesModeName(HugePagesMode mode) {
  switch (mode) {
    case HugePagesMode::kNone:
      return "none";
    case HugePagesMode::kThp:
      return "thp";
    case HugePagesMode::kHugetlb:
      return "hugetlb";
  }
  return "invalid";
}

absl::StatusOr<std::unique_ptr<HostTier>> HostTier::Create(
    const HostTierOptions& options) {
  if (options.capacity_bytes == 0) {
    return absl::InvalidArgumentError(
        "capacity_bytes=0: the host tier needs at least 1 byte");
  }
  if (options.capacity_bytes > (uint64_t{1} << 50)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "capacity_bytes=", options.capacity_bytes, " exceeds 2^50"));
  }
  const uint64_t bytes = (options.capacity_bytes + kHugePageBytes - 1) /
                         kHugePageBytes * kHugePageBytes;
  KVD_ASSIGN_OR_RETURN(std::unique_ptr<SlabAllocator> allocator,
                       SlabAllocator::Create({.capacity_bytes = bytes,
                                              .page_bytes = kHugePageBytes}));
  KVD_ASSIGN_OR_RETURN(Mapping m, MapPool(bytes, options.huge_pages));
  return std::unique_ptr<HostTier>(
      new HostTier(m.base, m.bytes, m.mode, std::move(allocator)));
}

HostTier::HostTier(uint8_t* base, uint64_t mapped_bytes, HugePagesMode mode,
                   std::unique_ptr<SlabAllocator> allocator)
    : base_(base),
      mapped_bytes_(mapped_bytes),
      mode_(mode),
      pool_("host tier", std::move(allocator)) {}

HostTier::~HostTier() { munmap(base_, mapped_bytes_); }

absl::StatusOr<uint64_t> HostTier::Allocate(uint64_t size) {
  return pool_.Allocate(size);
}

void HostTier::Free(uint64_t handle) { pool_.Free(handle); }

absl::Status HostTier::Write(uint64_t handle, uint64_t offset,
                             absl::Span<const uint8_t> src) {
  KVD_RETURN_IF_ERROR(pool_.CheckRange(handle, offset, src.size()));
  if (!src.empty())
    std::memcpy(base_ + handle + offset, src.data(), src.size());
  return absl::OkStatus();
}

absl::Status HostTier::Read(uint64_t handle, uint64_t offset,
                            absl::Span<uint8_t> dst) {
  KVD_RETURN_IF_ERROR(pool_.CheckRange(handle, offset, dst.size()));
  if (!dst.empty())
    std::memcpy(dst.data(), base_ + handle + offset, dst.size());
  return absl::OkStatus();
}

TierUsage HostTier::Usage() const { return pool_.Usage(); }

SlabAllocatorStats HostTier::AllocatorStats() const { return pool_.Stats(); }

}  // namespace kvd
