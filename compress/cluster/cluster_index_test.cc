#include "compress/cluster/cluster_index.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/chunk_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvd::compress {
namespace {

using ::testing::ElementsAre;

constexpr uint32_t kDim = 16;
constexpr uint32_t kGroups = 4;

// Keys whose position p points near one of kGroups orthogonal directions
// (group p % kGroups, shifted by the head), at varying lengths.
HeadTensor PlantedKeys(uint32_t heads, uint32_t tokens, uint64_t seed) {
  HeadTensor k(heads, tokens, kDim);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.05f);
  for (uint32_t h = 0; h < heads; ++h) {
    for (uint32_t t = 0; t < tokens; ++t) {
      float* row = k.Row(h, t);
      for (uint32_t d = 0; d < kDim; ++d) row[d] = noise(rng);
      row[(t % kGroups + h) % kDim] += 1.0f + 0.5f * (t % 3);
    }
  }
  return k;
}

uint32_t GroupOf(uint32_t position) { return position % kGroups; }

using Layers = std::vector<std::vector<uint8_t>>;

absl::StatusOr<ClusterIndex> Decode(const Layers& layers) {
  const std::vector<absl::Span<const uint8_t>> spans(layers.begin(),
                                                     layers.end());
  return DecodeClusterIndex(spans);
}

TEST(ClusterIndexTest, ClustersRecoverPlantedGroupsAndSkipSinks) {
  const std::vector<HeadTensor> keys = {PlantedKeys(2, 200, 1),
                                        PlantedKeys(2, 200, 2)};
  auto index = BuildClusterIndex(
      keys, {.sinks = 8, .tokens_per_cluster = 48, .iterations = 20});
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->sinks, 8u);
  EXPECT_EQ(index->clustered_end, 200u);
  for (const HeadClusters& h : index->heads) {
    EXPECT_EQ(h.clusters(), 4u);  // ceil(192 / 48)
    std::vector<uint32_t> all = h.positions;
    std::sort(all.begin(), all.end());
    ASSERT_EQ(all.size(), 192u);
    for (uint32_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], 8 + i);
    for (uint32_t c = 0; c < h.clusters(); ++c) {
      const auto members = h.Members(c);
      EXPECT_TRUE(std::is_sorted(members.begin(), members.end()));
      for (uint32_t p : members) {
        EXPECT_EQ(GroupOf(p), GroupOf(members[0])) << "cluster " << c;
      }
      float norm = 0;
      for (uint32_t d = 0; d < kDim; ++d) {
        norm += h.centroids[c * kDim + d] * h.centroids[c * kDim + d];
      }
      EXPECT_NEAR(norm, 1.0f, 1e-4f);
    }
  }
}

TEST(ClusterIndexTest, SameSeedSameIndexAndBalancedCapsClusters) {
  const std::vector<HeadTensor> keys = {PlantedKeys(1, 301, 3)};
  const ClusterOptions o{.sinks = 4, .tokens_per_cluster = 30, .seed = 9};
  auto a = BuildClusterIndex(keys, o);
  auto b = BuildClusterIndex(keys, o);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(EncodeClusterIndex(*a), EncodeClusterIndex(*b));

  ClusterOptions balanced = o;
  balanced.balanced = true;
  auto c = BuildClusterIndex(keys, balanced);
  ASSERT_TRUE(c.ok()) << c.status();
  const HeadClusters& h = c->At(0, 0);
  EXPECT_EQ(h.clusters(), 10u);  // ceil(297 / 30)
  for (uint32_t i = 0; i < h.clusters(); ++i) {
    EXPECT_LE(h.Members(i).size(), 30u) << "cluster " << i;  // ceil(297/10)
  }
}

TEST(ClusterIndexTest, ExtendClustersOnlyTheNewPositions) {
  HeadTensor full = PlantedKeys(1, 260, 4);
  HeadTensor prefix(1, 200, kDim);
  std::copy_n(full.data.begin(), prefix.size(), prefix.data.begin());
  const ClusterOptions o{.sinks = 4, .tokens_per_cluster = 50};
  auto index = BuildClusterIndex({prefix}, o);
  ASSERT_TRUE(index.ok()) << index.status();
  const HeadClusters before = index->At(0, 0);
  ASSERT_TRUE(ExtendClusterIndex({full}, *index, o).ok());
  EXPECT_EQ(index->clustered_end, 260u);
  const HeadClusters& after = index->At(0, 0);
  ASSERT_EQ(after.clusters(), before.clusters() + 2);  // ceil(60 / 50)
  for (uint32_t c = 0; c < before.clusters(); ++c) {
    EXPECT_TRUE(std::equal(before.Members(c).begin(), before.Members(c).end(),
                           after.Members(c).begin(), after.Members(c).end()));
  }
  for (uint32_t c = before.clusters(); c < after.clusters(); ++c) {
    for (uint32_t p : after.Members(c)) EXPECT_GE(p, 200u);
  }
  EXPECT_FALSE(ExtendClusterIndex({prefix}, *index, o).ok());  // shorter
}

