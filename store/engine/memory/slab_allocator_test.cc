#include "store/engine/memory/slab_allocator.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvd {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr uint64_t kKiB = 1ull << 10;
constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;

std::unique_ptr<SlabAllocator> MakeAllocator(uint64_t capacity,
                                             uint64_t page = 2 * kMiB) {
  auto a =
      SlabAllocator::Create({.capacity_bytes = capacity, .page_bytes = page});
  EXPECT_TRUE(a.ok()) << a.status();
  return std::move(a).value();
}

// Live allocations keyed by offset; checks that none overlap and all lie in
// the pool.
class Shadow {
 public:
  explicit Shadow(const SlabAllocator& a) : a_(a) {}

  void Add(uint64_t offset, uint64_t size) {
    const uint64_t usable = a_.AllocationSize(offset);
    ASSERT_GE(usable, size);
    ASSERT_EQ(a_.RequestedSize(offset), size);
    ASSERT_EQ(offset % 64, 0u) << "offset=" << offset;
    ASSERT_LE(offset + usable, a_.capacity_bytes());
    auto next = live_.lower_bound(offset);
    if (next != live_.end()) {
      ASSERT_LE(offset + usable, next->first) << "overlap after";
    }
    if (next != live_.begin()) {
      auto prev = std::prev(next);
      ASSERT_LE(prev->first + prev->second.usable, offset) << "overlap before";
    }
    live_[offset] = {size, usable};
  }

  struct Entry {
    uint64_t size, usable;
  };
  absl::btree_map<uint64_t, Entry>& live() { return live_; }

 private:
  const SlabAllocator& a_;
  absl::btree_map<uint64_t, Entry> live_;
};

