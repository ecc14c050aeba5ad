#include "store/engine/memory/host_tier.h"

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/random/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvd {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;

constexpr uint64_t kMiB = 1ull << 20;

std::vector<uint8_t> Pattern(uint64_t size, uint8_t seed) {
  std::vector<uint8_t> v(size);
  for (uint64_t i = 0; i < size; ++i)
    v[i] = static_cast<uint8_t>(seed + i * 31 + (i >> 11));
  return v;
}

TEST(HostTierTest, RejectsZeroCapacity) {
  auto t = HostTier::Create({.capacity_bytes = 0});
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr("capacity_bytes=0"));
}

TEST(HostTierTest, RoundTripWithHugePages) {
  auto t = HostTier::Create({.capacity_bytes = 64 * kMiB, .huge_pages = true});
  ASSERT_TRUE(t.ok()) << t.status();
  HostTier& tier = **t;
  EXPECT_THAT(tier.huge_pages_mode_name(), AnyOf("hugetlb", "thp", "none"));
  EXPECT_EQ(tier.kind(), TierKind::kHost);
  EXPECT_EQ(tier.pool_bytes(), 64 * kMiB);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(tier.pool_base()) % (2 * kMiB), 0u);

  const std::vector<uint8_t> small = Pattern(5000, 7);
  const std::vector<uint8_t> big = Pattern(20 * kMiB + 123, 9);
  const uint64_t hs = tier.Allocate(small.size()).value();
  const uint64_t hb = tier.Allocate(big.size()).value();
  ASSERT_TRUE(tier.Write(hs, 0, small).ok());
  ASSERT_TRUE(tier.Write(hb, 0, big).ok());
  std::vector<uint8_t> out(big.size());
  ASSERT_TRUE(tier.Read(hb, 0, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, big);
  out.resize(small.size());
  ASSERT_TRUE(tier.Read(hs, 0, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, small);
  EXPECT_EQ(std::memcmp(tier.HostAddress(hb), big.data(), big.size()), 0);

  // Partial reads and writes at an offset.
  std::vector<uint8_t> part(100);
  ASSERT_TRUE(tier.Read(hb, 1000, absl::MakeSpan(part)).ok());
  EXPECT_TRUE(std::equal(part.begin(), part.end(), big.begin() + 1000));
  const std::vector<uint8_t> patch(10, 0xAB);
  ASSERT_TRUE(tier.Write(hs, 4990, patch).ok());
  EXPECT_EQ(tier.HostAddress(hs)[4999], 0xAB);

  TierUsage u = tier.Usage();
  EXPECT_EQ(u.capacity_bytes, 64 * kMiB);
  EXPECT_EQ(u.objects, 2u);
  EXPECT_EQ(u.stored_bytes, small.size() + big.size());
  EXPECT_GE(u.allocated_bytes, u.stored_bytes);
  tier.Free(hs);
  tier.Free(hb);
  u = tier.Usage();
  EXPECT_EQ(u.objects, 0u);
  EXPECT_EQ(u.allocated_bytes, 0u);
}

TEST(HostTierTest, PlainPagesFallback) {
  auto t = HostTier::Create({.capacity_bytes = 3 * kMiB, .huge_pages = false});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->huge_pages_mode(), HugePagesMode::kNone);
  EXPECT_EQ((*t)->huge_pages_mode_name(), "none");
  EXPECT_EQ((*t)->pool_bytes(), 4 * kMiB);  // rounded up to 2 MiB pages
  const std::vector<uint8_t> data = Pattern(3 * kMiB, 1);
  const uint64_t h = (*t)->Allocate(data.size()).value();
  ASSERT_TRUE((*t)->Write(h, 0, data).ok());
  std::vector<uint8_t> out(data.size());
  ASSERT_TRUE((*t)->Read(h, 0, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, data);
}

TEST(HostTierTest, OutOfRangeCopiesAreRejected) {
  auto t = HostTier::Create({.capacity_bytes = 8 * kMiB, .huge_pages = false});
  ASSERT_TRUE(t.ok()) << t.status();
  const uint64_t h = (*t)->Allocate(1000).value();
  std::vector<uint8_t> buf(100);
  absl::Status s = (*t)->Write(h, 950, buf);
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(s.message(), HasSubstr("offset=950 size=100"));
  EXPECT_EQ((*t)->Read(h, 1001, absl::Span<uint8_t>()).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_TRUE((*t)->Read(h, 900, absl::MakeSpan(buf)).ok());
}

TEST(HostTierTest, ExhaustionIsResourceExhausted) {
  auto t = HostTier::Create({.capacity_bytes = 8 * kMiB, .huge_pages = false});
  ASSERT_TRUE(t.ok()) << t.status();
  auto too_big = (*t)->Allocate(9 * kMiB);
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(too_big.status().message(), HasSubstr("capacity=8388608"));
  const uint64_t h = (*t)->Allocate(8 * kMiB).value();
  auto full = (*t)->Allocate(1);
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.status().message(), HasSubstr("host tier"));
  (*t)->Free(h);
  EXPECT_TRUE((*t)->Allocate(1).ok());
}

// Threads allocate, write a pattern, read it back and free, concurrently; a
// copy into one allocation never shows up in another.
TEST(HostTierTest, ConcurrentUse) {
  auto t = HostTier::Create({.capacity_bytes = 256 * kMiB});
  ASSERT_TRUE(t.ok()) << t.status();
  HostTier& tier = **t;
  constexpr int kThreads = 4;
  std::atomic<int> errors{0};
  std::atomic<int> exhausted{0};
  std::vector<std::thread> threads;
  for (int id = 0; id < kThreads; ++id) {
    threads.emplace_back([&, id] {
      absl::BitGen gen;
      std::vector<std::pair<uint64_t, std::vector<uint8_t>>> mine;
      for (int i = 0; i < 300; ++i) {
        if (!mine.empty() && (mine.size() > 8 || absl::Bernoulli(gen, 0.4))) {
          auto& [h, data] = mine.back();
          std::vector<uint8_t> out(data.size());
          if (!tier.Read(h, 0, absl::MakeSpan(out)).ok() || out != data)
            ++errors;
          tier.Free(h);
          mine.pop_back();
          continue;
        }
        const uint64_t size = absl::Uniform<uint64_t>(gen, 1, 6 * kMiB);
        auto h = tier.Allocate(size);
        if (!h.ok()) {
          if (h.status().code() != absl::StatusCode::kResourceExhausted)
            ++errors;
          ++exhausted;
          continue;
        }
        std::vector<uint8_t> data =
            Pattern(size, static_cast<uint8_t>(id * 40 + i));
        if (!tier.Write(*h, 0, data).ok()) ++errors;
        mine.emplace_back(*h, std::move(data));
      }
      for (auto& [h, data] : mine) {
        std::vector<uint8_t> out(data.size());
        if (!tier.Read(h, 0, absl::MakeSpan(out)).ok() || out != data) ++errors;
        tier.Free(h);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  const TierUsage u = tier.Usage();
  EXPECT_EQ(u.objects, 0u);
  EXPECT_EQ(u.allocated_bytes, 0u);
  const SlabAllocatorStats s = tier.AllocatorStats();
  EXPECT_EQ(s.free_pages, s.total_pages);
}

TEST(HostTierDeathTest, DoubleFreeCrashes) {
  auto t = HostTier::Create({.capacity_bytes = 8 * kMiB, .huge_pages = false});
  ASSERT_TRUE(t.ok()) << t.status();
  const uint64_t h = (*t)->Allocate(3 * kMiB).value();
  (*t)->Free(h);
  EXPECT_DEATH((*t)->Free(h), "not a live allocation");
}

}  // namespace
}  // namespace kvd