TEST(ClusterIndexTest, SelectionKeepsSinksTailAndTheClosestClusters) {
  const std::vector<HeadTensor> keys = {PlantedKeys(1, 200, 5)};
  auto index = BuildClusterIndex(
      keys, {.sinks = 4, .tokens_per_cluster = 49, .iterations = 20});
  ASSERT_TRUE(index.ok()) << index.status();
  // Two decoded tokens past the index; the query points at group 2.
  std::vector<float> query(kDim, 0.0f);
  query[2] = 1.0f;
  const uint32_t total = 202;
  const Selection s =
      SelectClusters(*index, 0, 0, query, total, {.budget = 60, .recent = 3});
  ASSERT_EQ(s.clusters.size(), 1u);  // group 2's
  EXPECT_EQ(GroupOf(index->At(0, 0).Members(s.clusters[0])[0]), 2u);
  std::vector<uint32_t> got = s.positions;
  EXPECT_TRUE(std::is_sorted(got.begin(), got.end()));
  EXPECT_LE(got.size(), 60u);
  EXPECT_THAT(std::vector<uint32_t>(got.begin(), got.begin() + 4),
              ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(std::vector<uint32_t>(got.end() - 3, got.end()),
              ElementsAre(199, 200, 201));
  // The rest is group 2's cluster: 49 positions of [4, 200) with p % 4 == 2
  // (199 is already kept as recent only if it is in group 2; it is not).
  uint32_t group2 = 0;
  for (uint32_t p : got) group2 += p >= 4 && p < 199 && GroupOf(p) == 2;
  EXPECT_EQ(group2, 49u);
  EXPECT_EQ(got.size(), 4u + 3u + 49u);
  // A budget below the fixed positions keeps only those.
  const Selection none =
      SelectClusters(*index, 0, 0, query, total, {.budget = 1, .recent = 3});
  EXPECT_EQ(none.positions.size(), 7u);
  EXPECT_TRUE(none.clusters.empty());
}

TEST(ClusterIndexTest, EncodingRoundTripsAndRejectsDamage) {
  const std::vector<HeadTensor> keys = {PlantedKeys(2, 120, 6),
                                        PlantedKeys(2, 120, 7)};
  auto index = BuildClusterIndex(keys, {.sinks = 2, .tokens_per_cluster = 20});
  ASSERT_TRUE(index.ok()) << index.status();
  const Layers bytes = EncodeClusterIndex(*index);
  ASSERT_EQ(bytes.size(), 2u);
  auto back = Decode(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(EncodeClusterIndex(*back), bytes);

  Layers flipped = bytes;
  flipped[1][bytes[1].size() / 2] ^= 1;
  EXPECT_EQ(Decode(flipped).status().code(), absl::StatusCode::kDataLoss);
  Layers cut = bytes;
  cut[0].resize(30);
  EXPECT_EQ(Decode(cut).status().code(), absl::StatusCode::kDataLoss);
  // Layers swapped: each says which it is.
  const Layers swapped = {bytes[1], bytes[0]};
  EXPECT_EQ(Decode(swapped).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A repeated position under a valid checksum is refused by validation.
  ClusterIndex bad = *index;
  bad.heads[1].positions[1] = bad.heads[1].positions[0];
  auto refused = Decode(EncodeClusterIndex(bad));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), ::testing::HasSubstr("repeated"));
}

TEST(ClusterIndexTest, BadKeysAreRefused) {
  EXPECT_EQ(BuildClusterIndex({}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<HeadTensor> uneven = {PlantedKeys(1, 50, 8),
                                          PlantedKeys(1, 40, 8)};
  EXPECT_EQ(BuildClusterIndex(uneven, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      BuildClusterIndex({PlantedKeys(1, 50, 8)}, {.tokens_per_cluster = 0})
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
  // Fewer tokens than sinks: nothing to cluster, and every position is kept.
  auto small = BuildClusterIndex({PlantedKeys(1, 10, 8)}, {.sinks = 16});
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->At(0, 0).clusters(), 0u);
  std::vector<float> q(kDim, 1.0f);
  EXPECT_EQ(SelectClusters(*small, 0, 0, q, 10, {.budget = 4}).positions.size(),
            10u);
  EXPECT_TRUE(Decode(EncodeClusterIndex(*small)).ok());
}

}  // namespace
}  // namespace kvd::compress