TEST(SlabAllocatorTest, CreateRejectsBadOptions) {
  auto bad_page =
      SlabAllocator::Create({.capacity_bytes = kGiB, .page_bytes = 3 * kMiB});
  EXPECT_EQ(bad_page.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_page.status().message(), HasSubstr("page_bytes=3145728"));
  auto tiny_page =
      SlabAllocator::Create({.capacity_bytes = kGiB, .page_bytes = 4 * kKiB});
  EXPECT_EQ(tiny_page.status().code(), absl::StatusCode::kInvalidArgument);
  auto small =
      SlabAllocator::Create({.capacity_bytes = kMiB, .page_bytes = 2 * kMiB});
  EXPECT_EQ(small.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(small.status().message(), HasSubstr("capacity_bytes=1048576"));
}

TEST(SlabAllocatorTest, SizeClassesAreTightAndAligned) {
  auto a = MakeAllocator(kGiB);
  EXPECT_EQ(a->MaxSlabObjectBytes(), 16 * kMiB);
  EXPECT_EQ(a->ClassSizeFor(0), 0u);
  EXPECT_EQ(a->ClassSizeFor(16 * kMiB + 1), 0u);
  EXPECT_EQ(a->ClassSizeFor(1), 64u);
  EXPECT_EQ(a->ClassSizeFor(513), 576u);
  uint64_t prev_class = 0;
  for (uint64_t s = 1; s <= 16 * kMiB; s = s < 4096 ? s + 1 : s + s / 97 + 1) {
    const uint64_t c = a->ClassSizeFor(s);
    ASSERT_GE(c, s);
    ASSERT_GE(c, prev_class);
    ASSERT_EQ(c % 64, 0u) << s;
    if (s >= 512) {
      ASSERT_LT(c - s, s / 8 + 1) << "size=" << s << " class=" << c;
    }
    if (c >= 32 * kKiB) {
      ASSERT_EQ(c % (4 * kKiB), 0u) << c;
    }
    prev_class = c;
  }
}

TEST(SlabAllocatorTest, RejectsZeroAndOversizedRequests) {
  auto a = MakeAllocator(64 * kMiB);
  auto zero = a->Allocate(0);
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(zero.status().message(), HasSubstr("size=0"));
  auto huge = a->Allocate(64 * kMiB + 1);
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(huge.status().message(), AllOf(HasSubstr("size=67108865"),
                                             HasSubstr("capacity=67108864")));
  EXPECT_TRUE(a->Allocate(64 * kMiB).ok());  // exactly the capacity fits
}

TEST(SlabAllocatorTest, ExhaustionNamesFreeSpace) {
  auto a = MakeAllocator(128 * kMiB);
  std::vector<uint64_t> offsets;
  for (int i = 0; i < 4; ++i) offsets.push_back(a->Allocate(32 * kMiB).value());
  auto full = a->Allocate(20 * kMiB);
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(
      full.status().message(),
      AllOf(HasSubstr("size=20971520"), HasSubstr("free_pages=0"),
            HasSubstr("largest_free_run=0"), HasSubstr("capacity=134217728")));
  a->Free(offsets[1]);
  EXPECT_TRUE(a->Allocate(20 * kMiB).ok());
}

TEST(SlabAllocatorTest, PageRunsCoalesceOnFree) {
  auto a = MakeAllocator(256 * kMiB);
  const uint64_t x = a->Allocate(40 * kMiB).value();
  const uint64_t y = a->Allocate(40 * kMiB).value();
  const uint64_t z = a->Allocate(40 * kMiB).value();
  EXPECT_EQ(a->AllocationSize(x), 40 * kMiB);
  EXPECT_EQ(a->Stats().free_runs, 1u);
  a->Free(x);
  a->Free(z);
  EXPECT_EQ(a->Stats().free_runs, 2u);  // [x] and [z .. end) merged
  // Best fit: a 40 MiB request takes x's exact hole, not the big tail run.
  EXPECT_EQ(a->Allocate(40 * kMiB).value(), x);
  a->Free(x);
  a->Free(y);
  const SlabAllocatorStats s = a->Stats();
  EXPECT_EQ(s.free_runs, 1u);
  EXPECT_EQ(s.free_pages, s.total_pages);
  EXPECT_EQ(s.largest_free_run_pages, s.total_pages);
}

TEST(SlabAllocatorTest, EmptySlabsReturnTheirPages) {
  auto a = MakeAllocator(64 * kMiB);
  std::vector<uint64_t> offsets;
  for (int i = 0; i < 10000; ++i) offsets.push_back(a->Allocate(3000).value());
  SlabAllocatorStats s = a->Stats();
  EXPECT_EQ(s.allocations, 10000u);
  EXPECT_EQ(s.requested_bytes, 10000u * 3000);
  EXPECT_EQ(s.allocated_bytes, 10000u * a->ClassSizeFor(3000));
  EXPECT_GT(s.slabs, 1u);
  EXPECT_LT(s.metadata_bytes / s.allocations, 64u);
  for (uint64_t off : offsets) a->Free(off);
  s = a->Stats();
  EXPECT_EQ(s.slabs, 0u);
  EXPECT_EQ(s.allocations, 0u);
  EXPECT_EQ(s.requested_bytes, 0u);
  EXPECT_EQ(s.allocated_bytes, 0u);
  EXPECT_EQ(s.slab_free_bytes, 0u);
  EXPECT_EQ(s.free_pages, s.total_pages);
  EXPECT_EQ(s.free_runs, 1u);
}

TEST(SlabAllocatorTest, SmallObjectFallsBackToOwnRunWhenNoSlabFits) {
  // 4 pages of 64 KiB; a slab of the 112 KiB class needs 7 pages.
  auto a = MakeAllocator(256 * kKiB, 64 * kKiB);
  auto off = a->Allocate(100 * kKiB);
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_EQ(a->AllocationSize(*off), 128 * kKiB);
  EXPECT_EQ(a->Stats().large_runs, 1u);
  a->Free(*off);
  EXPECT_EQ(a->Stats().free_pages, 4u);
}

// Randomized alloc/free against a shadow map: no overlaps, everything inside
// the pool, and a fully free pool coalesced into one run at the end.
TEST(SlabAllocatorTest, RandomizedAllocFreeKeepsInvariants) {
  auto a = MakeAllocator(64 * kMiB, 64 * kKiB);
  Shadow shadow(*a);
  absl::BitGen gen;
  uint64_t requested = 0;
  for (int step = 0; step < 60000; ++step) {
    const bool alloc = shadow.live().empty() || absl::Bernoulli(gen, 0.55);
    if (alloc) {
      // Log-uniform sizes from 1 byte to 4 MiB.
      const double lg = absl::Uniform(gen, 0.0, 22.0);
      const uint64_t size =
          std::max<uint64_t>(1, static_cast<uint64_t>(std::exp2(lg)));
      auto off = a->Allocate(size);
      if (!off.ok()) {
        ASSERT_EQ(off.status().code(), absl::StatusCode::kResourceExhausted)
            << off.status();
        // Make room: free a random tenth of what is live.
        std::vector<uint64_t> victims;
        for (auto& [o, e] : shadow.live()) {
          if (absl::Bernoulli(gen, 0.1)) victims.push_back(o);
        }
        for (uint64_t o : victims) {
          requested -= shadow.live()[o].size;
          a->Free(o);
          shadow.live().erase(o);
        }
        continue;
      }
      ASSERT_NO_FATAL_FAILURE(shadow.Add(*off, size));
      requested += size;
    } else {
      auto it = shadow.live().begin();
      std::advance(it, absl::Uniform<size_t>(
                           gen, 0, std::min<size_t>(shadow.live().size(), 64)));
      requested -= it->second.size;
      a->Free(it->first);
      shadow.live().erase(it);
    }
    if (step % 1000 == 0) {
      const SlabAllocatorStats s = a->Stats();
      ASSERT_EQ(s.allocations, shadow.live().size());
      ASSERT_EQ(s.requested_bytes, requested);
      ASSERT_LE(s.allocated_bytes + s.free_pages * s.page_bytes,
                s.capacity_bytes);
    }
  }
  for (auto& [o, e] : shadow.live()) a->Free(o);
  const SlabAllocatorStats s = a->Stats();
  EXPECT_EQ(s.allocations, 0u);
  EXPECT_EQ(s.free_pages, s.total_pages);
  EXPECT_EQ(s.free_runs, 1u);
  EXPECT_EQ(s.largest_free_run_pages, s.total_pages);
  EXPECT_EQ(s.slabs, 0u);
}

// Realistic chunk objects (256 tokens, bf16 unless noted, plus a 1-4 KiB
// header): Llama-3-8B raw and int4, SmolLM2-135M raw, int4 and low-rank, and
// heavily compressed few-KiB objects.
uint64_t RealisticChunkSize(absl::BitGen& gen) {
  const uint64_t header = absl::Uniform<uint64_t>(gen, 1 * kKiB, 4 * kKiB);
  switch (absl::Uniform(gen, 0, 8)) {
    case 0:
      return 32 * kMiB + header;  // Llama-3-8B, bf16
    case 1:
      return 8 * kMiB + 8 * kMiB / 16 +
             header;  // Llama-3-8B, int4 g=32 + scales
    case 2:
    case 3:
      return 5760 * kKiB + header;  // SmolLM2-135M, bf16 (5.625 MiB)
    case 4:
      return 1440 * kKiB + 90 * kKiB + header;  // SmolLM2-135M, int4
    case 5:
      return absl::Uniform<uint64_t>(gen, 200 * kKiB,
                                     2 * kMiB);  // low-rank / merged
    case 6:
      return absl::Uniform<uint64_t>(gen, 2 * kMiB,
                                     40 * kMiB);  // anything in between
    default:
      return absl::Uniform<uint64_t>(gen, 4 * kKiB,
                                     64 * kKiB);  // heavily compressed
  }
}

TEST(SlabAllocatorTest, FragmentationBoundedUnderRealisticChunkMix) {
  // Offsets only: a 64 GiB pool costs nothing but its page tables.
  auto a = MakeAllocator(64 * kGiB);
  Shadow shadow(*a);
  absl::BitGen gen;
  auto fill = [&]() -> uint64_t {
    uint64_t failures = 0;
    while (failures < 8) {
      const uint64_t size = RealisticChunkSize(gen);
      auto off = a->Allocate(size);
      if (!off.ok()) {
        EXPECT_EQ(off.status().code(), absl::StatusCode::kResourceExhausted);
        ++failures;
        continue;
      }
      shadow.Add(*off, size);
      EXPECT_LT(a->Stats().InternalFragmentation(), 0.125);
    }
    return a->Stats().requested_bytes;
  };
  const uint64_t first_fill = fill();
  SlabAllocatorStats s = a->Stats();
  EXPECT_GT(static_cast<double>(first_fill) / s.capacity_bytes, 0.85)
      << "requested=" << first_fill << " slab_free=" << s.slab_free_bytes;
  // Churn: repeatedly drop a random half and refill.
  for (int round = 0; round < 5; ++round) {
    std::vector<uint64_t> victims;
    for (auto& [o, e] : shadow.live()) {
      if (absl::Bernoulli(gen, 0.5)) victims.push_back(o);
    }
    for (uint64_t o : victims) {
      a->Free(o);
      shadow.live().erase(o);
    }
    const uint64_t refill = fill();
    s = a->Stats();
    EXPECT_LT(s.InternalFragmentation(), 0.125);
    EXPECT_GT(static_cast<double>(refill) / s.capacity_bytes, 0.75)
        << "round " << round << " slab_free=" << s.slab_free_bytes
        << " free_pages=" << s.free_pages
        << " largest=" << s.largest_free_run_pages;
    EXPECT_LT(s.metadata_bytes / s.allocations, 256u);
    std::printf(
        "round %d: objects=%lu utilization=%.3f internal=%.4f external=%.3f "
        "slab_free=%.3f meta/object=%lu B\n",
        round, s.allocations, static_cast<double>(refill) / s.capacity_bytes,
        s.InternalFragmentation(), s.ExternalFragmentation(),
        static_cast<double>(s.slab_free_bytes) / s.capacity_bytes,
        s.metadata_bytes / s.allocations);
  }
}

using SlabAllocatorDeathTest = ::testing::Test;

TEST(SlabAllocatorDeathTest, DoubleFreeCrashes) {
  auto a = MakeAllocator(64 * kMiB);
  const uint64_t small = a->Allocate(1000).value();
  const uint64_t other = a->Allocate(1000).value();  // keeps the slab alive
  a->Free(small);
  EXPECT_DEATH(a->Free(small), "not a live allocation");
  const uint64_t large = a->Allocate(20 * kMiB).value();
  a->Free(large);
  EXPECT_DEATH(a->Free(large), "not a live allocation");
  (void)other;
}

TEST(SlabAllocatorDeathTest, StrayOffsetCrashes) {
  auto a = MakeAllocator(64 * kMiB);
  const uint64_t small = a->Allocate(1000).value();
  EXPECT_DEATH(a->Free(small + 64), "not the start of a slot");
  const uint64_t large = a->Allocate(20 * kMiB).value();
  EXPECT_DEATH(a->Free(large + 2 * kMiB), "not its start");
  EXPECT_DEATH(a->Free(64 * kMiB), "beyond capacity");
  EXPECT_DEATH(a->AllocationSize(60 * kMiB), "free page");
}

}  // namespace
}  // namespace kvd
