#include "store/engine/memory/gpu_tier.h"

#include <cstdint>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

static_assert(KVD_HAVE_GPU_TIER == 1,
              "kvd::gpu_tier must define KVD_HAVE_GPU_TIER=1");

namespace kvd {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kMiB = 1ull << 20;

std::vector<uint8_t> Pattern(uint64_t size, uint8_t seed) {
  std::vector<uint8_t> v(size);
  for (uint64_t i = 0; i < size; ++i)
    v[i] = static_cast<uint8_t>(seed + i * 13 + (i >> 9));
  return v;
}

TEST(GpuTierTest, CreateWithoutDeviceIsFailedPrecondition) {
  if (GpuTier::DevicePresent()) GTEST_SKIP() << "a CUDA device is present";
  auto t = GpuTier::Create({.capacity_bytes = 64 * kMiB});
  EXPECT_EQ(t.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(t.status().message(), HasSubstr("CUDA device"));
}

class GpuTierDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!GpuTier::DevicePresent())
      GTEST_SKIP() << "no CUDA device (cudaGetDeviceCount)";
  }
};

TEST_F(GpuTierDeviceTest, RejectsBadOptions) {
  EXPECT_EQ(GpuTier::Create({.capacity_bytes = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto bad = GpuTier::Create({.capacity_bytes = 64 * kMiB, .device = 1 << 20});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("device=1048576"));
}

TEST_F(GpuTierDeviceTest, RoundTrip) {
  auto t = GpuTier::Create({.capacity_bytes = 128 * kMiB});
  ASSERT_TRUE(t.ok()) << t.status();
  GpuTier& tier = **t;
  EXPECT_EQ(tier.kind(), TierKind::kGpu);
  const std::vector<uint8_t> small = Pattern(4097, 3);
  const std::vector<uint8_t> big = Pattern(33 * kMiB + 5, 11);
  const uint64_t hs = tier.Allocate(small.size()).value();
  const uint64_t hb = tier.Allocate(big.size()).value();
  EXPECT_EQ(tier.HostAddress(hb), nullptr);
  EXPECT_NE(tier.DevicePointer(hb), nullptr);
  ASSERT_TRUE(tier.Write(hs, 0, small).ok());
  ASSERT_TRUE(tier.Write(hb, 0, big).ok());
  std::vector<uint8_t> out(big.size());
  ASSERT_TRUE(tier.Read(hb, 0, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, big);
  out.assign(small.size(), 0);
  ASSERT_TRUE(tier.Read(hs, 0, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, small);
  std::vector<uint8_t> part(64);
  ASSERT_TRUE(tier.Read(hb, 1 * kMiB, absl::MakeSpan(part)).ok());
  EXPECT_TRUE(std::equal(part.begin(), part.end(), big.begin() + kMiB));
  EXPECT_EQ(tier.Write(hs, small.size() - 10, part).code(),
            absl::StatusCode::kOutOfRange);

  TierUsage u = tier.Usage();
  EXPECT_EQ(u.objects, 2u);
  EXPECT_EQ(u.stored_bytes, small.size() + big.size());
  tier.Free(hs);
  tier.Free(hb);
  EXPECT_EQ(tier.Usage().objects, 0u);
  auto too_big = tier.Allocate(129 * kMiB);
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace kvd
